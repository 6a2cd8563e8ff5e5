"""A running task's log as its row keeps it: text every database stores, and a bounded size.

Each entry (one `task.log` call, or a traceback) is stored with NUL and lone surrogates
replaced by U+FFFD (`runtime.text.storable`), so a line no backend can hold never makes a
flush fail and lose the lines written with it.

A log that fits in `[tasks] max_log_bytes` is kept whole, and its lines are appended to the
row as they come. Once it would pass the limit, the row keeps the first lines, up to half
the limit, then a marker line `[... N lines truncated ...]`, then the most recent lines
that fit in the rest; the oldest of those make way as new ones arrive, and are counted in
the marker. A single entry too large for the rest is cut to its beginning, ending with
`[... N bytes truncated ...]`. From the first truncation on, the row is rewritten whole
instead of appended to, at most every `REWRITE_INTERVAL_S` seconds and when the task ends,
since each rewrite sends up to the limit to the database.

`STUCK_LINE_ROOM` bytes stay free for the line the supervisor or the processor appends when
it marks the task stuck, so the row's log never exceeds the limit.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque

from runtime.text import REPLACEMENT, storable

STUCK_LINE_ROOM = 256
"""Bytes kept free for a stuck-marking line (those are about 100 bytes)."""

MARKER_ROOM = 64
"""Bytes kept for the marker line (at most 47: a 20-digit count)."""

REWRITE_INTERVAL_S = 5.0
"""The shortest time between two rewrites of a truncated log while the task runs."""


_MARKER = re.compile(r"^\[\.\.\. \d+ lines truncated \.\.\.\]$", re.MULTILINE)


def marker(lines: int) -> str:
    """The line that stands for the `lines` lines dropped from the middle of a log."""
    return f"[... {lines} lines truncated ...]\n"


class LogReader:
    """Where a reader of a running task's log (`status --follow`, the dashboard's live
    page) has got to, so that each read gives only what is new, even after the log was
    rewritten with its middle dropped.

    The reader keeps its offset and the last line it gave. When the log no longer has that
    line at that place, it goes on after the line's last occurrence in the new log, or,
    when the line was dropped too, at the marker of the dropped lines (which it gives
    again, with its new count).
    """

    def __init__(self, offset: int = 0) -> None:
        self.offset = max(0, offset)
        self.last = ""

    def fresh(self, log: str, whole_lines: bool = True) -> str:
        """The text of `log` not given yet (only complete lines with `whole_lines`)."""
        if len(log) < self.offset or not log.startswith(self.last, self.offset - len(self.last)):
            self._resume(log)
        text = log[self.offset :]
        if whole_lines:
            text = text[: text.rfind("\n") + 1]
        if text:
            self.offset += len(text)
            self.last = log[log.rfind("\n", 0, max(self.offset - 1, 0)) + 1 : self.offset]
        return text

    def _resume(self, log: str) -> None:
        found = log.rfind(self.last) if self.last else -1
        if found >= 0:
            self.offset = found + len(self.last)
        else:
            dropped = _MARKER.search(log)
            self.offset = dropped.start() if dropped else 0
        self.last = log[log.rfind("\n", 0, max(self.offset - 1, 0)) + 1 : self.offset]


class BoundedLog:
    """The log of one task run, as the row is to hold it (not thread-safe: the caller locks).

    `add` takes each entry; `take` says what to write next: text to append, or the whole
    log to write in place of the row's.
    """

    def __init__(self, limit: int) -> None:
        self.budget = limit - STUCK_LINE_ROOM
        self.head_budget = self.budget // 2
        self.entry_limit = self.budget - self.head_budget - MARKER_ROOM
        self.head: list[str] = []
        self.head_size = 0
        self.head_closed = False
        self.tail: deque[tuple[str, int]] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.pending: list[str] = []
        self.rewrite = False
        self.rewritten_at = -math.inf

    def add(self, entry: str) -> None:
        """Keep one entry (one or more lines, ending with a newline)."""
        if entry.isascii():
            if "\x00" in entry:
                entry = entry.replace("\x00", REPLACEMENT)
            size = len(entry)
        else:
            entry = storable(entry)
            size = len(entry.encode("utf-8"))
        if size > self.entry_limit:
            entry, size = _cut(entry, self.entry_limit)
        if not self.head_closed:
            if self.head_size + size <= self.head_budget:
                self.head.append(entry)
                self.head_size += size
                self.pending.append(entry)
                return
            self.head_closed = True
        self.tail.append((entry, size))
        self.tail_size += size
        if not self.dropped and self.head_size + self.tail_size <= self.budget:
            self.pending.append(entry)
            return
        dropped = 0
        while self.head_size + MARKER_ROOM + self.tail_size > self.budget:
            old, old_size = self.tail.popleft()
            self.tail_size -= old_size
            dropped += old.count("\n")
        if dropped:
            self.dropped += dropped
            self.rewrite = True
            self.pending.clear()
        elif not self.rewrite:
            self.pending.append(entry)

    def seed(self, stored: str) -> None:
        """Count the log the row already holds (earlier attempts of a retried task) as
        written, so that the row stays within the limit over every attempt: its lines are
        kept as if added, and nothing is written unless they must be truncated."""
        for line in stored.splitlines(keepends=True):
            self.add(line if line.endswith("\n") else line + "\n")
        self.pending.clear()

    def take(self, final: bool = False) -> tuple[str, bool] | None:
        """What to write now: `(text, False)` to append, `(log, True)` to replace the row's
        log; None when nothing is due. A rewrite waits for `REWRITE_INTERVAL_S` unless
        `final` (the task has ended)."""
        if self.rewrite:
            now = time.monotonic()
            if not final and now - self.rewritten_at < REWRITE_INTERVAL_S:
                return None
            self.rewrite = False
            self.rewritten_at = now
            self.pending.clear()
            return self.text(), True
        if not self.pending:
            return None
        text = "".join(self.pending)
        self.pending.clear()
        return text, False

    def resend(self) -> None:
        """Make the next `take` rewrite the whole log (a write of the row failed)."""
        self.rewrite = True
        self.rewritten_at = -math.inf

    def text(self) -> str:
        """The whole log as the row is to hold it."""
        middle = marker(self.dropped) if self.dropped else ""
        return "".join(self.head) + middle + "".join(entry for entry, _ in self.tail)


def _cut(entry: str, limit: int) -> tuple[str, int]:
    """The beginning of an entry too large to keep, within `limit` bytes, and its size."""
    data = entry.encode("utf-8")
    kept = data[: limit - MARKER_ROOM].decode("utf-8", "ignore")
    cut = len(data) - len(kept.encode("utf-8"))
    text = f"{kept}[... {cut} bytes truncated ...]\n"
    return text, len(text.encode("utf-8"))

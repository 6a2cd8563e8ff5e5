"""A task's changes as Server-Sent Events, for the task page's live log and progress bar.

`TaskEvents` is the blocking part, run in a worker thread: it reads the task, and between
reads waits on the task's change channel (`Store.wait_for_change` on `task_channel(id)`,
the signal `python -m runtime.status --follow` uses) for at most `WAIT_S`. Each wait holds
a database connection, so at most `MAX_LISTENERS` streams wait on the channel at once
(in their own thread limiter, apart from the page handlers' threads); the others poll
every `WAIT_S` without holding one. `stream` is the async side that formats the events.

Events: `log` (`{"text": new log text, control characters escaped}`, its `id` the log
offset reached, so a reconnecting browser resumes there; a log rewritten with its middle
dropped is followed by `runtime.tasklog.LogReader`), `progress` (`{"progress": v}`),
and `status` (the API's task shape without the log) whenever the status changes; the
stream ends after the `status` event of an ended task.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import Connection

from runtime.errors import TaskError
from runtime.state import TaskStatus
from runtime.store import Store, task_channel
from runtime.tasklog import LogReader
from runtime.text import escape_controls
from runtime.web.shapes import task_data

WAIT_S = 1.0
MAX_LISTENERS = 8
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0
"""A stream ends after an hour; the browser reconnects and resumes at its offset."""

_LISTENERS = threading.BoundedSemaphore(MAX_LISTENERS)
_THREADS = anyio.CapacityLimiter(MAX_LISTENERS * 2)

Event = tuple[str, dict[str, Any], str | None]


class TaskEvents:
    """The changes of one task since a log offset, read by one stream (blocking)."""

    def __init__(self, store: Store, task_id: int, offset: int = 0) -> None:
        self.store = store
        self.task_id = task_id
        self.log = LogReader(offset)
        self.progress: Any = None
        self.status: str | None = None
        self._reading: AbstractContextManager[Connection] | None = None
        self._conn: Connection | None = None

    def open(self) -> None:
        """Take a listening slot and a connection to wait on, if one is free."""
        if _LISTENERS.acquire(blocking=False):
            try:
                self._reading = self.store.read()
                self._conn = self._reading.__enter__()
            except BaseException:
                _LISTENERS.release()
                raise

    def close(self) -> None:
        """Give the connection and the slot back."""
        if self._reading is not None:
            reading, self._reading, self._conn = self._reading, None, None
            try:
                reading.__exit__(None, None, None)
            finally:
                _LISTENERS.release()

    def step(self) -> tuple[list[Event], bool]:
        """The events since the last step, waiting up to `WAIT_S` for one; and whether
        the task has ended (no more events will come)."""
        events = self._changes(self.store.get(self.task_id))
        if not events:
            if self._conn is not None:
                self.store.wait_for_change(self._conn, task_channel(self.task_id), WAIT_S)
            else:
                time.sleep(WAIT_S)
            events = self._changes(self.store.get(self.task_id))
        ended = any(name == "status" and data["finished"] for name, data, _ in events)
        return events, ended

    def _changes(self, status: TaskStatus) -> list[Event]:
        events: list[Event] = []
        fresh = self.log.fresh(status.log, whole_lines=not status.finished)
        if fresh:
            text = escape_controls(fresh, keep="\n\t")
            events.append(("log", {"text": text}, str(self.log.offset)))
        progress = status.get("progress")
        if progress is not None and progress != self.progress:
            self.progress = progress
            events.append(("progress", {"progress": progress}, None))
        if status.status.value != self.status:
            self.status = status.status.value
            data = task_data(status, with_log=False)
            data["finished"] = status.finished
            events.append(("status", data, None))
        return events


def frame(name: str, data: dict[str, Any], event_id: str | None) -> str:
    """One SSE message."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream(
    events: TaskEvents, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[str]:
    """The SSE text of `events` until the task ends, the client leaves or an hour passes."""
    await anyio.to_thread.run_sync(events.open, limiter=_THREADS)
    try:
        yield "retry: 2000\n\n"
        started = last_sent = clock()
        while clock() - started < MAX_STREAM_S:
            try:
                found, ended = await anyio.to_thread.run_sync(events.step, limiter=_THREADS)
            except TaskError as exc:
                yield frame("failure", {"error": str(exc)}, None)
                return
            for name, data, event_id in found:
                yield frame(name, data, event_id)
                last_sent = clock()
            if ended:
                return
            if clock() - last_sent >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = clock()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(events.close, limiter=_THREADS)

"""`python -m runtime.status [--config PATH] TASK_ID [--json] [--follow]`.

Prints a task's status; `--json` as one object with the `TaskStatus` attributes as keys
(timestamps ISO 8601 UTC). `--follow` prints log lines and progress as they arrive until
the task ends, then exits 0 if it completed and 1 otherwise. Unknown id: exit 2.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO

from runtime.cli import TaskCommandParser, run_command
from runtime.config import load_config
from runtime.display import attempts
from runtime.registry import load_retries
from runtime.state import Status, TaskStatus
from runtime.store import Store, task_channel
from runtime.tasklog import LogReader
from runtime.text import escape_controls

PROG = "python -m runtime.status"
BAR_WIDTH = 30


def render(status: TaskStatus, retries: int | None = None) -> str:
    """A human-readable report of a task; control characters in it are shown escaped.
    `retries` is the task's `@task(retries=...)`, when known (for `attempts  2 of 4`)."""

    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"

    lines = [
        f"task {status.id}: {status.service_name}.{status.task_name} "
        f"(queue {status.queue_name}, {status.execution_mode})",
        f"  status     {status.status.value}",
    ]
    tried = attempts(status.attempts, retries)
    if tried is not None:
        lines.append(f"  attempts   {tried}")
    if status.status == Status.PENDING and status.next_run_at is not None:
        lines.append(f"  next run   {when(status.next_run_at)}")
    if "progress" in status.status_data:
        lines.append(f"  progress   {status.get('progress')}")
    lines += [
        f"  params     {json.dumps(dict(status.params), ensure_ascii=False)}",
        f"  created    {when(status.created_at)}",
        f"  started    {when(status.started_at)}",
        f"  completed  {when(status.completed_at)}",
    ]
    if status.cancel_requested_at is not None:
        lines.append(f"  cancel     requested {when(status.cancel_requested_at)}")
    if status.status_data:
        lines.append(f"  data       {json.dumps(dict(status.status_data), ensure_ascii=False)}")
    if status.result is not None:
        lines.append(f"  result     {json.dumps(status.result, ensure_ascii=False)}")
    if status.log:
        lines.append("  log:")
        lines += [f"    {line}" for line in status.log.rstrip("\n").split("\n")]
    return "\n".join(printable(line) for line in lines)


def printable(text: str) -> str:
    """`text` as the text view shows it: control characters other than newline and tab
    escaped (`\x1b`, `\r`), so that a task's log cannot move the cursor or clear the
    terminal. `--json` output keeps the exact text."""
    return escape_controls(text, keep="\n\t")


def progress_bar(value: Any) -> str:
    """`[#######.......]  40%` for a number 0..100; the raw value otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return printable(f"progress: {value}")
    share = max(0.0, min(100.0, float(value)))
    filled = round(BAR_WIDTH * share / 100)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:3.0f}%"


class Follower:
    """Prints a task's new log lines and progress changes until it ends.

    Between reads it waits on the task's channel, which every write a follower shows
    notifies (PostgreSQL wakes it at once; the other backends poll), at most `wait_s`.
    A log over `max_log_bytes` is rewritten with its middle dropped; the follower then goes
    on after the last line it printed (`runtime.tasklog.LogReader`).
    """

    def __init__(self, store: Store, task_id: int, out: TextIO, wait_s: float = 1.0) -> None:
        self.store = store
        self.wait_s = wait_s
        self.task_id = task_id
        self.out = out
        self.tty = out.isatty()
        self.reader = LogReader()
        self.progress: Any = None
        self.bar_shown = False

    def show(self, status: TaskStatus) -> None:
        complete = self.reader.fresh(status.log)
        if complete:
            self._clear_bar()
            self.out.write(printable(complete))
        progress = status.get("progress")
        redraw = self.tty and not self.bar_shown
        if progress is not None and (progress != self.progress or redraw):
            self.progress = progress
            if self.tty:
                self.out.write(f"\r{progress_bar(progress)}")
                self.bar_shown = True
            else:
                self.out.write(progress_bar(progress) + "\n")
        self.out.flush()

    def _clear_bar(self) -> None:
        if self.bar_shown:
            self.out.write("\r" + " " * (BAR_WIDTH + 8) + "\r")
            self.bar_shown = False

    def follow(self) -> TaskStatus:
        """Show updates until the task has ended; its final status."""
        with self.store.read() as conn:
            while True:
                status = self.store.get(self.task_id)
                self.show(status)
                if status.finished:
                    rest = self.reader.fresh(status.log, whole_lines=False)
                    if rest:
                        self._clear_bar()
                        self.out.write(printable(rest if rest.endswith("\n") else rest + "\n"))
                    if self.bar_shown:
                        self.out.write("\n")
                    self.out.flush()
                    return status
                self.store.wait_for_change(conn, task_channel(self.task_id), self.wait_s)


def main(argv: list[str] | None = None) -> int:
    parser = TaskCommandParser(PROG, "Show a task's status.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--follow", action="store_true", help="follow log and progress")
    args = parser.parse(argv)

    def body() -> int:
        config = load_config(args.config)
        store = Store(config)
        if args.follow:
            status = Follower(store, args.task_id, sys.stdout).follow()
            if args.json:
                print(json.dumps(status.to_dict(), ensure_ascii=False))
            else:
                print(f"task {status.id} {status.status.value}")
            return 0 if status.status == Status.COMPLETED else 1
        status = store.get(args.task_id)
        if args.json:
            print(json.dumps(status.to_dict(), ensure_ascii=False, indent=2))
        else:
            retries = load_retries(config).get((status.service_name, status.task_name))
            print(render(status, retries))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

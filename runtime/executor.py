"""The executor: the worker's child process that claims and runs a queue's tasks.

It is forked by the supervisor (`runtime.worker`) once the imports are done, makes its own
database connections, and tells the supervisor over a pipe which task it runs and with
what timeout (`start ID TIMEOUT`, `end ID`), and why it stops (`retired` when the queue is
empty, `stopping` after SIGTERM/SIGINT). A task's log lines and status values reach its row
through `RowSink`, batched: a task that writes nothing costs two short transactions, the
claim and the finish.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runtime.clock import utcnow
from runtime.config import Config
from runtime.errors import ParamsError, UnknownTaskError
from runtime.instance import TaskInstance
from runtime.registry import TaskEntry
from runtime.state import Status, TaskStatus
from runtime.store import Store, dumps, log_line, start_time

FLUSH_INTERVAL_S = 0.5


class RowSink:
    """A queued task's sink: log lines and status data batched into its row.

    A background thread writes them at most every `FLUSH_INTERVAL_S`, the first time that
    long after the first write, so a short task's lines go with its finish in one
    transaction. Temp-directory facts are written at once, so that a task killed a moment
    later still has its folder cleaned.
    """

    def __init__(self, store: Store, config: Config, task_id: int, pid: int) -> None:
        self.store = store
        self.config = config
        self.task_id = task_id
        self.pid = pid
        self.status: dict[str, Any] = {}
        self.temp_ttl: int | None = None
        self._lines: list[str] = []
        self._status_dirty = False
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._has_temp = False

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line + "\n")
        self._wake()

    def set_status(self, key: str, value: Any) -> None:
        dumps(value)  # a value that cannot be stored fails here, in the task's own frame
        with self._lock:
            self.status[key] = value
            self._status_dirty = True
        self._wake()

    def temp_directory(self) -> Path:
        path = self.config.storage / "tasks" / str(self.task_id)
        path.mkdir(parents=True, exist_ok=True)
        if not self._has_temp:
            self._has_temp = True
            self.store.progress(self.task_id, self.pid, has_temp_directory=True, now=utcnow())
        return path

    def set_temp_expiration(self, seconds: int) -> None:
        self.temp_ttl = seconds
        self.store.progress(self.task_id, self.pid, temp_ttl=seconds, now=utcnow())

    def _wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._flush_loop, name="rsx-flush", daemon=True)
            self._thread.start()
        self._dirty.set()

    def _flush_loop(self) -> None:
        while True:
            self._dirty.wait()
            if self._closed.wait(FLUSH_INTERVAL_S):
                return
            self.flush()

    def _take(self) -> tuple[str, dict[str, Any] | None]:
        with self._lock:
            lines = "".join(self._lines)
            self._lines.clear()
            status = dict(self.status) if self._status_dirty else None
            self._status_dirty = False
            self._dirty.clear()
        return lines, status

    def flush(self) -> None:
        """Write what has accumulated (called by the flush thread)."""
        lines, status = self._take()
        if not lines and status is None:
            return
        try:
            self.store.progress(
                self.task_id, self.pid, lines=lines, status_data=status, now=utcnow()
            )
        except Exception as exc:
            say(f"task {self.task_id}: could not write its log/status: {exc}")

    def close(self) -> tuple[str, dict[str, Any] | None]:
        """Stop the flush thread; return the lines and status not yet written."""
        self._closed.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
        return self._take()


class Executor:
    """Claims tasks of one queue in FIFO order and runs them until told to stop."""

    def __init__(
        self,
        config: Config,
        store: Store,
        registry: Mapping[tuple[str, str], TaskEntry],
        queue: str,
        worker_id: int,
        report: Callable[[str], None],
        supervisor_pid: int,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.queue = queue
        self.worker_id = worker_id
        self.report = report
        self.supervisor_pid = supervisor_pid
        self.pid = os.getpid()
        self.started = start_time(self.pid) or time.time()
        self.stopping = False

    def request_stop(self, signum: int, _frame: Any) -> None:
        """Signal handler: finish the current task, take no new one."""
        self.stopping = True

    def run(self) -> None:
        """Claim and run tasks until the queue is empty or a stop is requested."""
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        for signum in stop_signals:
            signal.signal(signum, self.request_stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        while not self.stopping:
            if os.getppid() != self.supervisor_pid:
                return  # the supervisor is gone; its registration no longer covers us
            task = self.store.claim_or_retire(
                self.queue, self.worker_id, self.pid, self.started, utcnow()
            )
            if task is None:
                self.report("retired")
                return
            self.report(f"start {task.id} {task.timeout_seconds}")
            self.execute(task)
            self.report(f"end {task.id}")
        self.report("stopping")

    def execute(self, task: TaskStatus) -> None:
        """Run one claimed task and record how it ended."""
        began = time.monotonic()
        sink = RowSink(self.store, self.config, task.id, self.pid)
        status = Status.COMPLETED
        try:
            value = self.call(task, sink)
            try:
                result: str | None = dumps(value)
            except (TypeError, ValueError) as exc:
                status = Status.FAILED
                message = f"task result is not JSON-serialisable: {exc}"
                result = dumps({"error": message, "type": "TypeError"})
                sink.log(log_line(f"Task failed: {message}", utcnow()).rstrip("\n"))
        except BaseException as exc:  # noqa: BLE001 - anything a task raises fails the task
            status = Status.FAILED
            kind = type(exc).__name__
            result = dumps({"error": str(exc), "type": kind})
            sink.log(log_line(f"Task failed: {kind}: {exc}", utcnow()).rstrip("\n"))
            if not isinstance(exc, UnknownTaskError | ParamsError):
                sink.log("".join(traceback.format_exception(exc)).rstrip("\n"))
        lines, status_data = sink.close()
        ttl = sink.temp_ttl if sink.temp_ttl is not None else self.config.temp_directory_default_ttl
        recorded = self.store.finish(
            task.id,
            self.pid,
            self.worker_id,
            status=status,
            result=result,
            lines=lines,
            status_data=status_data,
            temp_ttl=ttl,
            now=utcnow(),
        )
        took = time.monotonic() - began
        outcome = status.value if recorded else f"{status.value}, but the row was no longer ours"
        say(f"task {task.id} {task.service_name}.{task.task_name}: {outcome} in {took:.2f} s")

    def call(self, task: TaskStatus, sink: RowSink) -> Any:
        """Resolve the task through the registry, validate its params, call it."""
        entry = self.registry.get((task.service_name, task.task_name))
        if entry is None:
            raise UnknownTaskError(
                f"task {task.service_name}.{task.task_name} is not in the generated registry "
                "(removed from the code?)"
            )
        from runtime.validation import validate

        try:
            model = validate(entry, task.params)
        except ParamsError as exc:
            raise ParamsError(f"params no longer validate: {exc}") from None
        values = dict(model)
        function = entry.load()
        return function(TaskInstance(task.id, values, sink), **values)


def say(message: str) -> None:
    """One timestamped line in the worker log (the worker's stderr)."""
    stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

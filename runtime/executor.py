"""The executor: the worker's child process that claims and runs a queue's tasks.

It is forked by the supervisor (`runtime.worker`) once the imports are done, makes its own
database connections, and tells the supervisor over a pipe (`runtime.pipe`) which task it
runs and with what timeout, and why it stops. A task that writes no log costs one
transaction: its end is recorded and the next task claimed together
(`Store.finish(..., claim_next=...)`). A task's log lines and status values reach its row
through `RowSink`, batched, and bounded by `[tasks] max_log_bytes` (`runtime.tasklog`); a
result or status data that could not be stored (over `max_result_bytes`, or text UTF-8
cannot encode) fails the task saying so, rather than failing the write that records it.
A cancel request the supervisor passes on (`CancelRequests`) is read only when the task
asks `task.cancelled()`; a task that saw it ends `cancelled`.

When the queue is empty the executor lingers for `worker_idle_seconds`, woken by the
backend's change signal (LISTEN/NOTIFY on PostgreSQL, `data_version` on SQLite, a short
poll on MariaDB), so a task dispatched meanwhile starts at once. It gives its slot up
earlier when a task of another queue needs it (the server's `global_max_workers` is
reached and that queue has no worker of its own), and on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import pipe
from runtime.clock import log_line, utcnow
from runtime.config import Config
from runtime.errors import ParamsError, ResultError, UnknownTaskError
from runtime.instance import TaskInstance
from runtime.logs import info_line
from runtime.maintenance import task_folder
from runtime.processes import start_time
from runtime.registry import TaskEntry, bind
from runtime.retries import Verdict, decide, moment
from runtime.state import Status, TaskStatus
from runtime.storage import task_directory
from runtime.store import Claimer, Outcome, Store, dumps, queue_channel
from runtime.tasklog import BoundedLog
from runtime.text import shorten, storable, surrogate_in, utf8_size

if TYPE_CHECKING:
    from runtime.validation import ScalarParams

FLUSH_INTERVAL_S = 0.5
# The longest an idle executor sleeps between looks at its stop flag and its supervisor.
IDLE_WAIT_S = 0.5
# How often an idle executor checks whether another queue needs its slot.
GIVE_WAY_CHECK_S = 0.05

log = logging.getLogger(__name__)


class RowSink:
    """A queued task's sink: log lines and status data batched into its row.

    A background thread writes them at most every `FLUSH_INTERVAL_S`, the first time that
    long after the first write, so a short task's lines go with its finish in one
    transaction. Temp-directory facts are written at once, so that a task killed a moment
    later still has its folder cleaned.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        task_id: int,
        pid: int,
        cancels: CancelRequests | None = None,
        stored_log: str = "",
    ) -> None:
        self.store = store
        self.config = config
        self.task_id = task_id
        self.pid = pid
        self.cancels = cancels
        self.cancel_seen = False
        """Whether the task was told, by `task.cancelled()`, that a cancel was requested."""
        self.status: dict[str, Any] = {}
        self.temp_ttl: int | None = None
        self._log = BoundedLog(config.max_log_bytes)
        self._log.seed(stored_log)
        self._status_sizes: dict[str, int] = {}
        self._status_dirty = False
        self._lock = threading.Lock()
        self._dirty: threading.Event | None = None
        self._closed: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._has_temp = False

    def log(self, line: str) -> None:
        with self._lock:
            self._log.add(line + "\n")
        self._wake()

    def set_status(self, key: str, value: Any) -> None:
        # A value that cannot be stored fails here, in the task's own frame.
        text = dumps(value)
        bad = surrogate_in(key) or surrogate_in(text)
        if bad is not None:
            raise ValueError(
                f"status value {key!r} cannot be stored: it holds the lone surrogate {bad}, "
                "which UTF-8 cannot encode"
            )
        size = utf8_size(key) + utf8_size(text) + 4
        limit = self.config.max_result_bytes
        with self._lock:
            total = sum(self._status_sizes.values()) - self._status_sizes.get(key, 0) + size
            if total > limit:
                raise ValueError(
                    f"status data would be {total} bytes, over max_result_bytes ({limit})"
                )
            self._status_sizes[key] = size
            self.status[key] = value
            self._status_dirty = True
        self._wake()

    def temp_directory(self) -> Path:
        path = task_directory(task_folder(self.config, self.task_id))
        if not self._has_temp:
            self._has_temp = True
            self.store.progress(self.task_id, self.pid, has_temp_directory=True, now=utcnow())
        return path

    def set_temp_expiration(self, seconds: int) -> None:
        self.temp_ttl = seconds
        self.store.progress(self.task_id, self.pid, temp_ttl=seconds, now=utcnow())

    def cancelled(self) -> bool:
        if self.cancels is not None and self.cancels.requested(self.task_id):
            self.cancel_seen = True
        return self.cancel_seen

    def _written(self) -> bool:
        """Whether anything was written to the sink (no thread runs until something is)."""
        return self._status_dirty or bool(self._log.pending) or self._log.rewrite

    def _wake(self) -> None:
        if self._dirty is None:
            # Made on the first write, so that a task that writes nothing costs no thread.
            self._dirty, self._closed = threading.Event(), threading.Event()
            self._thread = threading.Thread(target=self._flush_loop, name="rsx-flush", daemon=True)
            self._thread.start()
        self._dirty.set()

    def _flush_loop(self) -> None:
        assert self._dirty is not None and self._closed is not None
        while True:
            self._dirty.wait()
            if self._closed.wait(FLUSH_INTERVAL_S):
                return
            self.flush()

    def _take(self, final: bool = False) -> tuple[str, bool, dict[str, Any] | None]:
        """The log text to write (and whether it replaces the row's) and the status data,
        when changed; a rewrite put off by `BoundedLog` keeps the flush thread due."""
        with self._lock:
            lines, replace = self._log.take(final) or ("", False)
            status = dict(self.status) if self._status_dirty else None
            self._status_dirty = False
            if not self._log.rewrite and self._dirty is not None:
                self._dirty.clear()
        return lines, replace, status

    def flush(self) -> None:
        """Write what has accumulated (called by the flush thread)."""
        lines, replace, status = self._take()
        if not lines and status is None:
            return
        try:
            self.store.progress(
                self.task_id,
                self.pid,
                lines=lines,
                replace_log=replace,
                status_data=status,
                now=utcnow(),
            )
        except Exception as exc:
            with self._lock:
                self._log.resend()
            log.warning(
                "task %s: could not write its log/status: %s",
                self.task_id,
                exc,
                extra={"task_id": self.task_id},
            )

    def close(self) -> tuple[str, bool, dict[str, Any] | None]:
        """Stop the flush thread; return the log and status not yet written (as `_take`)."""
        if self._thread is None and not self._written():
            return "", False, None
        if self._thread is not None:
            assert self._closed is not None and self._dirty is not None
            self._closed.set()
            self._dirty.set()
            self._thread.join()
        return self._take(final=True)


class CancelRequests:
    """The cancel requests the supervisor sends down its pipe (`pipe.cancel`), read without
    blocking when a task asks `task.cancelled()`: nothing is read otherwise."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.latest: int | None = None
        self._lock = threading.Lock()
        os.set_blocking(fd, False)

    def requested(self, task_id: int) -> bool:
        """Whether a cancel of `task_id` has arrived (any task of this executor may call
        this, from any thread)."""
        with self._lock:
            messages, self.buffer = pipe.split(self.buffer + pipe.read_ready(self.fd))
            for message in messages:
                if message.kind is pipe.Kind.CANCEL:
                    self.latest = message.task_id
            return self.latest == task_id


class Executor:
    """Claims tasks of one queue in FIFO order and runs them until told to stop."""

    def __init__(
        self,
        config: Config,
        store: Store,
        registry: Callable[[], Mapping[tuple[str, str], TaskEntry]],
        queue: str,
        worker_id: int,
        report: Callable[..., None],
        supervisor_pid: int,
        cancels: CancelRequests | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.queue = queue
        self.worker_id = worker_id
        self.report = report
        self.supervisor_pid = supervisor_pid
        self.cancels = cancels
        self.pid = os.getpid()
        self.claimer = Claimer(queue, worker_id, self.pid, start_time(self.pid) or time.time())
        self.stopping = False
        self.context = {"queue": queue, "worker_pid": self.pid}
        self._tasks: Mapping[tuple[str, str], TaskEntry] | None = None
        """The registry, once `registry()` has loaded it (on the first task)."""
        self._callables: dict[
            tuple[str, str], tuple[TaskEntry, Callable[..., Any], ScalarParams | None]
        ] = {}
        """Per task: its entry, its function and, when its params are plain scalars, their
        `ScalarParams` (`runtime.validation.scalar_params`), so that params already in
        their fields' types are not validated again by pydantic."""

    def request_stop(self, signum: int, _frame: Any) -> None:
        """Signal handler: finish the current task, take no new one."""
        self.stopping = True

    def _orphaned(self) -> bool:
        """Whether the supervisor is gone (its registration no longer covers us)."""
        return os.getppid() != self.supervisor_pid

    def run(self) -> None:
        """Claim and run tasks until the queue stays empty or a stop is requested."""
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        for signum in stop_signals:
            signal.signal(signum, self.request_stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        task = self.store.claim(self.claimer, utcnow())
        ended: list[pipe.Message] = []
        while True:
            if task is None:
                if ended:
                    self.report(*ended)
                    ended = []
                if self.stopping or self._orphaned():
                    break
                task = self.idle()
                if task is None:
                    stopped = self.stopping and not self._orphaned()
                    self.report(pipe.Message(pipe.Kind.STOPPING if stopped else pipe.Kind.RETIRED))
                    return
            # The end of one task and the start of the next it claimed go in one write.
            self.report(*ended, pipe.start(task.id, task.timeout_seconds))
            ended = [pipe.end(task.id)]
            task = self.execute(task)
        if not self._orphaned():
            self.report(*ended, pipe.Message(pipe.Kind.STOPPING))

    def idle(self) -> TaskStatus | None:
        """Wait up to `worker_idle_seconds` for a task of the queue; None once the slot is
        given up (its registration deleted, so a dispatch after that starts a worker).

        A delayed or retrying task of the queue that falls due within `worker_idle_seconds`
        keeps the worker waiting for it, past that time if need be, and each wait ends
        when the earliest one falls due, so it starts within milliseconds of its time."""
        linger = self.config.worker_idle_seconds
        deadline = time.monotonic() + linger
        next_check = 0.0
        channels = [queue_channel(name) for name in self.config.queues]
        with self.store.read() as conn:
            for channel in channels:
                self.store.wait_for_change(conn, channel, 0)
            while not (self.stopping or self._orphaned()):
                clock = utcnow()
                due = self.store.next_due(self.queue, clock)
                if due is not None and due <= clock:
                    task = self.store.claim(self.claimer, clock)
                    if task is not None:
                        return task
                until_due = None if due is None else (due - clock).total_seconds()
                now = time.monotonic()
                waiting_for_due = until_due is not None and 0 < until_due <= linger
                if now >= deadline and not waiting_for_due:
                    break
                if now >= next_check:
                    next_check = now + GIVE_WAY_CHECK_S
                    if self.slot_wanted_elsewhere():
                        log.info(
                            "worker %s: giving its slot to a waiting queue",
                            self.pid,
                            extra=self.context,
                        )
                        break
                wait = IDLE_WAIT_S if waiting_for_due else min(IDLE_WAIT_S, deadline - now)
                if until_due is not None and until_due > 0:
                    wait = min(wait, until_due)
                self.store.wait_for_change(conn, channels[0], wait)
        self.store.deregister(self.worker_id, self.queue)
        return None

    def slot_wanted_elsewhere(self) -> bool:
        """Whether a task of another queue waits for a worker this server cannot start
        while this idle one holds a slot of `global_max_workers`."""
        live = self.store.live_workers(utcnow())
        if live.total() < self.config.global_max_workers:
            return False
        for name, queue in self.config.queues.items():
            if name == self.queue or live[name] >= queue.max_workers:
                continue
            if live[name] == 0 and self.store.has_claimable(name):
                return True
        return False

    def execute(self, task: TaskStatus) -> TaskStatus | None:
        """Run one claimed task, record how it ended and claim the next; the next task.

        The caller reports the task's end to the supervisor."""
        began = time.monotonic()
        # A claim returns no log; only a retried attempt's row has one, which counts against
        # max_log_bytes as this attempt's lines do (one read, for a retry only).
        stored = self.store.get(task.id).log if task.attempts > 1 else ""
        sink = RowSink(self.store, self.config, task.id, self.pid, self.cancels, stored)
        status = Status.COMPLETED
        retry_at = None
        try:
            value = self.call(task, sink)
            try:
                result = dumps(value)
            except (TypeError, ValueError) as exc:
                status = Status.FAILED
                message = f"task result is not JSON-serialisable: {exc}"
                result = self.error_result(message, "TypeError")
                sink.log(log_line(f"Task failed: {message}", utcnow()).rstrip("\n"))
            else:
                problem = self.unstorable(result)
                if problem is not None:
                    status = Status.FAILED
                    result = self.error_result(problem, "ValueError")
                    sink.log(log_line(f"Task failed: {problem}", utcnow()).rstrip("\n"))
        except BaseException as exc:  # noqa: BLE001 - anything a task raises fails the task
            status = Status.FAILED
            kind = type(exc).__name__
            result = self.error_result(str(exc), kind)
            sink.log(log_line(f"Task failed: {kind}: {exc}", utcnow()).rstrip("\n"))
            if not isinstance(exc, UnknownTaskError | ParamsError | ResultError):
                sink.log("".join(traceback.format_exception(exc)).rstrip("\n"))
                verdict = self.verdict(task, exc)
                if verdict.retry_at is not None and self.cancel_requested(task, sink):
                    verdict = Verdict(None, None)  # it ends cancelled, below
                if verdict.note is not None:
                    sink.log(log_line(verdict.note, utcnow()).rstrip("\n"))
                retry_at = verdict.retry_at
        if sink.cancel_seen:
            status = Status.CANCELLED
            sink.log(log_line("Task stopped after its cancel was requested", utcnow()).rstrip("\n"))
        lines, replace, status_data = sink.close()
        ttl = sink.temp_ttl if sink.temp_ttl is not None else self.config.temp_directory_default_ttl
        outcome = Outcome(status, result, lines, status_data, ttl, replace, retry_at)
        take_next = not (self.stopping or self._orphaned())
        recorded, following = self.store.finish(
            task.id, self.pid, outcome, utcnow(), self.claimer if take_next else None
        )
        took = time.monotonic() - began
        how = status.value if retry_at is None else f"failed, to be retried at {moment(retry_at)}"
        if not recorded:
            how += ", but the row was no longer ours"
        info_line(
            log,
            f"task {task.id} {task.service_name}.{task.task_name}: {how} in {took:.2f} s",
            task_id=task.id,
            **self.context,
        )
        return following

    def verdict(self, task: TaskStatus, exc: BaseException) -> Verdict:
        """Whether the attempt that raised `exc` is retried (`runtime.retries`)."""
        try:
            entry = self.registry().get((task.service_name, task.task_name))
        except Exception:
            entry = None
        if entry is None:
            return Verdict(None, None)
        return decide(entry, task.attempts, type(exc), utcnow())

    def cancel_requested(self, task: TaskStatus, sink: RowSink) -> bool:
        """Whether a cancel of the task was requested, so that a failed attempt is not run
        again: passed on by the supervisor, or (asked since its last heartbeat) on the row,
        read for a retry only. The task then ends cancelled."""
        if sink.cancelled():
            return True
        if self.store.get(task.id).cancel_requested_at is None:
            return False
        sink.cancel_seen = True
        return True

    def unstorable(self, result: str) -> str | None:
        """Why a task's JSON result cannot be stored, or None: over `max_result_bytes`, or
        holding a lone surrogate (JSON allows one, UTF-8 cannot encode it)."""
        bad = surrogate_in(result)
        if bad is not None:
            return (
                f"result cannot be stored: it holds the lone surrogate {bad}, "
                "which UTF-8 cannot encode"
            )
        size = utf8_size(result)
        limit = self.config.max_result_bytes
        if size > limit:
            return f"result is {size} bytes, over max_result_bytes ({limit})"
        return None

    def error_result(self, message: str, kind: str) -> str:
        """The result of a failed task, `{"error": message, "type": kind}`, with the message
        made storable and cut to fit within `max_result_bytes`."""
        bound = self.config.max_result_bytes // 8
        return dumps({"error": storable(shorten(message, bound)), "type": storable(kind)})

    def call(self, task: TaskStatus, sink: RowSink) -> Any:
        """Resolve the task through the registry, validate its params, call it; its result
        checked against the return annotation (`ResultError` fails the task)."""
        key = (task.service_name, task.task_name)
        if self._tasks is None:
            self._tasks = self.registry()
        entry = self._tasks.get(key)
        if entry is None:
            raise UnknownTaskError(
                f"task {task.service_name}.{task.task_name} is not in the generated registry "
                "(removed from the code?)"
            )
        known = self._callables.get(key)
        if known is None or known[0] is not entry:
            # Imported here: the supervisor imports this module, and pydantic only when
            # its executor has claimed a task.
            from runtime.validation import scalar_params

            known = self._callables[key] = (entry, entry.load(), scalar_params(entry.params))
        _, function, scalars = known
        values = None if scalars is None else scalars.values(task.params)
        if values is None:
            try:
                function, values = bind(entry, task.params)
            except ParamsError as exc:
                raise ParamsError(f"params no longer validate: {exc}") from None
        return entry.check_result(function(TaskInstance(task.id, values, sink), **values))

"""A worker: registers under the limits, then supervises one executor child.

`python -m runtime.worker --queue Q --config PATH [--slot ID]` is what dispatch and the
processor start, detached. The worker adopts the `_workers` slot reserved for it by
whoever started it (`runtime.spawn`), or else registers only if the queue's `max_workers`
and the server's `global_max_workers` allow (otherwise it exits 0 at once, saying so in
its log). It then loads the registry and forks one long-lived executor
(`runtime.executor`) that claims and runs tasks. The worker itself stays small and
single-threaded: it heartbeats, and watches the running task's deadline; past it, it
SIGKILLs the executor, marks the task `stuck` and forks a fresh executor for the rest of
the queue. No fork per task, and a task that hangs in C code is still stopped within a
second of its timeout.

The executor leads its own process group, so whatever its tasks start (subprocesses, forked
children) is in that group: when a task overruns its timeout, or the executor dies while
running one, the supervisor SIGKILLs the whole group, not only the executor. The supervisor
learns that the executor exited from a pidfd (or `waitid`), not from the end of the pipe,
which a child forked by a task could keep open long after the executor is gone; the
executor also closes its end of the pipe in every child it forks.

A cancel of the running task (`Task.cancel`) is read with the heartbeat: the worker passes
it to the executor over a second pipe (`task.cancelled()` turns True) and, if the task is
still running `cancel_grace_seconds` after the request, kills the executor's group, marks
the task `cancelled` and forks a fresh executor, as on a timeout.

SIGTERM/SIGINT: forwarded to the executor, which finishes its task and takes no new one;
the worker then deregisters and exits 0. When the queue is empty the executor retires the
registration (atomically with finding nothing to claim) and the worker spawns workers for
other queues still waiting, since its freed slot may be the one they were waiting for.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime import pipe
from runtime.cli import quick_start, started
from runtime.clock import log_line, utcnow
from runtime.config import Config
from runtime.registry import TaskEntry
from runtime.retries import Verdict, decide, moment

if TYPE_CHECKING:
    from runtime.store import Store

HEARTBEAT_INTERVAL_S = 2.0
GATHER_S = 0.01
"""How long the supervisor lets the executor's messages gather after reading some: a
task's timeout then counts from at most this much after its start."""
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("runtime.worker")


@dataclass
class _Running:
    """The task the executor reported as started."""

    task_id: int
    timeout: int
    deadline: float
    kill_at: float | None = None
    """When a cancel was requested: the moment its grace ends (monotonic)."""

    @property
    def wakes_at(self) -> float:
        """The next moment the supervisor must act on the task by itself."""
        return self.deadline if self.kill_at is None else min(self.deadline, self.kill_at)


def register(config: Config, store: Store, queue: str) -> int | None:
    """Register this process as a worker of `queue` if the limits allow; its id or None."""
    from runtime.processes import start_time
    from runtime.store import Limits

    queue_config = config.queue(queue)
    assert queue_config is not None
    pid = os.getpid()
    return store.register_worker(
        queue,
        pid,
        start_time(pid) or time.time(),
        Limits(queue=queue_config.max_workers, server=config.global_max_workers),
        utcnow(),
    )


class Supervisor:
    """Runs the executor child of one registered worker, enforcing task timeouts."""

    def __init__(self, config: Config, store: Store, queue: str, worker_id: int) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.worker_id = worker_id
        self.registry: Mapping[tuple[str, str], TaskEntry] | None = None
        self.child: int | None = None
        self.pipe: int | None = None
        self.control: int | None = None
        self.exited: int | None = None
        self.buffer = b""
        self.running: _Running | None = None
        self.stopping = False
        self.retired = False
        self.failed = False
        self.next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S

    def tasks(self) -> Mapping[tuple[str, str], TaskEntry]:
        """The generated registry, loaded on first use (in the executor: after its first
        claim, so that importing pydantic does not delay the first task's start)."""
        from runtime.registry import load_tasks

        if self.registry is None:
            self.registry = load_tasks(self.config)
        return self.registry

    def serve(self) -> int:
        """Work the queue until it is empty or a stop is requested; the exit status."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        self.say(f"worker {os.getpid()} for queue {self.queue} started")
        try:
            while not (self.stopping or self.retired or self.failed):
                if self.child is None:
                    self._fork()
                self._step()
            while self.child is not None:
                self._step()
        finally:
            if not self.retired:
                self.store.deregister(self.worker_id)
        if self.retired:
            self.say(f"worker {os.getpid()}: queue {self.queue} is empty, exiting")
            self._hand_off()
        else:
            self.say(f"worker {os.getpid()}: stopped")
        return 1 if self.failed else 0

    def say(self, message: str, *args: Any, task_id: int | None = None) -> None:
        """One line in the worker log, with the worker's queue and pid as fields."""
        extra = {"queue": self.queue, "worker_pid": os.getpid(), "task_id": task_id}
        log.info(message, *args, extra=extra)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        if self.child is not None:
            try:
                os.kill(self.child, signum)
            except ProcessLookupError:
                pass

    def _fork(self) -> None:
        """Start an executor child with a pipe back to us, and one to it for cancels."""
        from runtime.executor import CancelRequests, Executor

        read_end, write_end = os.pipe()
        control_read, control_write = os.pipe()
        self.store.dispose()
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        # Signals wait until each side has its own handlers in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        started()
        pid = os.fork()
        if pid == 0:  # the executor
            os.close(read_end)
            os.close(control_write)
            code = 0
            try:
                os.setpgid(0, 0)
                _close_in_children(write_end)
                _close_in_children(control_read)
                _die_with_parent()
                self.store.dispose(close=False)

                def report(*messages: pipe.Message) -> None:
                    os.write(write_end, b"".join(message.encode() for message in messages))

                Executor(
                    self.config, self.store, self.tasks, self.queue, self.worker_id,
                    report, supervisor, CancelRequests(control_read),
                ).run()
            except BaseException as exc:  # noqa: BLE001 - the child must never unwind into us
                self.say(f"executor {os.getpid()} failed: {type(exc).__name__}: {exc}")
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        try:
            os.setpgid(pid, pid)  # also here, so the group exists whichever side runs first
        except OSError:
            pass
        os.close(write_end)
        os.close(control_read)
        self.child, self.pipe, self.buffer = pid, read_end, b""
        self.control = control_write
        self.exited = _exit_signal(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def _step(self) -> None:
        """Wait for a message from the executor, a deadline or a heartbeat, and act."""
        assert self.child is not None and self.pipe is not None
        now = time.monotonic()
        wait = max(0.0, min(1.0, self.next_heartbeat - now))
        if self.running is not None:
            wait = max(0.0, min(wait, self.running.wakes_at - now))
        watched = [self.pipe] if self.exited is None else [self.pipe, self.exited]
        try:
            ready, _, _ = select.select(watched, [], [], wait)
        except InterruptedError:
            ready = []
        if self.pipe in ready:
            data = os.read(self.pipe, 65536)
            if not data:
                self._reap()
                return
            self._received(data)
            if not (self.retired or self.stopping):
                # Let the next messages gather: a busy executor then writes to a pipe
                # nobody waits on, instead of waking this process for every task.
                time.sleep(GATHER_S)
        elif self._child_exited(ready):
            self._drain()
            self._reap()
            return
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_INTERVAL_S
            running = self.running
            try:
                requested = self.store.heartbeat(
                    self.worker_id, utcnow(), None if running is None else running.task_id
                )
            except Exception as exc:
                self.say(f"worker {os.getpid()}: heartbeat failed: {exc}")
            else:
                if running is not None and requested is not None and running.kill_at is None:
                    self._cancel_requested(running, requested)
        running = self.running
        if running is not None and now >= running.deadline:
            self._time_out()
        elif running is not None and running.kill_at is not None and now >= running.kill_at:
            self._kill_cancelled()

    def _received(self, data: bytes) -> None:
        messages, self.buffer = pipe.split(self.buffer + data)
        for message in messages:
            self._message(message)

    def _child_exited(self, ready: list[int]) -> bool:
        """Whether the executor has exited (it is left to be reaped)."""
        assert self.child is not None
        if self.exited is not None:
            return self.exited in ready
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.child, flags) is not None

    def _drain(self) -> None:
        """Read what the exited executor wrote before it exited, without waiting for the
        end of the pipe (a child it forked may still hold the pipe open)."""
        assert self.pipe is not None
        os.set_blocking(self.pipe, False)
        self._received(pipe.read_ready(self.pipe))

    def _message(self, message: pipe.Message) -> None:
        if message.kind is pipe.Kind.START:
            assert message.task_id is not None and message.timeout is not None
            timeout = message.timeout
            self.running = _Running(message.task_id, timeout, time.monotonic() + timeout)
        elif message.kind is pipe.Kind.END:
            self.running = None
        elif message.kind is pipe.Kind.RETIRED:
            self.retired = True
        elif message.kind is pipe.Kind.STOPPING:
            self.stopping = True

    def _time_out(self) -> None:
        """Kill the executor whose task overran its timeout and mark the task stuck, or put
        it back to pending when it is to be retried."""
        assert self.running is not None
        timeout = self.running.timeout
        task_id, child = self._kill_running()
        killed = f"Task exceeded its timeout of {timeout} s and was killed"
        verdict = self._timeout_verdict(task_id)
        if verdict.retry_at is not None and verdict.note is not None:
            line = log_line(f"{killed}; {verdict.note}", utcnow())
            self.store.requeue(task_id, child, line, verdict.retry_at, utcnow())
            self.say(
                f"task {task_id}: exceeded its timeout of {timeout} s; "
                f"to be retried at {moment(verdict.retry_at)}",
                task_id=task_id,
            )
            return
        note = "" if verdict.note is None else f"; {verdict.note}"
        self.store.mark_stuck(task_id, child, f"{killed}{note}; marked stuck", utcnow())
        self.say(
            f"task {task_id}: exceeded its timeout of {timeout} s; marked stuck",
            task_id=task_id,
        )

    def _cancel_requested(self, running: _Running, requested: datetime) -> None:
        """Pass a cancel request on to the executor (`task.cancelled()` turns True) and
        set the moment, `cancel_grace_seconds` after the request, when the task is killed."""
        grace = self.config.cancel_grace_seconds
        waited = max(0.0, (utcnow() - requested).total_seconds())
        left = max(0.0, grace - waited)
        running.kill_at = time.monotonic() + left
        assert self.control is not None
        try:
            os.write(self.control, pipe.cancel(running.task_id).encode())
        except OSError:
            pass  # the executor is gone: `_reap` marks the task
        self.say(
            f"task {running.task_id}: cancel requested; killed in {left:.1f} s if still running",
            task_id=running.task_id,
        )

    def _timeout_verdict(self, task_id: int) -> Verdict:
        """Whether a timed-out attempt is retried: as one that raised `TimeoutError`
        (`runtime.retries`), unless its cancel was requested. No application module is
        imported here."""
        try:
            task = self.store.get(task_id)
            entry = self.tasks().get((task.service_name, task.task_name))
            if entry is None or task.cancel_requested_at is not None:
                return Verdict(None, None)
            return decide(entry, task.attempts, TimeoutError, utcnow(), importing=False)
        except Exception as exc:
            self.say(f"task {task_id}: cannot tell whether to retry it: {exc}", task_id=task_id)
            return Verdict(None, None)

    def _kill_cancelled(self) -> None:
        """Kill the executor whose task is still running when its cancel's grace is over,
        and mark the task cancelled."""
        grace = self.config.cancel_grace_seconds
        task_id, child = self._kill_running()
        reason = (
            f"Task was still running {grace} s after its cancel was requested and was "
            "killed; marked cancelled"
        )
        self.store.mark_cancelled(task_id, child, reason, utcnow())
        self.say(f"task {task_id}: killed after its cancel; marked cancelled", task_id=task_id)

    def _kill_running(self) -> tuple[int, int]:
        """Kill the executor's process group and collect it; the task it ran and its pid.
        The next step forks a new executor for the rest of the queue."""
        assert self.child is not None and self.running is not None
        task_id, child = self.running.task_id, self.child
        _kill_group(child)
        self._reap(expected=True)
        return task_id, child

    def _reap(self, expected: bool = False) -> None:
        """Collect the exited executor; a task it left running is marked stuck."""
        assert self.child is not None and self.pipe is not None
        child = self.child
        if self.running is not None and not expected:
            # Before the wait: while the executor is a zombie its id cannot name another group.
            _kill_group(child)
        _, status = os.waitpid(child, 0)
        os.close(self.pipe)
        if self.control is not None:
            os.close(self.control)
        if self.exited is not None:
            os.close(self.exited)
        self.child, self.pipe, self.exited, self.control = None, None, None, None
        running, self.running = self.running, None
        if expected:
            return
        how = _describe_exit(status)
        if running is not None:
            reason = f"Worker process {child} died while running the task ({how}); marked stuck"
            self.store.mark_stuck(running.task_id, child, reason, utcnow())
            self.say(
                f"task {running.task_id}: executor {child} died ({how}); marked stuck",
                task_id=running.task_id,
            )
        elif not (self.retired or self.stopping):
            self.say(f"worker {os.getpid()}: executor {child} exited unexpectedly ({how})")
            self.failed = True

    def _hand_off(self) -> None:
        """Spawn workers for other queues waiting for the slot this worker frees."""
        from runtime.spawn import spawn_for_pending

        try:
            pending = self.store.pending_counts()
            order = sorted(pending, key=lambda q: pending[q][1])
            spawn_for_pending(self.config, self.store, {q: pending[q][0] for q in order})
        except Exception as exc:
            self.say(f"worker {os.getpid()}: could not start workers for waiting queues: {exc}")


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _kill_group(leader: int) -> None:
    """SIGKILL the executor `leader` and its process group: what its task started too."""
    for kill in (os.killpg, os.kill):
        try:
            kill(leader, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exit_signal(pid: int) -> int | None:
    """A descriptor that becomes readable when the child `pid` exits (a Linux pidfd), or
    None where there is none (the supervisor then asks `waitid` at each step)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _close_in_children(fd: int) -> None:
    """Close `fd` in every child this process forks (`os.fork`, multiprocessing), but not
    again in their own children, where the number may by then name something else."""
    still_open = [True]

    def close() -> None:
        if still_open[0]:
            still_open[0] = False
            try:
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=close)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the supervisor dies (best effort elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """`python -m runtime.worker --queue Q [--config PATH]`.

    The garbage collector is off until the executor is forked (`runtime.cli.quick_start`),
    which is why this module imports the store, and with it SQLAlchemy, lazily.
    """
    with quick_start():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    from runtime.cli import Parser, run_command
    from runtime.config import load_config
    from runtime.logs import configure

    parser = Parser(prog="python -m runtime.worker")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--config")
    parser.add_argument("--slot", type=int, help="the _workers row reserved for this process")
    args = parser.parse_args(argv)

    def work() -> int:
        config = load_config(args.config)
        configure(config.log_level)
        if config.queue(args.queue) is None:
            from runtime.cli import UsageError

            raise UsageError(f"queue '{args.queue}' is not defined in {config.path.name}")
        from runtime.store import Store

        store = Store(config)
        try:
            return _serve(config, store, args.queue, args.slot)
        finally:
            store.dispose()

    return run_command(parser.prog, work)


def _serve(config: Config, store: Store, queue: str, slot: int | None) -> int:
    """Adopt `slot` or register, then supervise; the exit status. The caller closes the
    store's connections afterwards rather than leave them to the garbage collector, which
    the start-up goes without (`quick_start`)."""
    from runtime.processes import start_time

    worker_id = None
    if slot is not None:
        pid = os.getpid()
        worker_id = store.adopt_worker(slot, pid, start_time(pid) or time.time(), utcnow())
    if worker_id is None:
        worker_id = register(config, store, queue)
    if worker_id is None:
        log.info("worker %s: queue %s has no free worker slot, exiting", os.getpid(), queue)
        return 0
    from runtime.api import use_config

    use_config(config, store)
    return Supervisor(config, store, queue, worker_id).serve()


if __name__ == "__main__":
    sys.exit(main())

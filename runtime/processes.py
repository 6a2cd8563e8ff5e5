"""Whether a process recorded in the database is still the one that was recorded.

A PID alone is not enough: the kernel reuses PIDs, so a worker's row also keeps the
process's start time (psutil `create_time`), and a PID counts as alive only while it still
belongs to a process started at that time.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from functools import cache

import psutil  # type: ignore[import-untyped]

# A recorded start time and psutil's reading of it may differ by float rounding through the
# database; two processes with the same PID start further apart than this.
START_TOLERANCE_S = 0.05


def start_time(pid: int) -> float | None:
    """The process's start time (psutil `create_time`), None if there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@cache
@cache
def _clock() -> tuple[float, int] | None:
    """The boot time and the clock ticks per second that `/proc/PID/stat` times count in;
    None where there is no Linux `/proc`."""
    if not os.path.isfile("/proc/self/stat"):
        return None
    return float(psutil.boot_time()), os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int, boot: float, ticks: int) -> tuple[str, float] | None:
    """A Linux process's state letter and start time from one read of `/proc/PID/stat`
    (what psutil computes from the same file, without its three reads); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb", buffering=0) as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), boot + int(fields[19]) / ticks


WATCHED_MAX = 64
"""The most processes one process keeps a pidfd open on (see `_Watched`)."""


class _Watched:
    """Processes already found alive, each held by a pidfd (Linux 5.3+).

    A dispatch asks whether its queue's worker lives each time, and reading
    `/proc/PID/stat` for it costs several system calls. A pidfd refers to one process,
    never to a later one given the same PID, and polls readable once it has exited: after
    one full check, a single non-blocking poll answers. The pidfd is opened *before* that
    check, so the process it holds is the one the check saw (a PID reused in between
    shows another start time and is not kept). Every use holds a lock, so no thread polls
    or closes a descriptor another thread has just closed.
    """

    def __init__(self) -> None:
        self.fds: dict[tuple[int, float], int] = {}
        self.usable = hasattr(os, "pidfd_open")
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # Another thread may have held the lock at the fork; the child has no such thread.
        self._lock = threading.Lock()

    def alive(self, pid: int, started: float) -> bool | None:
        """True or False when `(pid, started)` is watched; None when it is not."""
        with self._lock:
            fd = self.fds.get((pid, started))
            if fd is None:
                return None
            if not _exited(fd):
                return True
            del self.fds[(pid, started)]
            os.close(fd)
            return False

    def open(self, pid: int) -> int | None:
        """A pidfd on `pid`, or None where pidfds are not available."""
        if not self.usable:
            return None
        try:
            return os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:
            self.usable = False
            return None

    def keep(self, pid: int, started: float, fd: int) -> None:
        """Watch `(pid, started)` through `fd` from now on; when `WATCHED_MAX` are held,
        the watches of exited processes are closed first, then the oldest."""
        with self._lock:
            if (pid, started) in self.fds:
                os.close(fd)
                return
            if len(self.fds) >= WATCHED_MAX:
                ended = [key for key, old in self.fds.items() if _exited(old)]
                oldest = [key for key in self.fds if key not in ended]
                for key in ended + oldest[: max(0, len(self.fds) - len(ended) - WATCHED_MAX + 1)]:
                    os.close(self.fds.pop(key))
            self.fds[(pid, started)] = fd


def _exited(fd: int) -> bool:
    """Whether the process a pidfd refers to has exited (its pidfd polls readable)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


_watched = _Watched()


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` and has not exited."""
    if pid is None:
        return False
    if started is None:
        return _is_alive(pid, None)
    known = _watched.alive(pid, started)
    if known is not None:
        return known
    fd = _watched.open(pid)
    alive = _is_alive(pid, started)
    if fd is not None:
        if alive:
            _watched.keep(pid, started, fd)
        else:
            os.close(fd)
    return alive


def _is_alive(pid: int, started: float | None) -> bool:
    """`is_alive` from the process table."""
    clock = _clock()
    if clock is not None:
        found = _proc_stat(pid, *clock)
        if found is None:
            return False
        state, created = found
        if state in ("Z", "X"):
            return False
        return started is None or abs(created - started) < START_TOLERANCE_S
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return started is None or abs(created - started) < START_TOLERANCE_S


def kill_orphaned_group(leader: int | None, started: float | None) -> None:
    """SIGKILL what is left of the process group of a dead executor (the processes its task
    started), `leader` being its PID and `started` its start time: for the processor, when
    a worker died outright and its task is marked stuck.

    The group is killed only when no process has the id `leader` (Linux gives no new
    process an id that a group still has, so a group of that id is the executor's), or
    when that process is the executor's own zombie. A live process with that id means the
    executor is gone and its id reused, so its group is gone too.
    """
    if leader is None or leader <= 1:
        return
    try:
        process = psutil.Process(leader)
        if process.status() != psutil.STATUS_ZOMBIE or started is None:
            return
        if abs(process.create_time() - started) >= START_TOLERANCE_S:
            return
    except psutil.NoSuchProcess:
        pass
    except psutil.AccessDenied:
        return
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

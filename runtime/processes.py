"""Whether a process recorded in the database is still the one that was recorded.

A PID alone is not enough: the kernel reuses PIDs, so a worker's row also keeps the
process's start time (psutil `create_time`), and a PID counts as alive only while it still
belongs to a process started at that time.
"""

from __future__ import annotations

import os
import signal
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


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` and has not exited."""
    if pid is None:
        return False
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

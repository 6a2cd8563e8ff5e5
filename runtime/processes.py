"""Whether a process recorded in the database is still the one that was recorded.

A PID alone is not enough: the kernel reuses PIDs, so a worker's row also keeps the
process's start time (psutil `create_time`), and a PID counts as alive only while it still
belongs to a process started at that time.
"""

from __future__ import annotations

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


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` and has not exited."""
    if pid is None:
        return False
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

"""Whether a recorded worker process is alive: the process table, and the pidfds kept for
processes already found alive."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from runtime import processes
from runtime.processes import WATCHED_MAX, is_alive, start_time


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def started(pid: int) -> float:
    moment = start_time(pid)
    assert moment is not None
    return moment


def test_a_live_process_is_alive_and_stays_so_while_watched(sleeper) -> None:
    moment = started(sleeper.pid)
    assert is_alive(sleeper.pid, moment)
    assert is_alive(sleeper.pid, moment)


def test_a_watched_process_that_exits_is_dead_at_the_next_look(sleeper) -> None:
    moment = started(sleeper.pid)
    assert is_alive(sleeper.pid, moment)
    sleeper.kill()
    deadline = time.monotonic() + 10
    while is_alive(sleeper.pid, moment):
        assert time.monotonic() < deadline, "a killed process still counted as alive"
        time.sleep(0.01)
    # Its zombie (not reaped yet) is not alive either, and nothing is left watching it.
    assert sleeper.poll() is not None or not is_alive(sleeper.pid, moment)
    assert (sleeper.pid, moment) not in processes._watched.fds


def test_another_start_time_is_another_process(sleeper) -> None:
    moment = started(sleeper.pid)
    assert is_alive(sleeper.pid, moment)
    assert not is_alive(sleeper.pid, moment + 5)
    assert (sleeper.pid, moment + 5) not in processes._watched.fds


def test_a_process_that_never_existed_is_not_alive() -> None:
    assert not is_alive(2**22 + 7, 1.0)
    assert not is_alive(None, None)


def test_the_watches_are_capped() -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        for _ in range(WATCHED_MAX + 5)
    ]
    try:
        for child in children:
            assert is_alive(child.pid, started(child.pid))
        assert len(processes._watched.fds) <= WATCHED_MAX
        # A process whose watch was closed to make room is still judged correctly.
        first = children[0]
        assert is_alive(first.pid, started(first.pid))
    finally:
        for child in children:
            child.kill()
            child.wait()

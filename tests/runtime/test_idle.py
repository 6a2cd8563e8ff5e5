"""Idle workers: a worker lingers `worker_idle_seconds` after its queue empties, takes a new
task at once, gives its slot to another queue that needs it, and stops on SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psutil
import pytest

from runtime import Task
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def _worker_pids(app: App) -> set[int]:
    return {w.pid for w in app.registered_workers() if w.pid}


def test_an_idle_worker_takes_the_next_dispatch_without_a_new_process(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=30)
    first = Task.dispatch("demo", "add", {"a": 1})
    assert app.wait_status(first).status == "completed"
    [worker] = wait_until(lambda: _worker_pids(app), 10, "the worker to be registered")

    started = time.monotonic()
    second = Task.dispatch("demo", "add", {"a": 2})
    wait_until(lambda: app.status(second).status == "completed", 10, "the second task")
    assert time.monotonic() - started < 5
    assert _worker_pids(app) == {worker}, "a new worker was started for the second task"
    assert app.status(second).worker_pid == app.status(first).worker_pid


def test_an_idle_worker_exits_after_worker_idle_seconds(make_app: Callable[..., App]) -> None:
    app = make_app(worker_idle_seconds=2)
    task_id = Task.dispatch("demo", "add", {"a": 1})
    done = app.wait_status(task_id)
    assert done.completed_at is not None
    wait_until(lambda: _worker_pids(app), 10, "the worker to linger")
    app.wait_idle(timeout=30)
    waited = time.time() - done.completed_at.timestamp()
    assert waited >= 2, f"the worker left {waited:.1f} s after its last task"
    assert app.registered_workers() == []
    assert "is empty, exiting" in app.worker_log("default")


def test_an_idle_worker_gives_its_slot_to_another_queue_at_once(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=60, global_max_workers=1)
    first = Task.dispatch("demo", "add", {"a": 1})
    assert app.wait_status(first).status == "completed"
    wait_until(lambda: _worker_pids(app), 10, "the default worker to linger")

    path = app.root / "ran"
    started = time.monotonic()
    other = Task.dispatch("demo", "record_other", {"path": str(path)})
    assert app.wait_status(other, timeout=20).status == "completed"
    assert time.monotonic() - started < 10, "the other queue waited for the idle worker"
    assert "giving its slot" in app.worker_log("default")


def test_sigterm_stops_an_idle_worker_promptly(make_app: Callable[..., App]) -> None:
    app = make_app(worker_idle_seconds=60)
    task_id = Task.dispatch("demo", "add", {"a": 1})
    assert app.wait_status(task_id).status == "completed"
    [pid] = wait_until(lambda: _worker_pids(app), 10, "the worker to linger")
    process = psutil.Process(pid)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=5)  # not a child of ours: psutil gives no exit status, only its end
    assert app.registered_workers() == []
    assert "stopped" in app.worker_log("default")

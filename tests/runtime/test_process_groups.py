"""What a task starts goes with it: each executor leads its own process group, which is
killed when its task overruns its timeout or its worker dies, and a child that outlives a
finished task does not keep its worker from exiting."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import psutil
import pytest

from runtime import Task
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow

# A duration no other test's `sleep` uses, so the process found is the one this test started.
SLEEP = "97.25"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sleepers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"] == ["sleep", SLEEP] and _alive(process.pid):
            found.append(process)
    return found


@pytest.fixture
def no_sleepers() -> Iterator[None]:
    """Kill what a failing test left behind."""
    yield
    for process in _sleepers():
        process.kill()


def _child(log: str) -> int:
    match = re.search(r"started child (\d+)", log)
    assert match is not None, log
    return int(match.group(1))


def test_a_task_past_its_timeout_leaves_no_process_it_started(app: App, no_sleepers: None) -> None:
    task_id = Task.dispatch("demo", "child_past_timeout", {"seconds": SLEEP})

    status = app.wait_status(task_id, timeout=30)
    assert status.status == "stuck"
    assert "exceeded its timeout of 2 s" in status.log
    child = _child(status.log)
    wait_until(lambda: not _alive(child), 5, f"the task's child {child} to be killed")
    assert _sleepers() == []


def test_a_worker_killed_outright_leaves_no_process_its_task_started(
    make_app: Callable[..., App], no_sleepers: None
) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    task_id = Task.dispatch(
        "demo", "child_then_gate", {"seconds": SLEEP, "gate": str(app.root / "never")}
    )
    wait_until(lambda: "started child" in app.status(task_id).log, 30, "the task's child")
    child = _child(app.status(task_id).log)
    executor = psutil.Process(app.status(task_id).worker_pid)
    supervisor = executor.parent()
    assert supervisor is not None

    supervisor.kill()
    wait_until(lambda: not _alive(executor.pid), 10, "the executor to die with its worker")
    assert _alive(child)
    done = app.command("process")
    assert done.returncode == 0, done.stderr

    assert app.status(task_id).status == "stuck"
    wait_until(lambda: not _alive(child), 5, f"the task's child {child} to be killed")


def test_a_child_that_outlives_its_task_does_not_keep_the_worker_waiting(app: App) -> None:
    task_id = Task.dispatch("demo", "fork_child", {"seconds": 60})

    status = app.wait_status(task_id)
    assert status.status == "completed", status.log
    child, supervisor = status.result["child"], status.result["supervisor"]
    try:
        wait_until(lambda: not _alive(supervisor), 5, "the worker to exit")
        assert _alive(child), "a child a task left running is not the worker's to stop"
        assert app.registered_workers() == []
    finally:
        if _alive(child):
            psutil.Process(child).kill()

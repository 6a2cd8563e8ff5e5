"""Cancellation: `Task.cancel`, `python -m runtime.cancel`, on every backend with real workers.

A pending task is cancelled at once and never runs; a running one is asked to stop (its
supervisor reads the request with its heartbeat and tells the executor, so that
`task.cancelled()` turns True) and is killed `cancel_grace_seconds` after the request if it
is still running, after which the worker goes on with the queue.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

import runtime.api
from runtime import Task, TaskNotFoundError
from runtime.registry import load_schedules
from runtime.scheduler import tick
from tests.runtime.helpers import App, hold_slots, one_line_error, release_slots, wait_until

GRACE_S = 1


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    """The test app with one video worker at most and a one-second cancel grace."""
    return make_app({"video": 1, "other": 2, "slow": 1}, cancel_grace_seconds=GRACE_S)


def test_a_pending_task_is_cancelled_at_once_and_never_runs(app: App, tmp_path: Path) -> None:
    assert runtime.api.context().tasks  # loading it puts the generated package on sys.path
    client = importlib.import_module(f"{app.config.output.name}.tasks")
    hold_slots(app, "video", 1)
    task_id = client.demo.gated.dispatch(gate=str(tmp_path / "never"))

    assert client.cancel(task_id) is True

    status = app.status(task_id)
    assert status.status == "cancelled" and status.finished
    assert status.completed_at is not None and status.started_at is None
    assert status.log.endswith("] Cancelled before it started\n")
    assert Task.cancel(task_id) is False

    release_slots(app)
    after = Task.dispatch("demo", "record", {"path": str(tmp_path / "ran.jsonl")})
    assert app.wait_status(after).status == "completed"
    ran = [json.loads(line)["id"] for line in (tmp_path / "ran.jsonl").read_text().splitlines()]
    assert ran == [after]
    assert app.status(task_id).started_at is None


def test_a_running_task_that_looks_at_cancelled_stops_and_ends_cancelled(
    make_app: Callable[..., App],
) -> None:
    app = make_app(cancel_grace_seconds=30)
    task_id = Task.dispatch("demo", "until_cancelled", {})
    app.wait_status(task_id, "running")

    asked = time.monotonic()
    assert Task.cancel(task_id) is True
    assert app.status(task_id).cancel_requested_at is not None
    status = app.wait_status(task_id, timeout=20)
    took = time.monotonic() - asked

    assert status.status == "cancelled"
    assert took < 5, f"took {took:.1f} s: the heartbeat passes a cancel on within 2 s"
    assert status.result["stopped"] is True
    assert "cancel seen, stopping" in status.log
    assert "Task stopped after its cancel was requested" in status.log
    assert Task.cancel(task_id) is False


def test_a_running_task_that_ignores_its_cancel_is_killed_after_the_grace_and_the_queue_goes_on(
    app: App, tmp_path: Path
) -> None:
    stubborn = Task.dispatch(
        "demo", "child_then_gate", {"seconds": "60", "gate": str(tmp_path / "never")}
    )
    app.wait_status(stubborn, "running")
    found = wait_until(
        lambda: re.search(r"started child (\d+)", app.status(stubborn).log), 20, "the child"
    )
    child = psutil.Process(int(found.group(1)))
    following = Task.dispatch("demo", "record", {"path": str(tmp_path / "ran.jsonl")})

    asked = time.monotonic()
    assert Task.cancel(stubborn) is True
    status = app.wait_status(stubborn, timeout=20)
    took = time.monotonic() - asked

    assert status.status == "cancelled"
    assert took <= GRACE_S + 2, f"killed {took:.1f} s after the cancel"
    assert status.log.rstrip("\n").endswith(
        f"Task was still running {GRACE_S} s after its cancel was requested and was killed; "
        "marked cancelled"
    )
    assert status.result is None
    wait_until(lambda: not _alive(child), 10, "the task's child process to be killed")
    after = app.wait_status(following)
    assert after.status == "completed"
    workers = app.task_workers([stubborn, following])
    assert workers[stubborn] == workers[following]
    assert after.worker_pid != status.worker_pid  # a fresh executor of the same worker
    assert "killed after its cancel; marked cancelled" in app.worker_log("video")


def test_cancelling_an_ended_task_is_false_and_an_unknown_id_is_an_error(app: App) -> None:
    done = Task.dispatch("demo", "add", {"a": 1})
    assert app.wait_status(done).status == "completed"

    assert Task.cancel(done) is False
    assert app.status(done).status == "completed"
    with pytest.raises(TaskNotFoundError, match="no task with id 999999"):
        Task.cancel(999999)


def test_the_cancel_command_says_what_it_did_with_exit_statuses_like_the_others(
    app: App, tmp_path: Path
) -> None:
    hold_slots(app, "video", 1)
    pending = Task.dispatch("demo", "gated", {"gate": str(tmp_path / "never")})

    done = app.command("cancel", str(pending))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"task {pending} cancelled\n", "")
    again = app.command("cancel", str(pending))
    assert (again.returncode, again.stdout) == (1, f"task {pending} already cancelled\n")

    release_slots(app)
    running = Task.dispatch("demo", "until_cancelled", {})
    app.wait_status(running, "running")
    asked = app.command("cancel", "--config", str(app.config.path), str(running))
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == (
        f"task {running} is running: asked to stop, it is killed after {GRACE_S} s if still "
        "running\n"
    )
    assert app.wait_status(running).status == "cancelled"

    one_line_error(app.command("cancel", "999999"), "no task with id 999999")
    one_line_error(app.command("cancel", "abc"), "invalid int value")
    one_line_error(app.command("cancel", str(2**70)), f"no task with id {2**70}")


def test_a_schedules_upcoming_run_can_be_cancelled_and_the_next_slot_still_comes(
    app: App,
) -> None:
    now = datetime(2030, 1, 1, 10, 30, tzinfo=UTC)
    tick(app.store, app.config, load_schedules(app.config), now)
    upcoming = app.store.upcoming_rows()["cleanup_service.cleanup_temp_directories"]
    slot = datetime(2030, 1, 1, 11, 0, tzinfo=UTC)
    assert app.status(upcoming.id).next_run_at == slot

    assert Task.cancel(upcoming.id) is True

    cancelled = app.status(upcoming.id)
    assert cancelled.status == "cancelled" and cancelled.next_run_at == slot
    following = app.store.upcoming_rows()["cleanup_service.cleanup_temp_directories"]
    assert following.id != upcoming.id
    assert app.status(following.id).next_run_at == slot + timedelta(hours=1)
    result = tick(app.store, app.config, load_schedules(app.config), slot + timedelta(minutes=1))
    assert result.released == ()
    assert Task.cancel(upcoming.id) is False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

"""Timeouts, killed workers and signals: what happens to the task and to the queue."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import timedelta

import psutil
import pytest
from sqlalchemy import insert

from runtime import Task
from runtime.clock import to_db, utcnow
from runtime.schema import workers
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def _running_pid(app: App, task_id: int) -> int:
    status = app.wait_status(task_id, "running")
    assert status.worker_pid is not None
    return status.worker_pid


def test_a_task_past_its_timeout_is_killed_and_stuck_within_seconds_and_the_queue_goes_on(
    app: App,
) -> None:
    hung = Task.dispatch("demo", "hang", {"seconds": 120})
    after = Task.dispatch("demo", "note", {"path": str(app.root / "notes"), "text": "after"})

    executor = _running_pid(app, hung)
    status = app.wait_status(hung, timeout=15)
    assert status.status == "stuck"
    assert status.started_at is not None and status.completed_at is not None
    assert status.completed_at - status.started_at < timedelta(seconds=2 + 3)
    assert "hanging" in status.log
    assert "exceeded its timeout of 2 s" in status.log
    assert status.worker_pid == executor
    wait_until(lambda: not psutil.pid_exists(executor) or _zombie(executor), 5, "executor gone")

    assert app.wait_status(after).status == "completed"
    assert (app.root / "notes").read_text() == "after\n"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_9_of_the_executing_process_marks_its_task_stuck_and_the_rest_still_run(
    make_app: Callable[..., App],
) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    gated = Task.dispatch("demo", "gated", {"gate": str(app.root / "never")})
    runs = app.root / "runs"
    behind = [Task.dispatch("demo", "record", {"path": str(runs)}) for _ in range(3)]

    os.kill(_running_pid(app, gated), signal.SIGKILL)

    status = app.wait_status(gated)
    assert status.status == "stuck"
    assert "died while running the task (killed by signal 9)" in status.log
    for task_id in behind:
        assert app.wait_status(task_id).status == "completed"


def test_a_worker_killed_outright_leaves_its_task_to_the_next_processor_run(
    make_app: Callable[..., App],
) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    gated = Task.dispatch("demo", "gated", {"gate": str(app.root / "never")})
    runs = app.root / "runs"
    executor = psutil.Process(_running_pid(app, gated))
    behind = [Task.dispatch("demo", "record", {"path": str(runs)}) for _ in range(3)]

    supervisor = executor.parent()
    assert supervisor is not None
    supervisor.kill()
    executor.wait(timeout=10)  # it dies with its supervisor
    assert app.status(gated).status == "running"
    assert set(app.statuses(behind).values()) == {"pending"}

    done = app.command("process")
    assert done.returncode == 0, done.stderr
    status = app.status(gated)
    assert status.status == "stuck"
    assert f"Worker process {executor.pid} is gone" in status.log
    assert set(app.statuses(behind).values()) == {"completed"}


@pytest.mark.parametrize("target", ["worker", "executor"])
def test_sigterm_lets_the_current_task_finish_then_the_worker_exits_0_leaving_the_rest(
    make_app: Callable[..., App], target: str
) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    gate = app.root / "gate"
    gated = app.insert_row("demo", "gated", "video", {"gate": str(gate)})
    behind = [app.insert_row("demo", "record", "video", {"path": str(app.root / "r")})]
    worker = app.start("worker", "--queue", "video", "--config", str(app.config.path))

    executor = _running_pid(app, gated)
    os.kill(worker.pid if target == "worker" else executor, signal.SIGTERM)
    wait_until(lambda: "waiting for the gate" in app.status(gated).log, 10, "the task's log")
    assert app.status(gated).status == "running"
    gate.touch()

    assert worker.wait(timeout=30) == 0
    assert app.status(gated).status == "completed"
    assert set(app.statuses(behind).values()) == {"pending"}
    assert app.registered_workers() == []


def test_the_processor_marks_stuck_only_tasks_whose_process_is_gone(app: App) -> None:
    me = psutil.Process()
    started = me.create_time()
    alive = app.insert_row(
        "demo", "add", "default", {}, status="running", worker_pid=me.pid, worker_started=started
    )
    reused = app.insert_row(
        "demo", "add", "default", {}, status="running", worker_pid=me.pid,
        worker_started=started - 3600,
    )
    long_ago = to_db(utcnow() - timedelta(hours=2))
    silent_remote = app.insert_row(
        "demo", "add", "default", {}, status="running", server_id=2, worker_pid=1,
        started_at=long_ago,
    )
    heard_remote = app.insert_row(
        "demo", "add", "default", {}, status="running", server_id=2, worker_pid=1,
        started_at=long_ago,
    )
    with app.store.write() as conn:
        remote_worker = conn.execute(
            insert(workers).values(
                server_id=2, pid=1, process_started=0.0, queue_name="default",
                heartbeat_at=to_db(utcnow()), created_at=long_ago,
            )
        ).inserted_primary_key[0]
    app.update_row(heard_remote, worker_id=remote_worker)

    done = app.command("process")
    assert done.returncode == 0, done.stderr
    states = app.statuses([alive, reused, silent_remote, heard_remote])
    assert states == {
        alive: "running",
        reused: "stuck",
        silent_remote: "stuck",
        heard_remote: "running",
    }
    assert "is gone" in app.status(reused).log
    assert "sent no heartbeat" in app.status(silent_remote).log

"""Queued mode through `runtime.Task`, with real detached workers on a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from runtime import ParamsError, Task, TaskNotFoundError, UnknownTaskError
from runtime.clock import to_db, utcnow
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def test_dispatch_starts_a_worker_that_runs_the_task_and_exits(app: App) -> None:
    task_id = Task.dispatch("demo", "add", {"a": "2", "b": 3})

    status = app.wait_status(task_id)
    assert status.status == "completed"
    assert status.result == 5
    assert status.params == {"a": 2, "b": 3}
    assert "adding 2 and 3" in status.log
    assert status.started_at is not None and status.started_at.tzinfo == UTC
    assert status.completed_at is not None and status.completed_at >= status.started_at
    assert status.worker_pid is not None
    app.wait_idle()
    assert app.registered_workers() == []


def test_progress_and_log_are_visible_while_the_task_runs(app: App) -> None:
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "gated", {"gate": str(gate)})

    def halfway() -> bool:
        status = Task.status(task_id)
        return status.status == "running" and status.get("progress") == 50

    wait_until(halfway, 30, "progress 50 while running")
    assert "waiting for the gate" in Task.status(task_id).log
    gate.touch()
    status = app.wait_status(task_id)
    assert status.status == "completed"
    assert status.get("progress") == 100
    assert status.get("missing", "default") == "default"
    assert status.log.index("waiting for the gate") < status.log.index("gate opened")


def test_an_exception_fails_the_task_with_its_message_type_and_traceback(app: App) -> None:
    task_id = Task.dispatch("demo", "fail", {"message": "disk full"})

    status = app.wait_status(task_id)
    assert status.status == "failed"
    assert status.result == {"error": "disk full", "type": "ValueError"}
    assert "about to fail" in status.log
    assert "Traceback (most recent call last)" in status.log
    assert "ValueError: disk full" in status.log


def test_a_result_json_cannot_hold_fails_the_task_saying_so(app: App) -> None:
    task_id = Task.dispatch("demo", "bad_result")

    status = app.wait_status(task_id)
    assert status.status == "failed"
    assert status.result["type"] == "TypeError"
    assert "not JSON-serialisable" in status.result["error"]
    assert "set" in status.result["error"]


def test_dispatch_rejects_unknown_tasks_and_bad_params_before_queueing(app: App) -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'demo.nope'"):
        Task.dispatch("demo", "nope")
    with pytest.raises(UnknownTaskError, match="unknown service 'nope'"):
        Task.dispatch("nope", "add")
    with pytest.raises(ParamsError) as bad:
        Task.dispatch("demo", "add", {"a": "many", "colour": "red"})
    assert "a: " in str(bad.value) and "many" in str(bad.value)
    assert "colour: unknown parameter" in str(bad.value)
    with pytest.raises(ParamsError, match="a: missing"):
        Task.dispatch("demo", "add", {})
    with pytest.raises(TaskNotFoundError):
        Task.status(1)


def test_an_id_beyond_64_bits_is_an_unknown_id(app: App) -> None:
    with pytest.raises(TaskNotFoundError, match="no task with id"):
        Task.status(2**70)
    with pytest.raises(TaskNotFoundError):
        Task.redispatch(-(2**70))


def test_status_of_an_unknown_id_raises(app: App) -> None:
    with pytest.raises(TaskNotFoundError, match="no task with id 999"):
        Task.status(999)


def test_redispatch_queues_a_new_copy_that_runs(app: App) -> None:
    first = Task.dispatch("demo", "fail", {"message": "once"})
    assert app.wait_status(first).status == "failed"

    second = Task.redispatch(first)
    assert second != first
    status = app.wait_status(second)
    assert (status.service_name, status.task_name) == ("demo", "fail")
    assert status.params == {"message": "once"}
    assert status.status == "failed"
    assert app.status(first).status == "failed"


def test_rows_of_removed_tasks_or_invalid_params_fail_and_the_worker_goes_on(app: App) -> None:
    removed = app.insert_row("demo", "gone", "default", {})
    invalid = app.insert_row("demo", "add", "default", {"a": "not a number"})
    good = app.insert_row("demo", "add", "default", {"a": 1, "b": 1})

    done = app.command("process")
    assert done.returncode == 0, done.stderr

    gone = app.status(removed)
    assert gone.status == "failed"
    assert gone.result["type"] == "UnknownTaskError"
    assert "demo.gone is not in the generated registry" in gone.result["error"]
    bad = app.status(invalid)
    assert bad.status == "failed"
    assert bad.result["type"] == "ParamsError"
    assert "no longer validate" in bad.result["error"] and "a: " in bad.result["error"]
    assert app.status(good).result == 2


def test_the_generated_client_dispatches_runs_and_reads_status(
    app: App, app_package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(app_package))
    from generated import tasks

    assert tasks.demo.add.run(a=4, b=5) == 9
    assert "adding 4 and 5" in capsys.readouterr().out
    task_id = tasks.demo.add.dispatch(a=1, b=2)
    assert app.wait_status(task_id).result == 3
    assert tasks.status(task_id).status == "completed"


def test_temp_directories_expire_after_the_task_and_cleanup_deletes_them(
    make_app: Callable[..., App],
) -> None:
    app = make_app(temp_directory_default_ttl=0)
    short = Task.dispatch("demo", "use_temp")
    kept = Task.dispatch("demo", "use_temp", {"keep": 3600})
    short_status, kept_status = app.wait_status(short), app.wait_status(kept)
    assert short_status.status == kept_status.status == "completed"
    short_dir, kept_dir = Path(short_status.result), Path(kept_status.result)
    assert short_dir == app.config.storage / "tasks" / str(short)
    assert (short_dir / "out.txt").exists() and (kept_dir / "out.txt").exists()

    running = app.insert_row(
        "demo", "use_temp", "default", {}, status="running", has_temp_directory=True,
        temp_expires_at=to_db(utcnow() - timedelta(hours=1)),
    )
    running_dir = app.config.storage / "tasks" / str(running)
    running_dir.mkdir(parents=True)

    cleaned = app.command("run", "cleanup_service", "cleanup_temp_directories")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.strip().splitlines()[-1] == '{"deleted": 1}'
    assert not short_dir.exists()
    assert kept_dir.exists()
    assert running_dir.exists()


def test_cleanup_old_tasks_deletes_only_old_completed_failed_and_cancelled_rows(
    app: App,
) -> None:
    old = to_db(utcnow() - timedelta(days=31))
    recent = to_db(utcnow() - timedelta(days=1))
    def ended(status: str, at: object) -> int:
        return app.insert_row("demo", "add", "default", {}, status=status, completed_at=at)

    ids = {
        "old completed": ended("completed", old),
        "old failed": ended("failed", old),
        "old cancelled": ended("cancelled", old),
        "old stuck": ended("stuck", old),
        "recent": ended("completed", recent),
    }

    done = app.command("run", "cleanup_service", "cleanup_old_tasks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == '{"deleted": 3}'
    left = app.statuses(ids.values())
    assert sorted(left) == sorted([ids["old stuck"], ids["recent"]])


def test_dispatch_many_queues_a_batch_in_order_and_a_bad_item_queues_nothing(app: App) -> None:
    ids = Task.dispatch_many("demo", "add", [{"a": n} for n in range(5)])
    assert len(set(ids)) == 5 and ids == sorted(ids)
    assert [app.wait_status(task_id).result for task_id in ids] == [0, 1, 2, 3, 4]

    with pytest.raises(ParamsError, match="item 2"):
        Task.dispatch_many("demo", "add", [{"a": 1}, {"a": 2}, {"a": "x"}])
    assert set(app.statuses(range(1, ids[-1] + 10))) == set(ids)
    assert Task.dispatch_many("demo", "add", []) == []

"""Delayed dispatch: `delay=` and `run_at=` hold a task back until its time, on every
backend, with real workers and processors.

A task not yet due is never claimed, starts no worker that would only wait for nothing,
is run by a lingering worker of its queue within milliseconds of its time, and otherwise
by the first processor run after its time; among due tasks the oldest id goes first."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from runtime import ParamsError, Task
from runtime.clock import utcnow
from runtime.schema import tasks
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow

DELAY = 1.5


def _rows(app: App) -> int:
    with app.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(tasks)).scalar_one())


def test_a_delayed_task_is_not_started_before_its_time_and_a_lingering_worker_runs_it(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    first = Task.dispatch("demo", "add", {"a": 1})
    assert app.wait_status(first).status == "completed"
    [worker] = wait_until(lambda: app.registered_workers(), 10, "the worker to linger")

    task_id = Task.dispatch("demo", "add", {"a": 2}, delay=DELAY)
    pending = app.status(task_id)
    assert pending.status == "pending"
    assert pending.created_at is not None and pending.next_run_at is not None
    held = (pending.next_run_at - pending.created_at).total_seconds()
    assert held == pytest.approx(DELAY, abs=0.01)

    done = app.wait_status(task_id, timeout=20)
    assert done.status == "completed"
    assert done.started_at is not None
    assert done.started_at >= pending.created_at + timedelta(seconds=DELAY)
    late = (done.started_at - pending.next_run_at).total_seconds()
    assert late < 0.3, f"the lingering worker started the task {late:.3f} s after its time"
    assert [w.id for w in app.registered_workers()] == [worker.id], "a new worker was started"
    assert done.worker_pid == app.status(first).worker_pid


def test_dispatch_starts_a_worker_for_a_task_due_within_its_linger(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    task_id = Task.dispatch("demo", "add", {"a": 2}, delay=DELAY)
    created = app.status(task_id).created_at
    assert created is not None
    done = app.wait_status(task_id, timeout=20)
    assert done.status == "completed"
    assert done.started_at is not None
    assert done.started_at >= created + timedelta(seconds=DELAY)


def test_without_a_worker_the_first_processor_run_after_its_time_runs_it(
    make_app: Callable[..., App],
) -> None:
    app = make_app()  # worker_idle_seconds = 0: no worker waits for anything
    task_id = Task.dispatch("demo", "add", {"a": 3}, delay=4)  # room for a slow processor
    due = app.status(task_id).next_run_at
    assert due is not None
    assert app.registered_workers() == [] and app.processes() == [], (
        "dispatch started a worker for a task not yet due"
    )

    early = app.command("process")
    assert early.returncode == 0, early.stderr
    assert utcnow() < due, "the machine was too slow for this test's early processor run"
    assert app.registered_workers() == []
    assert app.processes() == []
    assert app.status(task_id).status == "pending"

    wait_until(lambda: utcnow() >= due, 10, "the task's time")
    late = app.command("process")
    assert late.returncode == 0, late.stderr
    done = app.wait_status(task_id)
    assert done.status == "completed"
    assert done.started_at is not None and done.started_at >= due


def test_due_tasks_start_oldest_first_and_one_not_due_holds_none_back(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    path = app.root / "order.txt"
    held = Task.dispatch("demo", "note", {"path": str(path), "text": "held"}, delay=60)
    first = Task.dispatch("demo", "note", {"path": str(path), "text": "first"}, delay=1.0)
    second = Task.dispatch("demo", "note", {"path": str(path), "text": "second"}, delay=0.5)
    due = app.status(first).next_run_at
    assert due is not None
    wait_until(lambda: utcnow() >= due, 10, "both tasks to be due")

    assert app.command("process").returncode == 0
    assert app.wait_status(second).status == "completed"
    assert app.wait_status(first).status == "completed"
    assert path.read_text(encoding="utf-8").split() == ["first", "second"]
    app.wait_idle()
    assert app.status(held).status == "pending"


def test_run_at_in_the_past_runs_at_once_and_a_future_one_is_kept_in_utc(app: App) -> None:
    past = Task.dispatch("demo", "add", {"a": 4}, run_at=datetime(2000, 1, 1))
    assert app.wait_status(past).status == "completed"
    assert app.status(past).next_run_at is None

    plus_two = timezone(timedelta(hours=2))
    at = (utcnow() + timedelta(hours=1)).astimezone(plus_two).replace(microsecond=0)
    aware = Task.dispatch("demo", "add", {"a": 5}, run_at=at)
    naive = Task.dispatch("demo", "add", {"a": 6}, run_at=at.astimezone(UTC).replace(tzinfo=None))
    for task_id in (aware, naive):
        status = app.status(task_id)
        assert status.status == "pending"
        assert status.next_run_at == at
        assert status.next_run_at is not None and status.next_run_at.tzinfo == UTC

    shown = app.command("status", str(aware))
    assert shown.returncode == 0, shown.stderr
    assert "  status     pending" in shown.stdout
    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"  next run   {when}" in shown.stdout
    data = json.loads(app.command("status", str(aware), "--json").stdout)
    assert data["status"] == "pending"
    assert datetime.fromisoformat(data["next_run_at"]) == at
    assert data["attempts"] == 0


def test_the_typed_client_dispatches_later(app: App) -> None:
    first = Task.dispatch("demo", "add", {"a": 0}, delay=60)  # puts the app's package first
    tasks = importlib.import_module("generated.tasks")
    task_id = tasks.demo.add.dispatch(a=1, delay=60)
    assert task_id == first + 1
    status = app.status(task_id)
    assert status.status == "pending"
    assert status.created_at is not None and status.next_run_at is not None
    assert (status.next_run_at - status.created_at).total_seconds() == pytest.approx(60, abs=0.01)
    [later] = tasks.demo.add.dispatch_many([{"a": 2}], run_at=status.next_run_at)
    assert app.status(later).next_run_at == status.next_run_at
    with pytest.raises(ParamsError, match="give delay or run_at, not both"):
        tasks.demo.add.dispatch(a=3, delay=1, run_at=status.next_run_at)


def test_dispatch_many_holds_back_every_task_of_the_batch(make_app: Callable[..., App]) -> None:
    app = make_app()
    ids = Task.dispatch_many("demo", "add", [{"a": 1}, {"a": 2}], delay=60)
    statuses = [app.status(task_id) for task_id in ids]
    assert [s.status for s in statuses] == ["pending", "pending"]
    assert all(s.next_run_at is not None for s in statuses)
    assert app.registered_workers() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 5, "run_at": datetime(2030, 1, 1)}, "give delay or run_at, not both"),
        ({"delay": -1}, "delay must be from 0 to 315360000 seconds (10 years), not -1"),
        ({"delay": float("nan")}, "not nan"),
        ({"delay": "soon"}, "delay must be a number of seconds, not str"),
        ({"run_at": "tomorrow"}, "run_at must be a datetime, not str"),
    ],
    ids=["both", "negative", "nan", "str", "run_at-str"],
)
def test_a_bad_delay_or_run_at_is_one_line_and_writes_nothing(
    app: App, options: dict[str, object], message: str
) -> None:
    for dispatch in (
        lambda: Task.dispatch("demo", "add", {"a": 1}, **options),  # type: ignore[arg-type]
        lambda: Task.dispatch_many("demo", "add", [{"a": 1}], **options),  # type: ignore[arg-type]
    ):
        with pytest.raises(ParamsError) as caught:
            dispatch()
        assert str(caught.value) == message or message in str(caught.value)
        assert "\n" not in str(caught.value)
    assert _rows(app) == 0


def test_a_schedule_upcoming_row_is_still_released_only_by_the_processor(app: App) -> None:
    """`next_run_at` of a schedule's upcoming row is its slot: the due test of a claim
    does not make it claimable (its schedule key keeps it out), even once past."""
    upcoming = app.insert_row(
        "demo", "add", "default", {"a": 1}, schedule_key="demo.add",
        execution_mode="scheduled", next_run_at=datetime(2000, 1, 1),
    )  # fmt: skip
    held = Task.dispatch("demo", "add", {"a": 2}, delay=60)
    assert app.store.pending_counts() == {}
    assert not app.store.has_claimable("default")
    assert app.store.next_due("default", utcnow()) == app.status(held).next_run_at
    assert app.status(upcoming).status == "pending"

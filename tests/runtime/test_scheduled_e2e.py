"""Scheduled tasks end to end: `rsxgen build` of an app with schedules, then real
`python -m runtime.process` runs and workers against each backend."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from runtime.clock import from_db, to_db, utcnow
from runtime.schema import tasks
from tests.runtime.helpers import App, wait_until, write_rsx_toml

pytestmark = pytest.mark.slow

SOURCE = Path(__file__).parent / "sched_app"
QUEUES = {"reports": 1, "gated": 2}


@pytest.fixture(scope="session")
def sched_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scheduled test app's services and the package `rsxgen build` makes of them."""
    root = tmp_path_factory.mktemp("sched_package")
    shutil.copytree(SOURCE / "services", root / "services")
    lines = ["[tasks]", "", "[tasks.queues]"]
    lines += [f"{name} = {{ max_workers = {count} }}" for name, count in QUEUES.items()]
    (root / "rsx.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    built = subprocess.run(
        [sys.executable, "-m", "rsxgen", "build", "--config", str(root / "rsx.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, f"rsxgen build failed:\n{built.stdout}{built.stderr}"
    return root


@pytest.fixture
def app(
    tmp_path: Path, database_url: str, sched_package: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    for variable in ("RSX_CONFIG", "RSX_DATABASE_URL", "RSX_SERVER_ID"):
        monkeypatch.delenv(variable, raising=False)
    root = tmp_path / "app"
    root.mkdir()
    # Workers leave as soon as their queue is empty, as every processor run here expects;
    # lingering workers are tested in test_idle.py.
    config = write_rsx_toml(
        root, sched_package, database_url, QUEUES, global_max_workers=4, worker_idle_seconds=0
    )
    made = App(root, config)
    yield made
    made.stop_processes()
    made.store.dispose()


def upcoming(app: App) -> dict[str, Any]:
    """The upcoming rows by schedule key."""
    with app.store.read() as conn:
        rows = conn.execute(select(tasks).where(tasks.c.schedule_key.is_not(None)))
        return {row.schedule_key: row for row in rows}


def runs(app: App, task: str) -> list[Any]:
    """The released (non-upcoming) rows of `nightly.<task>`, by id."""
    with app.store.read() as conn:
        return list(
            conn.execute(
                select(tasks)
                .where(
                    tasks.c.service_name == "nightly",
                    tasks.c.task_name == task,
                    tasks.c.schedule_key.is_(None),
                )
                .order_by(tasks.c.id)
            )
        )


def make_due(app: App, key: str) -> int:
    """Set the upcoming row of `key` into the past, as an operator would; its id."""
    row = upcoming(app)[key]
    app.update_row(row.id, next_run_at=to_db(utcnow() - timedelta(minutes=5)))
    return int(row.id)


def test_built_in_and_app_schedules_are_listed_after_a_build(app: App) -> None:
    before = app.command("schedules", "--json")
    assert before.returncode == 0, before.stderr
    listed = {item["task"]: item for item in json.loads(before.stdout)}
    assert {key: item["cron"] for key, item in listed.items()} == {
        "cleanup_service.cleanup_old_tasks": "0 2 * * *",
        "cleanup_service.cleanup_temp_directories": "0 * * * *",
        "nightly.hold": "*/5 * * * *",
        "nightly.report": "0 3 * * *",
    }
    assert all(item["upcoming_id"] is None for item in listed.values())

    first = app.command("process")
    assert first.returncode == 0, first.stderr

    after = {item["task"]: item for item in json.loads(app.command("schedules", "--json").stdout)}
    rows = upcoming(app)
    assert set(rows) == set(listed)
    for key, row in rows.items():
        assert after[key]["upcoming_id"] == row.id
        assert after[key]["next_run_at"] == from_db(row.next_run_at).isoformat()
    assert rows["nightly.report"].queue_name == "reports"
    assert rows["cleanup_service.cleanup_old_tasks"].queue_name == "scheduled"


def test_a_due_run_completes_exactly_once_with_racing_processors(app: App) -> None:
    assert app.command("process").returncode == 0
    due_id = make_due(app, "nightly.report")

    processors = [app.start("process") for _ in range(3)]
    for process in processors:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err

    [run] = runs(app, "report")
    assert run.id == due_id
    finished = app.wait_status(due_id)
    assert (finished.status, finished.result) == (
        "completed",
        {"label": "nightly", "task_id": due_id},
    )
    assert finished.execution_mode == "scheduled" and finished.queue_name == "reports"
    nxt = from_db(upcoming(app)["nightly.report"].next_run_at)
    assert nxt is not None and nxt > utcnow() and (nxt.hour, nxt.minute) == (3, 0)

    # Later processor runs in the same minute start nothing more.
    assert app.command("process").returncode == 0
    assert [r.id for r in runs(app, "report")] == [due_id]


def test_a_slow_run_makes_the_next_due_slot_skip(app: App) -> None:
    assert app.command("process").returncode == 0
    gate = app.root / "storage" / "gate"
    first_id = make_due(app, "nightly.hold")
    worker = app.start("process")
    app.wait_status(first_id, "running")

    # The next slot falls due while the first run still holds.
    make_due(app, "nightly.hold")
    second = app.command("process")

    assert second.returncode == 0, second.stderr
    assert [r.id for r in runs(app, "hold")] == [first_id]
    moved = from_db(upcoming(app)["nightly.hold"].next_run_at)
    assert moved is not None and moved > utcnow()
    assert app.status(first_id).status == "running"

    gate.parent.mkdir(parents=True, exist_ok=True)
    gate.touch()
    assert app.wait_status(first_id).status == "completed"
    worker.communicate(timeout=60)
    assert worker.returncode == 0
    wait_until(lambda: not app.processes(), 30, "the workers to exit")
    assert [r.id for r in runs(app, "hold")] == [first_id]

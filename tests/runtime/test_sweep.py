"""No single row stops the processor's sweep: a row it cannot mark stuck or a temp folder it
cannot delete is logged and left for the next run, and the run goes on with the other rows,
the schedules and the workers, and exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from runtime.clock import to_db, utcnow
from runtime.schema import tasks
from tests.runtime.backendhelp import backend_name
from tests.runtime.helpers import App

pytestmark = pytest.mark.slow


@pytest.fixture
def undeletable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make a folder that cannot be deleted: an immutable file in it for root (whom
    permissions do not stop), a read-only folder for anyone else; undone afterwards."""
    locked: list[Path] = []

    def lock(folder: Path) -> None:
        folder.mkdir(parents=True)
        inside = folder / "kept"
        inside.write_text("data", encoding="utf-8")
        if os.geteuid() == 0:
            if shutil.which("chattr") is None:
                pytest.skip("as root, a folder is made undeletable with chattr, not installed")
            done = subprocess.run(["chattr", "+i", str(inside)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"this file system has no immutable flag: {done.stderr.strip()}")
        else:
            folder.chmod(0o500)
        locked.append(folder)

    yield lock
    for folder in locked:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder / "kept")], check=False)
        else:
            folder.chmod(0o700)


def _temp_flag(app: App, task_id: int) -> bool:
    with app.store.read() as conn:
        return bool(
            conn.execute(select(tasks.c.has_temp_directory).where(tasks.c.id == task_id)).scalar()
        )


def test_rows_the_sweep_cannot_process_are_logged_and_the_run_goes_on(
    make_app: Callable[..., App], database_url: str, undeletable: Callable[[Path], None]
) -> None:
    app = make_app(temp_directory_default_ttl=0)
    me = psutil.Process()
    gone = {"worker_pid": me.pid, "worker_started": me.create_time() - 3600}
    # The largest TTL the column holds: beyond any datetime on SQLite (64-bit integers),
    # 68 years on the others (32-bit), which a datetime holds.
    huge_ttl = 2**62 if backend_name(database_url) == "sqlite" else 2**31 - 1
    absurd = app.insert_row(
        "demo", "add", "default", {}, status="running", has_temp_directory=True,
        temp_ttl_seconds=huge_ttl, **gone,
    )
    dead = app.insert_row("demo", "add", "default", {}, status="running", **gone)
    expired = to_db(utcnow() - timedelta(hours=1))
    ended = {"status": "completed", "has_temp_directory": True, "temp_expires_at": expired}
    locked = app.insert_row("demo", "add", "default", {}, **ended)
    plain = app.insert_row("demo", "add", "default", {}, **ended)
    ancient = app.insert_row(
        "demo", "add", "default", {}, **(ended | {"temp_expires_at": datetime(1, 1, 2)})
    )
    storage = app.config.storage / "tasks"
    undeletable(storage / str(locked))
    (storage / str(plain)).mkdir(parents=True)
    (storage / str(plain) / "out.txt").write_text("data", encoding="utf-8")
    pending = app.insert_row("demo", "add", "default", {"a": 2, "b": 3})

    done = app.command("process")

    assert done.returncode == 0, done.stderr
    assert f"task {locked}: could not delete its temp directory {storage / str(locked)}" in (
        done.stderr
    )
    if huge_ttl > 2**31:
        assert f"task {absurd}: could not be marked stuck, left as it is: OverflowError" in (
            done.stderr
        )
        assert app.status(absurd).status == "running"
    else:
        assert app.status(absurd).status == "stuck"
    assert "Traceback" not in done.stderr
    assert app.status(dead).status == "stuck"
    assert (storage / str(locked) / "kept").exists() and _temp_flag(app, locked)
    assert not (storage / str(plain)).exists() and not _temp_flag(app, plain)
    assert not _temp_flag(app, ancient)
    assert app.wait_status(pending).result == 5
    with app.store.read() as conn:
        upcoming = conn.execute(
            select(tasks.c.schedule_key).where(tasks.c.schedule_key.is_not(None))
        ).scalars()
        assert set(upcoming) == {
            "cleanup_service.cleanup_old_tasks",
            "cleanup_service.cleanup_temp_directories",
        }


def test_a_worker_reservation_with_a_zero_date_is_forgotten_like_a_dead_one(
    make_app: Callable[..., App], database_url: str
) -> None:
    if backend_name(database_url) != "mysql":
        pytest.skip("only MySQL/MariaDB store a zero date, and hand it back as text")
    app = make_app()
    with app.store.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO _workers (server_id, pid, process_started, queue_name, heartbeat_at, "
            "created_at) VALUES (1, 0, 0, 'default', '0000-00-00 00:00:00', NOW(6))"
        )
    pending = app.insert_row("demo", "add", "default", {"a": 1, "b": 1})

    done = app.command("process")

    assert done.returncode == 0, done.stderr
    assert app.wait_status(pending).result == 2
    app.wait_idle()
    assert app.registered_workers() == []


def test_a_task_claimed_after_the_processor_read_the_clock_never_ends_before_it_started(
    app: App,
) -> None:
    from runtime.process import process

    me = psutil.Process()
    processor_now = utcnow() - timedelta(seconds=5)
    started = utcnow()
    task_id = app.insert_row(
        "demo", "add", "default", {}, status="running", started_at=to_db(started),
        worker_pid=me.pid, worker_started=me.create_time() - 3600,
    )

    assert process(app.config, now=processor_now) == 0

    status = app.status(task_id)
    assert status.status == "stuck"
    assert status.started_at is not None and status.completed_at is not None
    assert status.completed_at >= status.started_at

"""Temp directories with several servers on one database: each server's `storage/` holds the
folders of the tasks its workers ran, and each server deletes exactly those once expired.

Server 1 is the test app; server 2 is a second app folder with `server_id = 2` in its
rsx.toml and its own `storage/`, on the same database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runtime.processes import start_time
from runtime.schema import tasks
from tests.runtime.helpers import QUEUES, App, write_rsx_toml


def _process(app: App) -> None:
    done = app.command("process")
    assert done.returncode == 0, done.stderr


def _has_temp_directory(app: App, task_id: int) -> bool:
    with app.store.read() as conn:
        row = conn.execute(tasks.select().where(tasks.c.id == task_id)).one()
    return bool(row.has_temp_directory)


def test_each_server_deletes_the_expired_temp_directories_in_its_own_storage(
    make_app: Callable[..., App], app_package: Path, database_url: str, tmp_path: Path
) -> None:
    one = make_app(temp_directory_default_ttl=0)
    root = tmp_path / "server2"
    root.mkdir()
    two = App(
        root,
        write_rsx_toml(
            root, app_package, database_url, QUEUES,
            server_id=2, temp_directory_default_ttl=0, global_max_workers=4,
        ),
    )
    try:
        # Dispatched on server 1, run by server 2's processor: the row becomes server 2's.
        ran_on_two = one.insert_row("demo", "use_temp", "default", {})
        _process(two)
        ran_on_one = one.insert_row("demo", "use_temp", "default", {})
        kept_on_one = one.insert_row("demo", "use_temp", "default", {"keep": 3600})
        _process(one)
        statuses = {task_id: one.wait_status(task_id) for task_id in (ran_on_two, ran_on_one)}
        statuses[kept_on_one] = one.wait_status(kept_on_one)
        assert {s.status for s in statuses.values()} == {"completed"}
        assert statuses[ran_on_two].server_id == 2
        assert statuses[ran_on_one].server_id == statuses[kept_on_one].server_id == 1

        folder_on_two = two.config.storage / "tasks" / str(ran_on_two)
        folder_on_one = one.config.storage / "tasks" / str(ran_on_one)
        kept_folder = one.config.storage / "tasks" / str(kept_on_one)
        assert Path(statuses[ran_on_two].result) == folder_on_two
        assert (folder_on_two / "out.txt").exists()
        assert not (one.config.storage / "tasks" / str(ran_on_two)).exists()
        assert (folder_on_one / "out.txt").exists() and kept_folder.exists()

        # The hourly task on server 1 deletes server 1's expired folder only, and leaves
        # server 2's row to server 2 (it is not marked cleaned while its folder remains).
        cleaned = one.command("run", "cleanup_service", "cleanup_temp_directories")
        assert cleaned.returncode == 0, cleaned.stderr
        assert cleaned.stdout.strip().splitlines()[-1] == '{"deleted": 1}'
        assert not folder_on_one.exists()
        assert not _has_temp_directory(one, ran_on_one)
        assert (folder_on_two / "out.txt").exists()
        assert _has_temp_directory(one, ran_on_two)

        # Server 2's next processor run, with nothing to do, sweeps its own expired folder.
        _process(two)
        assert not folder_on_two.exists()
        assert not _has_temp_directory(one, ran_on_two)
        assert kept_folder.exists() and _has_temp_directory(one, kept_on_one)
    finally:
        two.stop_processes()
        two.store.dispose()


def test_the_processor_deletes_expired_folders_but_never_a_running_tasks(
    make_app: Callable[..., App],
) -> None:
    app = make_app(temp_directory_default_ttl=0)
    ended = app.insert_row("demo", "use_temp", "default", {})
    _process(app)
    assert app.wait_status(ended).status == "completed"
    folder = app.config.storage / "tasks" / str(ended)
    assert folder.exists()
    # Running in a live process (this one), so the processor's sweep leaves it running.
    running = app.insert_row(
        "demo", "use_temp", "default", {}, status="running", has_temp_directory=True,
        worker_pid=os.getpid(), worker_started=start_time(os.getpid()),
    )
    running_folder = app.config.storage / "tasks" / str(running)
    running_folder.mkdir(parents=True)

    _process(app)
    assert not folder.exists()
    assert not _has_temp_directory(app, ended)
    assert app.status(running).status == "running"
    assert running_folder.exists() and _has_temp_directory(app, running)

"""`storage/` is private to the app's user and its problems are one clear line: folders 0700
and files 0600 whatever the umask, a temp directory planted as a symbolic link refused, and
a worker log folder that cannot be written reported without losing the task or a slot."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime import Task
from tests.runtime.backendhelp import backend_name
from tests.runtime.helpers import App

pytestmark = pytest.mark.slow


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.lstat().st_mode))


def test_storage_folders_are_0700_and_files_0600_whatever_the_umask(
    make_app: Callable[..., App], database_url: str, umask_022: None
) -> None:
    app = make_app()
    task_id = Task.dispatch("demo", "use_temp", {"keep": 3600})
    assert app.wait_status(task_id).status == "completed", app.worker_log("default")
    ran = app.command("run", "demo", "use_temp")
    assert ran.returncode == 0, ran.stderr

    storage = app.config.storage
    folders = [storage, storage / "logs", storage / "tasks", storage / "tasks" / str(task_id)]
    assert {str(f): _mode(f) for f in folders} == {str(f): "0o700" for f in folders}
    files = [storage / "logs" / "worker-default.log"]
    if backend_name(database_url) == "sqlite":
        database = Path(app.config.database_url.removeprefix("sqlite:///"))
        files += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    assert {str(f): _mode(f) for f in files} == {str(f): "0o600" for f in files}


def test_a_temp_directory_planted_as_a_symbolic_link_fails_the_task(
    app: App, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    task_id = app.insert_row("demo", "use_temp", "default", {})
    folder = app.config.storage / "tasks" / str(task_id)
    folder.parent.mkdir(parents=True)
    folder.symlink_to(elsewhere)

    done = app.command("process")

    assert done.returncode == 0, done.stderr
    status = app.wait_status(task_id)
    assert status.status == "failed"
    assert status.result == {
        "error": f"temp directory {folder} is a symbolic link; refusing to use it",
        "type": "StorageError",
    }
    assert list(elsewhere.iterdir()) == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_worker_log_folder_that_cannot_be_written_loses_neither_task_nor_slot(
    app: App,
) -> None:
    logs = app.config.storage / "logs"
    logs.parent.mkdir(parents=True)
    logs.write_text("a file where the folder should be\n", encoding="utf-8")
    records = _Records()
    logging.getLogger("runtime").addHandler(records)
    try:
        task_id = Task.dispatch("demo", "add", {"a": 1, "b": 2})
    finally:
        logging.getLogger("runtime").removeHandler(records)

    assert len(records.messages) == 1, records.messages
    assert f"worker log folder {logs} cannot be written" in records.messages[0]
    assert app.status(task_id).status == "pending"
    assert app.registered_workers() == []

    done = app.command("process")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m runtime.process: error: worker log folder {logs} cannot be written "
        f"(not a folder: {logs})"
    ]
    assert app.status(task_id).status == "pending"
    assert app.registered_workers() == []

    logs.unlink()
    done = app.command("process")
    assert done.returncode == 0, done.stderr
    assert app.wait_status(task_id).result == 3


def test_rsxgen_build_creates_the_storage_folder_0700(
    tmp_path: Path, app_package: Path, umask_022: None
) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "rsx.toml").write_text(
        (app_package / "rsx.toml").read_text(encoding="utf-8").replace(
            "[tasks]\n",
            f'[tasks]\nservices = "{app_package / "services"}"\noutput = "{root / "out"}"\n',
        ),
        encoding="utf-8",
    )
    built = subprocess.run(
        [sys.executable, "-m", "rsxgen", "build"], cwd=root, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    assert _mode(root / "storage") == "0o700"

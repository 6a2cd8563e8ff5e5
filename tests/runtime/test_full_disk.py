"""A full disk under `storage/` (holding the SQLite database): every write fails in one
line and changes nothing, and once there is room again the queue runs as if nothing had
happened; a task that was running when the disk filled ends `stuck`, not lost."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime.api
from runtime import BackendError, Task
from tests.runtime.helpers import QUEUES, App, wait_until, write_rsx_toml

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system (tmpfs), mounted for this test only: needs root."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_full_disk_fails_writes_in_one_line_and_the_queue_resumes_when_there_is_room(
    tmp_path: Path, app_package: Path, small_disk: Path, database_url: str
) -> None:
    root = tmp_path / "app"
    root.mkdir()
    config = write_rsx_toml(
        root, app_package, f"sqlite:///{small_disk}/storage/tasks.db", QUEUES,
        storage=str(small_disk / "storage"), worker_idle_seconds=0, global_max_workers=4,
    )
    app = App(root, config)
    runtime.api.use_config(config, app.store)
    try:
        done = Task.dispatch("demo", "add", {"a": 1, "b": 1})
        assert app.wait_status(done).result == 2
        gate = tmp_path / "gate"
        running = Task.dispatch("demo", "gated", {"gate": str(gate)})
        wait_until(lambda: "waiting for the gate" in app.status(running).log, 30, "the log")

        filler = _fill(small_disk)
        with pytest.raises(BackendError, match="database or disk is full"):
            Task.dispatch("demo", "add", {"a": 2})
        gate.touch()
        wait_until(lambda: not app.processes(), 30, "the worker to give up")
        refused = app.command("process")
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[-1] == (
            f"python -m runtime.process: error: database {config.database_url}: "
            "database or disk is full"
        )
        assert "Traceback" not in refused.stderr

        filler.unlink()
        resumed = app.command("process")
        assert resumed.returncode == 0, resumed.stderr
        assert app.status(running).status == "stuck"
        assert "waiting for the gate" in app.status(running).log
        assert app.status(done).result == 2
        after = Task.dispatch("demo", "add", {"a": 3, "b": 3})
        assert app.wait_status(after).result == 6
    finally:
        app.stop_processes()
        app.store.dispose()
        runtime.api._installed = None

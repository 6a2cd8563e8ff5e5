"""Several servers on one database: limits per server, tasks taken whatever server dispatched
them, and another server's dead workers judged by their heartbeat, never by PID.

Two app folders play two servers on this machine: server 1 from its rsx.toml, server 2
from `RSX_SERVER_ID=2` in its processes' environment (its rsx.toml names no server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime.clock import from_db, utcnow
from tests.runtime.helpers import QUEUES, App, wait_until, write_rsx_toml

pytestmark = pytest.mark.slow

SERVERS = pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)


class Server2:
    """The second server: its own app folder on the shared database, `RSX_SERVER_ID=2`."""

    def __init__(self, root: Path, package: Path, url: str, **settings: Any) -> None:
        root.mkdir(parents=True)
        settings.setdefault("global_max_workers", 4)
        config = write_rsx_toml(root, package, url, QUEUES, **settings)
        self.app = App(root, config)
        self.started: list[subprocess.Popen[str]] = []

    def process(self) -> subprocess.Popen[str]:
        """Start server 2's processor (which works its queue until empty) without waiting."""
        env = self.app.env | {"RSX_SERVER_ID": "2"}
        started = subprocess.Popen(
            [sys.executable, "-m", "runtime.process"],
            cwd=self.app.root, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.started.append(started)
        return started

    def kill_all(self) -> int:
        """SIGKILL every process of server 2 (processor, workers, executors); how many."""
        victims = self.app.processes()
        for process in victims:
            process.kill()
        psutil.wait_procs(victims, timeout=10)
        for started in self.started:
            started.wait(timeout=10)
        return len(victims)

    def stop(self) -> None:
        self.app.stop_processes()
        for started in self.started:
            if started.poll() is None:
                started.kill()
            started.communicate(timeout=10)


@pytest.fixture
def server2(
    tmp_path: Path, app_package: Path, database_url: str
) -> Iterator[Callable[..., Server2]]:
    made: list[Server2] = []

    def make(**settings: Any) -> Server2:
        server = Server2(tmp_path / "server2", app_package, database_url, **settings)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def _process(app: App) -> None:
    done = app.command("process")
    assert done.returncode == 0, done.stderr


@SERVERS
def test_dead_workers_of_another_server_are_marked_stuck_once_their_heartbeat_is_stale(
    make_app: Callable[..., App], server2: Callable[..., Server2]
) -> None:
    stale = 8
    one = make_app(cleanup_stuck_after=stale)
    two = server2(cleanup_stuck_after=stale)
    gate = one.root / "never-opened"
    ids = [
        one.insert_row("demo", "gated", "video", {"gate": str(gate), "timeout": 300.0})
        for _ in range(2)
    ]
    two.process()

    def both_running_on_server_2() -> bool:
        rows = [one.status(task_id) for task_id in ids]
        return all(r.status == "running" and r.server_id == 2 and r.log for r in rows)

    wait_until(both_running_on_server_2, 30, "server 2 to run both tasks")
    pids = {task_id: one.status(task_id).worker_pid for task_id in ids}
    assert two.kill_all() >= 4  # the processor-turned-worker, a spawned worker, 2 executors
    assert not any(psutil.pid_exists(pid) for pid in pids.values() if pid)
    # Each task is judged by the last heartbeat of the worker that held it.
    holders = one.task_workers(ids)
    beats = {
        task_id: from_db(w.heartbeat_at)
        for w in one.registered_workers()
        for task_id, holder in holders.items()
        if w.server_id == 2 and w.id == holder
    }
    assert set(beats) == set(ids)
    due = {task_id: beat + timedelta(seconds=stale) for task_id, beat in beats.items() if beat}

    # Server 1 cannot see server 2's processes: dead PIDs alone must not condemn the tasks.
    _process(one)
    checked_at = utcnow()
    assert checked_at < min(due.values()), "too slow to check before the heartbeats went stale"
    assert {one.status(task_id).status for task_id in ids} == {"running"}

    def stuck() -> bool:
        _process(one)
        return {one.status(task_id).status for task_id in ids} == {"stuck"}

    wait_until(stuck, stale + 30, "server 1 to mark server 2's tasks stuck", every=0.5)
    for task_id in ids:
        status = one.status(task_id)
        assert status.completed_at is not None and status.completed_at >= due[task_id]
        assert "server 2" in status.log and "heartbeat" in status.log
        assert status.worker_pid == pids[task_id]
        assert status.server_id == 2


@SERVERS
def test_a_live_worker_of_another_server_is_left_running_past_cleanup_stuck_after(
    make_app: Callable[..., App], server2: Callable[..., Server2]
) -> None:
    stale = 5
    one = make_app(cleanup_stuck_after=stale)
    two = server2(cleanup_stuck_after=stale)
    gate = one.root / "gate"
    task_id = one.insert_row("demo", "gated", "video", {"gate": str(gate), "timeout": 120.0})
    two.process()
    def started_at() -> datetime | None:
        status = one.status(task_id)
        return status.started_at if status.log else None

    started = wait_until(started_at, 30, "server 2 to start the task")
    assert started is not None
    wait_until(
        lambda: utcnow() > started + timedelta(seconds=stale + 1), stale + 5, "the task to age"
    )
    _process(one)
    assert one.status(task_id).status == "running"
    gate.touch()
    status = one.wait_status(task_id)
    assert status.status == "completed"
    assert status.server_id == 2


@SERVERS
def test_each_server_keeps_its_own_limits_and_takes_tasks_from_the_other(
    make_app: Callable[..., App], server2: Callable[..., Server2]
) -> None:
    one = make_app(global_max_workers=1)
    two = server2(global_max_workers=1)
    runs = one.root / "runs"
    ids = [
        one.insert_row("demo", "record", "video", {"path": str(runs), "hold": 0.3})
        for _ in range(12)
    ]
    two.process()
    _process(one)
    one.wait_idle(timeout=60)
    wait_until(lambda: set(one.statuses(ids).values()) == {"completed"}, 60, "all tasks to end")
    two.app.wait_idle(timeout=60)

    recorded = [json.loads(line) for line in runs.read_text().splitlines()]
    assert sorted(r["id"] for r in recorded) == ids
    server_of = {task_id: one.status(task_id).server_id for task_id in ids}
    assert set(server_of.values()) == {1, 2}, "one server ran every task"
    for server in (1, 2):
        spans = sorted((r["start"], r["end"]) for r in recorded if server_of[r["id"]] == server)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"server {server} ran two workers with global_max_workers = 1"
    assert one.registered_workers() == []


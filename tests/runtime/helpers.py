"""The runtime tests' view of an app: its config, commands run as real processes, polling.

Everything here works the same whatever database the app uses, so the suite can run
against SQLite (the default), PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
from sqlalchemy import insert, select, update

from runtime.clock import to_db, utcnow
from runtime.config import Config, parse_config
from runtime.schema import tasks, workers
from runtime.state import Status, TaskStatus
from runtime.store import Limits, Store

T = TypeVar("T")

QUEUES = {"video": 2, "other": 2, "slow": 1}


def wait_until(probe: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a command failed with exit 2 and exactly one line on stderr; that line."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_rsx_toml(
    root: Path, package: Path, url: str, queues: Mapping[str, int], **settings: Any
) -> Config:
    """An rsx.toml in `root` using the shared test package, `url` and `settings`; parsed."""
    lines = [
        "[tasks]",
        f"services = {json.dumps(str(package / 'services'))}",
        f"output = {json.dumps(str(package / 'generated'))}",
        f"database_url = {json.dumps(url)}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines.append("\n[tasks.queues]")
    lines += [f"{name} = {{ max_workers = {count} }}" for name, count in queues.items()]
    (root / "rsx.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return parse_config(root / "rsx.toml")


@dataclass
class App:
    """A test app: a folder with rsx.toml and storage, its database, its processes."""

    root: Path
    config: Config
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.config)

    @property
    def env(self) -> dict[str, str]:
        """The environment of commands: this app's config only, nothing inherited."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSX_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(
        self, module: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m runtime.<module> args` in the app root and wait for it."""
        return subprocess.run(
            [sys.executable, "-m", f"runtime.{module}", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, module: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
        """Start `python -m runtime.<module> args` in the app root without waiting."""
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(
            [sys.executable, "-m", f"runtime.{module}", *args],
            cwd=self.root,
            env=self.env,
            text=True,
            **popen,
        )

    def status(self, task_id: int) -> TaskStatus:
        return self.store.get(task_id)

    def wait_status(self, task_id: int, *wanted: str, timeout: float = 30) -> TaskStatus:
        """Poll until the task is in one of `wanted` (default: any ended state)."""
        states = set(wanted or Status.ended_values())

        def probe() -> TaskStatus | None:
            status = self.status(task_id)
            return status if status.status in states else None

        return wait_until(probe, timeout, f"task {task_id} to be {' or '.join(sorted(states))}")

    def insert_row(self, service: str, task: str, queue: str, params: Any, **values: Any) -> int:
        """Insert a pending row directly, as an older version of the app might have."""
        now = to_db(utcnow())
        with self.store.write() as conn:
            result = conn.execute(
                insert(tasks).values(
                    {
                        "server_id": self.config.server_id,
                        "service_name": service,
                        "task_name": task,
                        "queue_name": queue,
                        "execution_mode": "queued",
                        "status": "pending",
                        "params": params if isinstance(params, str) else json.dumps(params),
                        "timeout_seconds": 60,
                        "has_temp_directory": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    | values
                )
            )
            return int(result.inserted_primary_key[0])

    def update_row(self, task_id: int, **values: Any) -> None:
        with self.store.write() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))

    def statuses(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = list(ids)
        with self.store.read() as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(wanted))
            ).all()
        return {row.id: row.status for row in rows}

    def registered_workers(self) -> list[Any]:
        with self.store.read() as conn:
            return list(conn.execute(select(workers)).all())

    def task_workers(self, ids: Iterable[int]) -> dict[int, int | None]:
        """The `_workers` row id that claimed each task."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.worker_id).where(tasks.c.id.in_(list(ids)))
            ).all()
        return {row.id: row.worker_id for row in rows}

    def worker_log(self, queue: str) -> str:
        path = self.config.storage / "logs" / f"worker-{queue}.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def processes(self) -> list[psutil.Process]:
        """Live processes started for this app (commands and workers run in its root)."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.pid != os.getpid() and Path(process.cwd()) == self.root:
                    if process.status() != psutil.STATUS_ZOMBIE:
                        found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError):
                continue
        return found

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until every process of this app has exited."""
        wait_until(lambda: not self.processes(), timeout, "the app's workers to exit")

    def stop_processes(self) -> None:
        """Kill what a failed test left running, by pid."""
        for process in self.processes():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def hold_slots(app: App, queue: str, count: int) -> None:
    """Register this test process as `count` workers of `queue`, so that no dispatch starts
    one for it and its tasks stay pending until `release_slots`."""
    me = psutil.Process()
    limits = Limits(queue=count, server=app.config.global_max_workers)
    for _ in range(count):
        held = app.store.register_worker(queue, me.pid, me.create_time(), limits, utcnow())
        assert held is not None, f"no free {queue} slot to hold"


def release_slots(app: App, keep: int = 0) -> None:
    """Give up the worker slots `hold_slots` took, all but `keep` of them."""
    held = [row.id for row in app.registered_workers() if row.pid == os.getpid()]
    for worker_id in held[keep:]:
        app.store.deregister(worker_id)

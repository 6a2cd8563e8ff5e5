"""Shared pieces of the runtime benchmarks: scratch databases, temp folders, processes, tables.

Everything a benchmark starts lives under one temporary folder, `Scratch.root`: apps, SQLite
files, peers' folders. Processes are found by that folder (their working folder, or an
argument under it), which also finds the workers the runtime starts detached, and are
killed by pid when a measurement ends or the benchmark exits. Server databases are created
as `rsx_bench_<random>` next to the database of the given URL and dropped at exit.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


def median(values: Iterable[float]) -> float:
    """The median of some numbers."""
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of some numbers."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def wait_until(probe: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Call `probe` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def database_kind(url: str) -> str:
    """`sqlite`, `postgresql` or `mysql`, from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    name = make_url(url).get_backend_name()
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name in ("postgresql", "postgres"):
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise SystemExit(f"bench: unsupported database URL {url!r}")


def child_env() -> dict[str, str]:
    """The environment of every process the benchmark starts: no RSX_ settings inherited,
    bytecode caching on as in an installed project (this sandbox may disable it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSX_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def git_commit() -> str:
    """The short commit of the checkout the benchmark runs from ("unknown" outside git)."""
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def _belongs(process: psutil.Process, root: Path) -> bool:
    """Whether a process works in `root` or names a path under it on its command line."""
    prefix = str(root)
    try:
        if process.cwd().startswith(prefix):
            return True
        return any(prefix in arg for arg in process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


def processes_under(root: Path) -> list[psutil.Process]:
    """Live processes other than this one that belong to `root` (see `_belongs`)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if _belongs(process, root):
            found.append(process)
    return found


def signal_processes(processes: Iterable[psutil.Process], signum: int) -> None:
    """Send `signum` to each process, ignoring those already gone."""
    for process in processes:
        try:
            process.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def kill_processes_under(root: Path, timeout: float = 10) -> None:
    """SIGKILL every process belonging to `root` and wait for them to be gone."""
    for _ in range(5):
        found = processes_under(root)
        if not found:
            return
        signal_processes(found, signal.SIGKILL)
        psutil.wait_procs(found, timeout=timeout)


class Scratch:
    """The benchmark's temporary folder and scratch databases, all removed by `close`."""

    def __init__(self, url: str | None) -> None:
        self.server = url if url and database_kind(url) != "sqlite" else None
        self.kind = database_kind(self.server) if self.server else "sqlite"
        self.root = Path(tempfile.mkdtemp(prefix="rsx-bench-")).resolve()
        self.databases: dict[str, str] = {}
        self._admin: Any = None

    def __enter__(self) -> Scratch:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _exit_on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def folder(self, name: str) -> Path:
        """A new folder under the root named `name-<random>`."""
        path = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir()
        return path

    def database(self) -> str:
        """The URL of a new, empty database: a SQLite file, or `rsx_bench_<random>`."""
        if self.server is None:
            return f"sqlite:///{self.folder('db') / 'tasks.db'}"
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = f"rsx_bench_{uuid.uuid4().hex[:10]}"
        with self.admin().connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = make_url(self.server).set(database=name).render_as_string(hide_password=False)
        self.databases[name] = url
        return url

    def admin(self) -> Any:
        """An AUTOCOMMIT engine on the server's own database, for CREATE and DROP."""
        if self._admin is None:
            from sqlalchemy import create_engine

            self._admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        return self._admin

    def drop(self, url: str) -> None:
        """Drop a scratch database made by `database` (SQLite files go with the folder)."""
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        if self.server is None or name not in self.databases:
            return
        with self.admin().connect() as conn:
            if self.kind == "postgresql":
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        del self.databases[name]

    def close(self) -> None:
        """Kill what still runs under the root, drop the databases, delete the root."""
        kill_processes_under(self.root)
        for name, url in list(self.databases.items()):
            try:
                self.drop(url)
            except Exception as exc:
                print(f"bench: could not drop database {name}: {exc}", file=sys.stderr)
        if self._admin is not None:
            self._admin.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit, so that `Scratch.close` runs."""
    raise SystemExit(128 + signum)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with `|` between columns, as Markdown accepts it."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])

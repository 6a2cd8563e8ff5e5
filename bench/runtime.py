"""Benchmark of the rsx runtime against bare SQL through the database's own driver.

    python bench/runtime.py [--quick] [--url URL] [--only FIGURE,...] [--repeats N] [--json]

Prints one table, `figure | product | reference | ratio | target | met?`, the ratio being
the product's figure over a reference measured in the same run on the same database: bare
INSERT / claim loops through sqlite3, psycopg or PyMySQL on a scratch table shaped like
`_tasks`, the same figure of the empty table, or a peer (huey on SQLite, procrastinate on
PostgreSQL). Rates are the median of `--repeats` runs, each in a fresh database.

The product is driven only through its public interface, in processes working in a
temporary app: `Task.dispatch` (and `Task.dispatch_many` where it exists), `Task.status`,
`python -m runtime.process`, the `_tasks` and `_workers` tables. `--url` names a database
server (a scratch database `rsx_bench_<random>` is made per run and dropped); without it,
SQLite files in a temp folder. Every process started, the runtime's detached workers
included, is killed by pid when its measurement ends. The figures and their targets are
described in docs/benchmarks.md.
"""
# The imports below come after the sys.path fix, which they need:
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, bench/ would be first on sys.path and this file would stand in for
    # the `runtime` package it measures; the repository root takes its place.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from bench._common import (
    Scratch,
    child_env,
    database_kind,
    git_commit,
    kill_processes_under,
    median,
    percentile,
    processes_under,
    render_table,
    signal_processes,
    wait_until,
)

SERVICE = "bench_service"
BATCH = 1000
IDLE_SECONDS = 30
DRAIN_LIMIT_S = 180
TITLES = {
    "dispatch": "1 dispatch",
    "dispatch_many": "2 dispatch_many",
    "concurrency": "3 dispatch latency, concurrent",
    "throughput": "4 throughput, 1 worker",
    "workers2": "5 throughput, 2 workers",
    "cold_start": "6 dispatch→running, no worker",
    "warm_start": "7 dispatch→running, idle worker",
    "scale": "8 scale",
    "memory": "9 memory",
    "idle": "10 idle processor",
}
FIGURES = tuple(TITLES)

SERVICE_MODULE = '''\
"""Tasks of the runtime benchmark (bench/runtime.py)."""

import time
from pathlib import Path

from runtime import TaskInstance, task


@task("Return n")
def noop(task: TaskInstance, n: int = 0) -> int:
    return n


@task("Hold the worker until a file exists", timeout=3600)
def gate(task: TaskInstance, path: str) -> int:
    while not Path(path).exists():
        time.sleep(0.01)
    return 0
'''

HUEY_APP = '''\
from huey import SqliteHuey

huey = SqliteHuey(filename={filename!r})


@huey.task()
def noop(n=0):
    return n
'''

PROCRASTINATE_APP = '''\
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo={conninfo!r}))


@app.task(name="noop")
def noop(n=0):
    return n
'''


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does."""

    dispatches: int
    batches: int
    burst: int
    tasks: int
    start_samples: int
    filled: int
    parked: int
    memory: tuple[int, int]
    idle_runs: int


FULL = Sizes(2000, 5, 150, 4000, 20, 1_000_000, 10_000, (500, 5000), 10)
QUICK = Sizes(300, 2, 150, 500, 5, 100_000, 1_000, (200, 1000), 5)


@dataclass
class Row:
    """One line of the table; `met` is None where the figure has no target here."""

    figure: str
    product: str
    reference: str = "—"
    ratio: float | None = None
    target: str = "—"
    met: bool | None = None
    numbers: dict[str, float] = field(default_factory=dict)

    def cells(self) -> list[str]:
        """The row's text cells, in table order."""
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        met = "—" if self.met is None else "yes" if self.met else "NO"
        return [self.figure, self.product, self.reference, ratio, self.target, met]


def note(message: str) -> None:
    """A progress line on stderr (stdout carries only the table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def rate(value: float) -> str:
    """A rate as the table shows it."""
    return f"{value:,.0f} tasks/s"


def rates(product: float, reference: float) -> dict[str, float]:
    """The numbers of a row comparing two rates, for --json."""
    return {"product_per_s": product, "reference_per_s": reference}


def spread(values: Sequence[float], *fractions: float) -> str:
    """`p50 X / p95 Y ... ms` of some latencies in milliseconds."""
    parts = [f"p{round(f * 100)} {percentile(values, f):.1f}" for f in fractions]
    return " / ".join(parts) + f" / max {max(values):.1f} ms"


def to_epoch(value: Any) -> float:
    """Seconds since the epoch of a naive UTC timestamp as a driver returns it."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return float(moment.replace(tzinfo=UTC).timestamp())


# -- the product, from the outside -------------------------------------------------------


def build_package(scratch: Scratch) -> Path:
    """The benchmark's service module and the package `rsxgen build` makes of it."""
    root = scratch.folder("package")
    (root / "services").mkdir()
    (root / "services" / f"{SERVICE}.py").write_text(SERVICE_MODULE)
    (root / "rsx.toml").write_text("[tasks]\n\n[tasks.queues]\ndefault = { max_workers = 1 }\n")
    built = subprocess.run(
        [sys.executable, "-m", "rsxgen", "build"],
        cwd=root, env=child_env(), capture_output=True, text=True, timeout=120,
    )
    if built.returncode != 0:
        raise SystemExit(f"bench: rsxgen build failed:\n{built.stdout}{built.stderr}")
    return root


def accepts_idle_setting(scratch: Scratch) -> bool:
    """Whether the runtime's config accepts `worker_idle_seconds`."""
    from runtime.config import load_config
    from runtime.errors import ConfigError

    path = scratch.folder("probe") / "rsx.toml"
    path.write_text(f"[tasks]\nworker_idle_seconds = {IDLE_SECONDS}\n")
    try:
        load_config(path)
    except ConfigError:
        return False
    return True


def has_dispatch_many() -> bool:
    """Whether `runtime.Task` has the batch API."""
    from runtime import Task

    return hasattr(Task, "dispatch_many")


class App:
    """A temporary app on one database: rsx.toml, the shared package, its processes."""

    def __init__(
        self,
        scratch: Scratch,
        package: Path,
        url: str,
        workers: int = 1,
        idle: bool = False,
        own_database: bool = True,
    ) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        self.scratch = scratch
        self.url = url
        self.own_database = own_database
        self.root = scratch.folder("app")
        lines = [
            "[tasks]",
            f"services = {json.dumps(str(package / 'services'))}",
            f"output = {json.dumps(str(package / 'generated'))}",
            f"database_url = {json.dumps(url)}",
            f"global_max_workers = {workers}",
        ]
        if idle:
            lines.append(f"worker_idle_seconds = {IDLE_SECONDS}")
        lines += ["", "[tasks.queues]", f"default = {{ max_workers = {workers} }}"]
        (self.root / "rsx.toml").write_text("\n".join(lines) + "\n")
        self.engine = create_engine(url, poolclass=NullPool)

    def close(self) -> None:
        """Kill the app's processes; drop its database if it has its own."""
        kill_processes_under(self.root)
        self.engine.dispose()
        if self.own_database:
            self.scratch.drop(self.url)

    def child(self, name: str, spec: dict[str, Any]) -> Any:
        """Run a measuring child process in the app root; what it printed, parsed."""
        return run_child(self.root, name, spec)

    def processor(self) -> subprocess.Popen[bytes]:
        """Start `python -m runtime.process` in the app root."""
        with open(self.root / "processor.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "runtime.process"],
                cwd=self.root, env=child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def scalar(self, sql: str, **params: Any) -> Any:
        """The first value of one SQL query on the app's database."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def status(self, task_id: int) -> str | None:
        """A task's status column, read from the table."""
        return self.scalar("SELECT status FROM _tasks WHERE id = :id", id=task_id)

    def noops(self, status: str, after: int) -> int:
        """How many noop tasks with an id above `after` are in `status`."""
        return int(
            self.scalar(
                "SELECT count(*) FROM _tasks WHERE id > :after AND task_name = 'noop' "
                "AND status = :status",
                after=after, status=status,
            )
        )

    def last_completed(self, after: int) -> float:
        """When the last noop task above `after` completed, in seconds since the epoch."""
        value = self.scalar(
            "SELECT max(completed_at) FROM _tasks WHERE id > :after AND task_name = 'noop'",
            after=after,
        )
        return to_epoch(value)

    def first_started(self, after: int) -> float:
        """When the first noop task above `after` started, in seconds since the epoch."""
        value = self.scalar(
            "SELECT min(started_at) FROM _tasks WHERE id > :after AND task_name = 'noop'",
            after=after,
        )
        return to_epoch(value)

    def worker_pids(self) -> list[int]:
        """The pids of the registered workers (`_workers.pid`)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return [int(p) for p in conn.execute(text("SELECT pid FROM _workers")).scalars()]

    def wait_quiet(self, timeout: float = 60) -> None:
        """Wait until no process of the app runs and `_workers` is empty."""
        wait_until(
            lambda: not processes_under(self.root) and not self.worker_pids(),
            timeout, "the app's workers to exit", every=0.05,
        )

    def release(self, gates: Sequence[Path]) -> None:
        """Stop the workers held by gate tasks: SIGTERM them, open the gates, wait."""
        signal_processes(processes_under(self.root), signal.SIGTERM)
        for gate in gates:
            gate.touch()
        self.wait_quiet()

    def drain(self, after: int, count: int) -> tuple[float, int, float]:
        """Run the processor over `count` pending noops: tasks per second from the
        processor's start until the last completed, how many completed, and tasks per
        second from the first noop's start (the steady rate, without the processor's and
        the workers' start-up). After DRAIN_LIMIT_S the workers are killed and the rates
        are of those that completed by then."""
        began = time.time()
        processor = self.processor()
        try:
            try:
                wait_until(
                    lambda: self.noops("completed", after) >= count,
                    DRAIN_LIMIT_S, f"{count} tasks to complete", every=0.1,
                )
            except TimeoutError:
                note(f"stopped the workers after {DRAIN_LIMIT_S} s")
            done = self.noops("completed", after)
            last = self.last_completed(after)
            took, running = last - began, last - self.first_started(after)
            if done == count:
                processor.wait(timeout=60)
                self.wait_quiet()
        finally:
            kill_processes_under(self.root)
            processor.wait()
        failed = self.noops("failed", after)
        if failed:
            raise RuntimeError(f"{failed} noop tasks failed")
        return done / took, done, done / running


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    """The spec of a `plan` child: its steps, in order."""
    return {"steps": list(steps)}


# -- bare SQL through the driver -----------------------------------------------------------


_INSERT = (
    "INSERT INTO bench_tasks (server_id, service_name, task_name, queue_name, execution_mode, "
    "status, params, timeout_seconds, has_temp_directory, created_at, updated_at) VALUES "
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_CLAIM = {
    "sqlite": (
        "UPDATE bench_tasks SET status = 'running', started_at = %s WHERE id = (SELECT id "
        "FROM bench_tasks WHERE queue_name = 'default' AND status = 'pending' AND schedule_key "
        "IS NULL ORDER BY id LIMIT 1) RETURNING id"
    ),
    "postgresql": (
        "UPDATE bench_tasks SET status = 'running', started_at = %s WHERE id = (SELECT id "
        "FROM bench_tasks WHERE queue_name = 'default' AND status = 'pending' AND schedule_key "
        "IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    ),
    "mysql": (
        "SELECT id FROM bench_tasks WHERE queue_name = 'default' AND status = 'pending' "
        "AND schedule_key IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ),
}
_COMPLETE = (
    "UPDATE bench_tasks SET status = 'completed', completed_at = %s, result = %s WHERE id = %s"
)


class Bare:
    """The scratch table `bench_tasks` in the app's database, through the DB-API driver.

    It is a copy of `_tasks` as the runtime made it, columns and indexes (`LIKE _tasks`;
    on SQLite its DDL, renamed), so a reference row writes the same table shape with the
    contract's columns, and the ratio measures the runtime's own cost rather than the
    indexes every task table needs. SQLite runs with the runtime's settings (WAL,
    `synchronous = NORMAL`); MySQL/MariaDB at READ COMMITTED, as the runtime's connections do.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.kind = database_kind(url)
        parsed = make_url(url)
        if self.kind == "sqlite":
            import sqlite3

            self.conn: Any = sqlite3.connect(parsed.database or "", timeout=30)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        elif self.kind == "postgresql":
            import psycopg

            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self.conn = psycopg.connect(conninfo)
        else:
            import pymysql

            self.conn = pymysql.connect(
                host=parsed.host, port=parsed.port or 3306, user=parsed.username,
                password=parsed.password or "", database=parsed.database,
            )
            self.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        self.copy_task_table()
        self.conn.commit()

    def copy_task_table(self) -> None:
        """Create `bench_tasks` with the columns and indexes of the app's `_tasks`."""
        if self.kind == "postgresql":
            self.execute("CREATE TABLE bench_tasks (LIKE _tasks INCLUDING ALL)")
        elif self.kind == "mysql":
            self.execute("CREATE TABLE bench_tasks LIKE _tasks")
        else:
            ddl = self.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = '_tasks' AND sql IS NOT NULL "
                "ORDER BY type DESC"
            ).fetchall()
            for (statement,) in ddl:
                self.execute(statement.replace("_tasks", "bench_tasks"))

    def close(self) -> None:
        """Close the driver connection."""
        self.conn.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (written with `%s` placeholders); its cursor."""
        if self.kind == "sqlite":
            return self.conn.execute(sql.replace("%s", "?"), params)
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def now(self) -> Any:
        """The current naive UTC time as this driver takes a timestamp parameter."""
        moment = datetime.now(UTC).replace(tzinfo=None)
        return moment.isoformat(" ") if self.kind == "sqlite" else moment

    def _values(self, first: int, count: int) -> tuple[str, list[Any]]:
        now = self.now()
        params: list[Any] = []
        for i in range(first, first + count):
            params += [
                1, SERVICE, "noop", "default", "queued", "pending", json.dumps({"n": i}),
                60, False, now, now,
            ]
        return ", ".join([_ROW] * count), params

    def insert_singles(self, count: int) -> float:
        """Seconds for `count` single-row INSERT + COMMIT."""
        began = time.perf_counter()
        for i in range(count):
            values, params = self._values(i, 1)
            self.execute(_INSERT + values, params)
            self.conn.commit()
        return time.perf_counter() - began

    def insert_batches(self, batches: int, size: int = BATCH) -> float:
        """Seconds for `batches` multi-row INSERTs of `size` rows, each + COMMIT."""
        began = time.perf_counter()
        for b in range(batches):
            values, params = self._values(b * size, size)
            self.execute(_INSERT + values, params)
            self.conn.commit()
        return time.perf_counter() - began

    def claim_loop(self, count: int) -> float:
        """Seconds to claim and complete `count` pending rows, two transactions each."""
        began = time.perf_counter()
        for _ in range(count):
            row = self.execute(_CLAIM[self.kind], () if self.kind == "mysql" else [self.now()])
            task_id = row.fetchone()[0]
            if self.kind == "mysql":
                self.execute(
                    "UPDATE bench_tasks SET status = 'running', started_at = %s WHERE id = %s",
                    [self.now(), task_id],
                )
            self.conn.commit()
            self.execute(_COMPLETE, [self.now(), "0", task_id])
            self.conn.commit()
        return time.perf_counter() - began


# -- peers ---------------------------------------------------------------------------------


def huey_run(scratch: Scratch, sizes: Sizes) -> tuple[float, float]:
    """Huey (SqliteHuey, one thread worker): enqueue rate and consumer throughput."""
    import sqlite3

    folder = scratch.folder("huey")
    database = folder / "huey.db"
    (folder / "huey_app.py").write_text(HUEY_APP.format(filename=str(database)))
    spec = {"module": "huey_app", "timed": sizes.dispatches, "total": sizes.tasks}
    enqueued = run_child(folder, "huey", spec)
    total = enqueued["total"]

    def results() -> bool:
        """Whether huey has stored every task's result."""
        with sqlite3.connect(database, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0]) >= total

    consumer_code = (
        "import huey_app; "
        "huey_app.huey.create_consumer(workers=1, worker_type='thread').run()"
    )
    began = time.time()
    with open(folder / "consumer.log", "ab") as log:
        consumer = subprocess.Popen(
            [sys.executable, "-c", consumer_code], cwd=folder, env=child_env(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(results, max(120.0, total / 5), "huey's results", every=0.02)
        took = time.time() - began
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
        kill_processes_under(folder)
    return enqueued["timed"] / enqueued["seconds"], total / took


def procrastinate_run(scratch: Scratch, sizes: Sizes) -> tuple[float, float]:
    """Procrastinate (one worker, concurrency 1): defer rate and worker throughput."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = scratch.database()
    try:
        folder = scratch.folder("procrastinate")
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        (folder / "procrastinate_app.py").write_text(PROCRASTINATE_APP.format(conninfo=conninfo))
        spec = {"module": "procrastinate_app", "timed": sizes.dispatches, "total": sizes.tasks}
        deferred = run_child(folder, "procrastinate", spec)
        total = deferred["total"]
        worker_code = (
            "import procrastinate_app as m; m.app.run_worker(concurrency=1, wait=False)"
        )
        began = time.time()
        with open(folder / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", worker_code], cwd=folder, env=child_env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            worker.wait(timeout=max(120.0, total / 5))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            kill_processes_under(folder)
        took = time.time() - began
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
            ).scalar()
        engine.dispose()
        if done != total:
            raise RuntimeError(f"procrastinate ran {done} of {total} jobs")
        return deferred["timed"] / deferred["seconds"], total / took
    finally:
        scratch.drop(url)


def child_command(name: str, spec: dict[str, Any]) -> list[str]:
    """The command of a measuring child: this script with `--child NAME SPEC`."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", name, json.dumps(spec)]


def run_child(folder: Path, name: str, spec: dict[str, Any], timeout: float = 600) -> Any:
    """Run a measuring child process in `folder`; what it printed, parsed."""
    done = subprocess.run(
        child_command(name, spec),
        cwd=folder, env=child_env(), capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {name} failed: {error_line(done.stderr, done.returncode)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def error_line(stderr: str, code: int) -> str:
    """The exception line of a child's traceback (without SQLAlchemy's help link)."""
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("(Background")]
    return lines[-1] if lines else f"exit status {code}"


# -- the figures ---------------------------------------------------------------------------


@dataclass
class QueueRun:
    """What one run of the queue scenario measured (rates in tasks/s)."""

    dispatch: float = 0.0
    bare_insert: float = 0.0
    throughput: float = 0.0
    steady: float = 0.0
    completed: int = 0
    bare_claim: float = 0.0
    dispatch_many: float | None = None
    bare_batch: float | None = None


@dataclass
class Bench:
    """One benchmark invocation: its database, sizes, and the measurements made so far."""

    scratch: Scratch
    package: Path
    sizes: Sizes
    repeats: int
    batch_api: bool
    idle_setting: bool
    runs: list[QueueRun] = field(default_factory=list)
    filled_runs: list[QueueRun] = field(default_factory=list)
    huey: list[tuple[float, float]] = field(default_factory=list)
    procrastinate: list[tuple[float, float]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`sqlite`, `postgresql` or `mysql`."""
        return self.scratch.kind

    @contextmanager
    def app(self, url: str | None = None, **options: Any) -> Iterator[App]:
        """A temporary app on `url` (default: a fresh database), closed afterwards."""
        app = App(
            self.scratch, self.package, url or self.scratch.database(),
            own_database=url is None, **options,
        )
        try:
            yield app
        finally:
            app.close()

    def fill_noops(self, count: int) -> dict[str, Any]:
        """A plan step dispatching `count` noops the fastest public way (untimed)."""
        return {"noop": count, "many": self.batch_api}

    def queue_run(self, url: str | None = None, references: bool = True) -> QueueRun:
        """Dispatch behind a gate, then drain with one worker; bare SQL on the same database."""
        sizes, run = self.sizes, QueueRun()
        with self.app(url) as app:
            gate = app.root / "gate"
            out = app.child("plan", plan(
                {"gate": str(gate)}, {"wait": True},
                {"noop": sizes.dispatches, "many": False},
                self.fill_noops(sizes.tasks - sizes.dispatches),
            ))
            first, timed = out["gates"][0], out["results"][0]
            run.dispatch = timed["count"] / timed["seconds"]
            bare = Bare(app.url) if references else None
            try:
                if bare is not None:
                    run.bare_insert = sizes.dispatches / bare.insert_singles(sizes.dispatches)
                app.release([gate])
                run.throughput, run.completed, run.steady = app.drain(first, sizes.tasks)
                if bare is not None:
                    bare.insert_batches(1, sizes.tasks - sizes.dispatches)
                    run.bare_claim = sizes.tasks / bare.claim_loop(sizes.tasks)
                if bare is not None and self.batch_api:
                    self.batch_run(app, bare, run)
            finally:
                if bare is not None:
                    bare.close()
        return run

    def batch_run(self, app: App, bare: Bare, run: QueueRun) -> None:
        """`dispatch_many` of BATCH tasks per call behind a gate, and bare multi-row INSERTs."""
        gate = app.root / "gate-batch"
        count = self.sizes.batches * BATCH
        out = app.child("plan", plan(
            {"gate": str(gate)}, {"wait": True}, {"noop": count, "many": True}
        ))
        timed = out["results"][0]
        run.dispatch_many = timed["count"] / timed["seconds"]
        run.bare_batch = count / bare.insert_batches(self.sizes.batches)

    def queue_runs(self) -> list[QueueRun]:
        """The queue scenario's runs (made on first need, with the peer's)."""
        if not self.runs:
            for i in range(self.repeats):
                note(f"queue scenario, run {i + 1} of {self.repeats}")
                self.runs.append(self.queue_run())
                self.peers()
        return self.runs

    def peers(self) -> None:
        """One run of the peer of this database, if it has one."""
        if self.kind == "sqlite":
            note("huey")
            self.huey.append(huey_run(self.scratch, self.sizes))
        elif self.kind == "postgresql":
            note("procrastinate")
            self.procrastinate.append(procrastinate_run(self.scratch, self.sizes))

    def peer_rows(self, index: int, label: str, product: float) -> list[Row]:
        """Rows comparing `product` with the peer's figure `index` (0 enqueue, 1 run)."""
        found = [("huey", self.huey), ("procrastinate", self.procrastinate)]
        rows = []
        for name, runs in found:
            if not runs:
                continue
            theirs = median(r[index] for r in runs)
            target = "> 1.0" if index == 1 else "—"
            met = product / theirs > 1.0 if index == 1 else None
            rows.append(Row(f"{label} vs {name}", rate(product), rate(theirs),
                            product / theirs, target, met, rates(product, theirs)))
        return rows

    # -- rows ----------------------------------------------------------------------------

    def dispatch(self) -> list[Row]:
        """Figure 1: single dispatches vs single-row INSERT + COMMIT."""
        runs = self.queue_runs()
        ours, bare = median(r.dispatch for r in runs), median(r.bare_insert for r in runs)
        ratio = ours / bare
        rows = [Row(f"1 dispatch ({self.sizes.dispatches}, worker busy)", rate(ours),
                    rate(bare), ratio, "≥ 0.6", ratio >= 0.6, rates(ours, bare))]
        return rows + self.peer_rows(0, "1 dispatch", ours)

    def dispatch_many(self) -> list[Row]:
        """Figure 2: `dispatch_many` vs multi-row INSERT + COMMIT."""
        label = f"2 dispatch_many ({BATCH}/call)"
        if not self.batch_api:
            return [Row(label, "n/a (not implemented)", target="≥ 0.8")]
        runs = self.queue_runs()
        ours = median(r.dispatch_many or 0.0 for r in runs)
        bare = median(r.bare_batch or 0.0 for r in runs)
        return [Row(label, rate(ours), rate(bare), ours / bare, "≥ 0.8", ours / bare >= 0.8,
                    rates(ours, bare))]

    def throughput(self) -> list[Row]:
        """Figure 4: one worker draining the queue vs a bare claim loop."""
        runs = self.queue_runs()
        ours, bare = median(r.steady for r in runs), median(r.bare_claim for r in runs)
        started = median(r.throughput for r in runs)
        product = (
            f"{rate(ours)} ({rate(started)} with start-up)"
            + partial(runs, self.sizes.tasks, "throughput")
        )
        numbers = {**rates(ours, bare), "with_start_up_per_s": started}
        rows = [Row(f"4 throughput, 1 worker ({self.sizes.tasks})", product,
                    rate(bare), ours / bare, "≥ 0.5", ours / bare >= 0.5, numbers)]
        # The peers' consumers are timed from their start, so the product is too.
        return rows + self.peer_rows(1, "4 throughput", started)

    def workers2(self) -> list[Row]:
        """Figure 5: two workers draining the queue vs one."""
        one = median(r.steady for r in self.queue_runs())
        measured = []
        for i in range(self.repeats):
            note(f"two workers, run {i + 1} of {self.repeats}")
            with self.app(workers=2) as app:
                gates = [app.root / "gate-1", app.root / "gate-2"]
                out = app.child("plan", plan(
                    {"gate": str(gates[0])}, {"gate": str(gates[1])}, {"wait": True},
                    self.fill_noops(self.sizes.tasks),
                ))
                app.release(gates)
                measured.append(app.drain(max(out["gates"]), self.sizes.tasks)[2])
        ours = median(measured)
        target, met = "≥ 1.5 (PostgreSQL)", None
        if self.kind == "postgresql":
            met = ours / one >= 1.5
        return [Row("5 throughput, 2 workers", rate(ours), f"{rate(one)} (1 worker)",
                    ours / one, target, met, rates(ours, one))]

    def concurrency(self) -> list[Row]:
        """Figure 3: each dispatch's latency, 8 processes at once, workers running."""
        note("8 concurrent dispatchers")
        with self.app(workers=2) as app:
            spec = {"count": self.sizes.burst}
            children = [
                subprocess.Popen(
                    child_command("burst", spec), cwd=app.root, env=child_env(),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )
                for _ in range(8)
            ]
            try:
                for child in children:
                    assert child.stdout is not None
                    if child.stdout.readline().strip() != "ready":
                        raise RuntimeError("a dispatching child failed to start")
                for child in children:
                    assert child.stdin is not None
                    child.stdin.write("go\n")
                    child.stdin.flush()
                latencies: list[float] = []
                for child in children:
                    out, _ = child.communicate(timeout=300)
                    latencies += json.loads(out.strip().splitlines()[-1])
            finally:
                for child in children:
                    if child.poll() is None:
                        child.kill()
                        child.wait()
        p99 = percentile(latencies, 0.99)
        target, met = "p99 ≤ 50 ms (SQLite, PostgreSQL)", None
        if self.kind in ("sqlite", "postgresql"):
            met = p99 <= 50
        numbers = {f"p{round(f * 100)}_ms": percentile(latencies, f) for f in (0.5, 0.95, 0.99)}
        return [Row(f"3 dispatch latency, 8×{self.sizes.burst} concurrent",
                    spread(latencies, 0.5, 0.95, 0.99), target=target, met=met,
                    numbers=numbers | {"max_ms": max(latencies)})]

    def start_latency(self, warm: bool) -> list[Row]:
        """Figures 6 and 7: dispatch to running, with no worker or an idle one."""
        label = "7 dispatch→running, idle worker" if warm else "6 dispatch→running, no worker"
        target = "p50 ≤ 20 ms" if warm else "p50 ≤ 300 ms"
        if warm and not self.idle_setting:
            return [Row(label, "n/a (worker_idle_seconds not accepted)", target=target)]
        note(label[2:])
        with self.app(idle=warm) as app:
            samples = app.child("start_latency", {"count": self.sizes.start_samples, "warm": warm})
        stamps = [s["db_ms"] for s in samples]
        walls = [s["wall_ms"] for s in samples]
        p50 = percentile(stamps, 0.5)
        product = (
            f"p50 {p50:.0f} / p95 {percentile(stamps, 0.95):.0f} ms "
            f"(wall p50 {percentile(walls, 0.5):.0f} ms, n={len(stamps)})"
        )
        numbers = {"p50_ms": p50, "p95_ms": percentile(stamps, 0.95),
                   "wall_p50_ms": percentile(walls, 0.5)}
        return [Row(label, product, target=target, met=p50 <= (20 if warm else 300),
                    numbers=numbers)]

    def scale(self) -> list[Row]:
        """Figure 8: the queue scenario on a large table vs on an empty one."""
        runs = self.queue_runs()
        url = self.filled_database()
        for i in range(self.repeats):
            note(f"queue scenario on the filled table, run {i + 1} of {self.repeats}")
            run = self.queue_run(url, references=False)
            self.filled_runs.append(run)
            if run.completed < self.sizes.tasks:
                note("tasks were left pending, which would distort another run; no more runs")
                break
        label = f"{self.sizes.filled:,} completed + {self.sizes.parked:,} parked rows"
        rows = []
        for name, field_name in (("dispatch", "dispatch"), ("throughput", "steady")):
            full = median(getattr(r, field_name) for r in self.filled_runs)
            empty = median(getattr(r, field_name) for r in runs)
            product = rate(full) + partial(self.filled_runs, self.sizes.tasks, name)
            rows.append(Row(f"8 scale: {name}, {label}", product, f"{rate(empty)} (empty)",
                            full / empty, "≥ 0.8", full / empty >= 0.8, rates(full, empty)))
        return rows

    def filled_database(self) -> str:
        """A database whose `_tasks` holds many completed rows and parked pending ones."""
        url = self.scratch.database()
        with self.app(url) as app:
            app.child("plan", plan({"noop": 1, "many": False}))
            wait_until(lambda: app.noops("completed", 0) == 1, 60, "the template task")
            app.wait_quiet()
        note(f"filling _tasks with {self.sizes.filled:,} + {self.sizes.parked:,} rows")
        fill_table(url, self.sizes.filled, self.sizes.parked)
        return url

    def memory(self) -> list[Row]:
        """Figure 9: a worker's RSS after the first and the last of many tasks."""
        low, high = self.sizes.memory
        note(f"worker memory over {high} tasks")
        with self.app() as app:
            gates = [app.root / f"gate-{i}" for i in range(3)]
            out = app.child("plan", plan(
                {"gate": str(gates[0])}, {"wait": True}, self.fill_noops(low),
                {"gate": str(gates[1])}, self.fill_noops(high - low), {"gate": str(gates[2])},
            ))
            supervisor = psutil.Process(app.worker_pids()[0])
            executor = supervisor.children()[0]
            readings = []
            for opened, held in ((0, 1), (1, 2)):
                gates[opened].touch()
                gate_id = out["gates"][held]
                wait_until(lambda g=gate_id: app.status(g) == "running",
                           max(120.0, high / 5), "the next gate", every=0.05)
                readings.append((executor.memory_info().rss, supervisor.memory_info().rss))
            gates[2].touch()
            app.wait_quiet()
        mb = 1024 * 1024
        grew = (readings[1][0] - readings[0][0]) / mb
        supervisor_grew = (readings[1][1] - readings[0][1]) / mb
        product = (
            f"executor {grew:+.1f} MB ({readings[0][0] / mb:.1f} → {readings[1][0] / mb:.1f}), "
            f"supervisor {supervisor_grew:+.1f} MB"
        )
        numbers = {"executor_growth_mb": grew, "supervisor_growth_mb": supervisor_grew,
                   "executor_rss_mb": readings[1][0] / mb}
        return [Row(f"9 memory, RSS after {high} − after {low} tasks", product,
                    target="≤ 5 MB", met=grew <= 5, numbers=numbers)]

    def idle(self) -> list[Row]:
        """Figure 10: a processor run with nothing to do vs importing SQLAlchemy."""
        note("idle processor")
        runs = self.sizes.idle_runs
        with self.app() as app:
            processor = [sys.executable, "-m", "runtime.process"]
            timed(processor, app.root)
            ours, bare = [], []
            for _ in range(runs):
                ours.append(timed(processor, app.root))
                bare.append(timed([sys.executable, "-c", "import sqlalchemy"], app.root))
        product, reference = median(ours), median(bare)
        ratio = product / reference
        return [Row(f"10 idle processor (median of {runs})", f"{product:.3f} s",
                    f"{reference:.3f} s (import sqlalchemy)", ratio, "≤ 1.5", ratio <= 1.5,
                    {"product_s": product, "reference_s": reference})]


def partial(runs: Sequence[QueueRun], tasks: int, figure: str) -> str:
    """A note for a throughput measured over fewer tasks than dispatched, else ""."""
    fewest = min(r.completed for r in runs)
    if figure != "throughput" or fewest >= tasks:
        return ""
    return f" ({fewest:,} of {tasks:,} done in {DRAIN_LIMIT_S} s, {len(runs)} run(s))"


def timed(command: list[str], cwd: Path) -> float:
    """Wall-clock seconds of one process run to completion."""
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=child_env(), capture_output=True, timeout=120)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}")
    return took


def fill_table(url: str, completed: int, parked: int) -> None:
    """Clone the completed row of `_tasks` to `completed` rows, then add `parked` pending
    rows on the queue `parked`, which rsx.toml does not define, by doubling INSERT ... SELECT.

    The columns are read by reflection, so the fill follows the table as the runtime
    defines it; the pending rows get NULL in the columns a claim or a finish sets. The
    table is then settled as a long-lived one would be: VACUUM ANALYZE on PostgreSQL (else
    autovacuum works through the new rows during the measurement), ANALYZE on MariaDB.
    """
    from sqlalchemy import MetaData, Table, create_engine, func, insert, literal, null, select

    engine = create_engine(url)
    table = Table("_tasks", MetaData(), autoload_with=engine)
    columns = [c for c in table.columns if c.name != "id"]
    names = [c.name for c in columns]
    pending = {"status": "pending", "queue_name": "parked"}
    cleared = {"result", "status_data", "status_log", "started_at", "completed_at",
               "worker_pid", "worker_started", "temp_expires_at"}

    def as_pending(column: Any) -> Any:
        if column.name in pending:
            return literal(pending[column.name]).label(column.name)
        return null().label(column.name) if column.name in cleared else column

    def double(where: Any, have: int, wanted: int) -> None:
        while have < wanted:
            take = min(have, wanted - have)
            with engine.begin() as conn:
                conn.execute(insert(table).from_select(
                    names, select(*columns).where(where).order_by(table.c.id).limit(take)
                ))
            have += take

    with engine.begin() as conn:
        template = conn.execute(
            select(func.min(table.c.id)).where(table.c.status == "completed")
        ).scalar()
    double(table.c.status == "completed", 1, completed)
    with engine.begin() as conn:
        conn.execute(insert(table).from_select(
            names, select(*[as_pending(c) for c in columns]).where(table.c.id == template)
        ))
    double(table.c.queue_name == "parked", 1, parked)
    kind = database_kind(url)
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE _tasks")
    elif kind == "mysql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE _tasks")
    engine.dispose()


# -- measuring children (run in the app's folder) --------------------------------------------


def child_plan(spec: dict[str, Any]) -> Any:
    """Dispatch gates and noops as the plan says; ids of the gates, timings of the noops."""
    from runtime import Task

    gates: list[int] = []
    results = []
    for step in spec["steps"]:
        if "gate" in step:
            gates.append(Task.dispatch(SERVICE, "gate", {"path": step["gate"]}))
        elif "wait" in step:
            wait_until(
                lambda: all(Task.status(g).status == "running" for g in gates),
                60, "the gate tasks to be running",
            )
        else:
            count = step["noop"]
            results.append({"count": count, "seconds": dispatch_noops(count, step["many"])})
    return {"gates": gates, "results": results}


def dispatch_noops(count: int, many: bool) -> float:
    """Seconds to dispatch `count` noops, singly or BATCH per `dispatch_many` call."""
    from runtime import Task

    began = time.perf_counter()
    if many:
        for first in range(0, count, BATCH):
            params = [{"n": i} for i in range(first, min(count, first + BATCH))]
            Task.dispatch_many(SERVICE, "noop", params)
    else:
        for i in range(count):
            Task.dispatch(SERVICE, "noop", {"n": i})
    return time.perf_counter() - began


def child_burst(spec: dict[str, Any]) -> Any:
    """One of the concurrent dispatchers: warm up, say ready, wait for go, time each call."""
    from runtime import Task

    Task.dispatch(SERVICE, "noop", {"n": -1})
    print("ready", flush=True)
    sys.stdin.readline()
    latencies = []
    for i in range(spec["count"]):
        began = time.perf_counter()
        Task.dispatch(SERVICE, "noop", {"n": i})
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def child_start_latency(spec: dict[str, Any]) -> Any:
    """Dispatch one noop at a time and poll its status every 2 ms until it left pending.

    The first task is a warm-up, not counted. Cold (`warm` false): before each other task
    wait until no worker of the app is left, so the dispatch starts one. Warm: the previous
    task's worker is still idling.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from runtime import Task
    from runtime.config import load_config

    engine = create_engine(load_config().database_url, poolclass=NullPool)
    root = Path.cwd()

    def quiet() -> bool:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM _workers")).scalar()
        return rows == 0 and not processes_under(root)

    samples = []
    for i in range(spec["count"] + 1):
        if i > 0 and spec["warm"]:
            time.sleep(0.1)
        elif i > 0:
            wait_until(quiet, 60, "the worker to exit", every=0.02)
        began = time.perf_counter()
        task_id = Task.dispatch(SERVICE, "noop", {"n": i})
        status = wait_until(
            lambda t=task_id: (s := Task.status(t)).status != "pending" and s,
            60, f"task {task_id} to start", every=0.002,
        )
        wall = (time.perf_counter() - began) * 1000
        assert status.started_at is not None and status.created_at is not None
        waited = (status.started_at - status.created_at).total_seconds() * 1000
        if i > 0:
            samples.append({"db_ms": waited, "wall_ms": wall})
        wait_until(
            lambda t=task_id: Task.status(t).status == "completed", 60, "the task to end"
        )
    engine.dispose()
    return samples


def child_peer(spec: dict[str, Any], call: Callable[[Any, int], Any]) -> Any:
    """Enqueue `total` noops with a peer (one warm-up, then `timed` timed, then the rest)."""
    import importlib

    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(spec["module"])
    call(module, -1)
    began = time.perf_counter()
    for i in range(spec["timed"]):
        call(module, i)
    seconds = time.perf_counter() - began
    for i in range(spec["timed"], spec["total"] - 1):
        call(module, i)
    return {"timed": spec["timed"], "seconds": seconds, "total": spec["total"]}


def child_huey(spec: dict[str, Any]) -> Any:
    """Enqueue noops with huey (see `child_peer`)."""
    return child_peer(spec, lambda module, n: module.noop(n))


def child_procrastinate(spec: dict[str, Any]) -> Any:
    """Apply procrastinate's schema, then defer noops (see `child_peer`)."""
    import importlib

    sys.path.insert(0, os.getcwd())
    app = importlib.import_module(spec["module"]).app
    with app.open():
        app.schema_manager.apply_schema()
        return child_peer(spec, lambda module, n: module.noop.defer(n=n))


CHILDREN: dict[str, Callable[[dict[str, Any]], Any]] = {
    "plan": child_plan,
    "burst": child_burst,
    "start_latency": child_start_latency,
    "huey": child_huey,
    "procrastinate": child_procrastinate,
}


# -- main ----------------------------------------------------------------------------------


def selected(only: str | None) -> list[str]:
    """The figures asked for, in table order."""
    if not only:
        return list(FIGURES)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in FIGURES]
    if unknown:
        raise SystemExit(f"bench: unknown figure(s) {', '.join(unknown)}; "
                         f"figures: {', '.join(FIGURES)}")
    return [name for name in FIGURES if name in wanted]


def rows_of(bench: Bench, figure: str) -> list[Row]:
    """The rows of one figure, or one n/a row saying why it could not be measured."""
    measure = {
        "cold_start": lambda: bench.start_latency(warm=False),
        "warm_start": lambda: bench.start_latency(warm=True),
    }.get(figure) or getattr(bench, figure)
    try:
        return list(measure())
    except Exception as exc:
        note(f"{figure} failed: {type(exc).__name__}: {exc}")
        return [Row(TITLES[figure], f"n/a ({type(exc).__name__}: {exc})")]


def main(argv: list[str] | None = None) -> int:
    """Run the figures asked for and print the table (or be one measuring child)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 1 repeat")
    parser.add_argument("--url", help="database server URL (default: SQLite in a temp folder)")
    parser.add_argument("--only", help=f"comma-separated figures: {', '.join(FIGURES)}")
    parser.add_argument("--repeats", type=int, help="runs per rate (default 3, --quick 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, spec = args.child
        print(json.dumps(CHILDREN[name](json.loads(spec))), flush=True)
        return 0

    figures = selected(args.only)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    started = time.monotonic()
    with Scratch(args.url) as scratch:
        note(f"{scratch.kind}, {'quick' if args.quick else 'full'} sizes, {repeats} repeat(s)")
        bench = Bench(
            scratch, build_package(scratch), sizes, repeats,
            batch_api=has_dispatch_many(), idle_setting=accepts_idle_setting(scratch),
        )
        rows = [row for figure in figures for row in rows_of(bench, figure)]
    took = time.monotonic() - started
    header = ["figure", "product", "reference", "ratio", "target", "met?"]
    if args.json:
        print(json.dumps({
            "database": scratch.kind, "quick": args.quick, "repeats": repeats,
            "commit": git_commit(), "date": datetime.now(UTC).date().isoformat(),
            "cpus": os.cpu_count(), "seconds": round(took), "rows": [asdict(r) for r in rows],
        }, indent=2, ensure_ascii=False))
        return 0
    print(
        f"rsx runtime benchmark: {scratch.kind}, {'quick' if args.quick else 'full'}, "
        f"{repeats} repeat(s), commit {git_commit()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {took:.0f} s"
    )
    print(render_table(header, [r.cells() for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

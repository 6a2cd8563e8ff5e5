"""Benchmark of the dashboard's overview on a large task table.

    python bench/web.py [-n 1000000] [--backend sqlite] [--backend postgresql] [--repeat 20]

Fills `_tasks` with N rows in one bulk INSERT ... SELECT per database (a recursive CTE on
SQLite, `generate_series` on PostgreSQL): thirty days of history, ids following creation
time, about 97.8 % completed, 2 % failed, 0.2 % stuck, 1,000 pending rows on three queues,
8 running, a scheduled task run every thousandth row, then ANALYZE. It then times, through
Starlette's TestClient against the app `python -m runtime.web` serves:

- `GET /` (the overview page) and `GET /overview.json` (its live refresh): median and
  95th percentile of `--repeat` requests after one warm-up, and the median's ratio to the
  100 ms target;
- for reference, `GET /tasks`, `GET /tasks?status=failed`, `GET /tasks?since=1h`,
  `GET /metrics` (its first scrape counts every ended row, a later one only what ended
  since) and the per-task statistics of `python -m runtime.stats` over 24 hours (these two
  `SLOW_REPEAT` times: without the index each reads the whole table).

Each backend is measured twice: with the schema as it is, and with the extra index the
operator views ask for, `ix__tasks_status_completed (status, completed_at)`, created by
hand. PostgreSQL needs `RSX_BENCH_POSTGRES_URL` (or `RSX_TEST_POSTGRES_URL`) naming a
server where a scratch database may be created and dropped. Times depend on the machine;
run it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

TARGET_S = 0.100
SLOW_REPEAT = 3
"""Repeats of the measurements that read the whole table without the index."""
INDEX = "ix__tasks_status_completed"
SPAN = timedelta(days=30)

CONFIG = """\
[tasks]
database_url = "{url}"
global_max_workers = 8

[tasks.queues]
video = {{ max_workers = 2 }}
email = {{ max_workers = 4 }}
"""

SCHEDULE = '''\
"""Schedule table of the benchmark app."""

from runtime.registry import ScheduleEntry

SCHEDULES = (
    ScheduleEntry(service="cleanup_service", task="cleanup_old_tasks", cron="0 2 * * *",
                  queue="scheduled", timeout=3600),
    ScheduleEntry(service="cleanup_service", task="cleanup_temp_directories", cron="0 * * * *",
                  queue="scheduled", timeout=3600),
    ScheduleEntry(service="svc0", task="nightly", cron="30 3 * * *", queue="default",
                  timeout=3600),
)
'''

COLUMNS = (
    "server_id, service_name, task_name, queue_name, execution_mode, status, params, "
    "status_data, status_log, result, scheduled_at, started_at, completed_at, "
    "timeout_seconds, has_temp_directory, created_at, updated_at"
)

# One row per i: its status, names and times, in each database's SQL. `{n}` is the row count.
SQLITE_FILL = """
INSERT INTO _tasks ({columns})
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}),
rows AS (
  SELECT i,
    CASE WHEN i > {n} - 1000 THEN 'pending'
         WHEN i > {n} - 1008 THEN 'running'
         WHEN i % 1000 < 20 THEN 'failed'
         WHEN i % 1000 < 22 THEN 'stuck'
         ELSE 'completed' END AS status,
    julianday(:start) + i * :step_days AS created,
    (abs(random()) % 120000) / 1000.0 AS took
  FROM seq
)
SELECT 1,
  CASE WHEN i % 1000 = 500 THEN 'cleanup_service' ELSE 'svc' || (i % 5) END,
  CASE WHEN i % 1000 = 500 THEN 'cleanup_old_tasks' ELSE 'task' || (i % 4) END,
  CASE WHEN i % 1000 = 500 THEN 'scheduled'
       ELSE CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'video' ELSE 'email' END END,
  CASE WHEN i % 1000 = 500 THEN 'scheduled' ELSE 'queued' END,
  status,
  '{{"video_id": ' || i || '}}',
  CASE WHEN status = 'running' THEN '{{"progress": 40}}' ELSE NULL END,
  '[2024-01-01 00:00:00] working on ' || i || char(10),
  CASE WHEN status = 'completed' THEN '{{"ok": true}}'
       WHEN status = 'failed' THEN '{{"error": "boom", "type": "ValueError"}}' ELSE NULL END,
  CASE WHEN i % 1000 = 500 THEN strftime('%Y-%m-%d %H:%M:%f', created) ELSE NULL END,
  CASE WHEN status = 'pending' THEN NULL
       ELSE strftime('%Y-%m-%d %H:%M:%f', created + 0.5 / 86400) END,
  CASE WHEN status IN ('pending', 'running') THEN NULL
       ELSE strftime('%Y-%m-%d %H:%M:%f', created + (0.5 + took) / 86400) END,
  3600, 0,
  strftime('%Y-%m-%d %H:%M:%f', created),
  strftime('%Y-%m-%d %H:%M:%f', created)
FROM rows
"""

POSTGRES_FILL = """
INSERT INTO _tasks ({columns})
SELECT 1,
  CASE WHEN i % 1000 = 500 THEN 'cleanup_service' ELSE 'svc' || (i % 5) END,
  CASE WHEN i % 1000 = 500 THEN 'cleanup_old_tasks' ELSE 'task' || (i % 4) END,
  CASE WHEN i % 1000 = 500 THEN 'scheduled'
       ELSE (ARRAY['default', 'video', 'email'])[i % 3 + 1] END,
  CASE WHEN i % 1000 = 500 THEN 'scheduled' ELSE 'queued' END,
  status,
  '{{"video_id": ' || i || '}}',
  CASE WHEN status = 'running' THEN '{{"progress": 40}}' ELSE NULL END,
  '[2024-01-01 00:00:00] working on ' || i || chr(10),
  CASE WHEN status = 'completed' THEN '{{"ok": true}}'
       WHEN status = 'failed' THEN '{{"error": "boom", "type": "ValueError"}}' ELSE NULL END,
  CASE WHEN i % 1000 = 500 THEN created ELSE NULL END,
  CASE WHEN status = 'pending' THEN NULL ELSE created + interval '0.5 seconds' END,
  CASE WHEN status IN ('pending', 'running') THEN NULL
       ELSE created + (0.5 + took) * interval '1 second' END,
  3600, false, created, created
FROM (
  SELECT i,
    CASE WHEN i > {n} - 1000 THEN 'pending'
         WHEN i > {n} - 1008 THEN 'running'
         WHEN i % 1000 < 20 THEN 'failed'
         WHEN i % 1000 < 22 THEN 'stuck'
         ELSE 'completed' END AS status,
    CAST(:start AS timestamp) + i * :step_seconds * interval '1 second' AS created,
    random() * 120 AS took
  FROM generate_series(1, {n}) AS i
) AS source
"""


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of `repeat` calls, after one warm-up call."""
    call()
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        found.append(time.perf_counter() - started)
    return found


def summary(name: str, times: list[float], target: float | None = None) -> str:
    median = statistics.median(times)
    p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    line = f"  {name:<34} median {median * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms"
    if target is not None:
        verdict = "ok" if median <= target else "OVER"
        line += f"   ratio to {target * 1000:.0f} ms: {median / target:5.2f} ({verdict})"
    return line


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database of `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'tasks.db'}"
        return
    server = os.environ.get("RSX_BENCH_POSTGRES_URL") or os.environ.get("RSX_TEST_POSTGRES_URL")
    if not server:
        raise SystemExit("bench/web.py: set RSX_BENCH_POSTGRES_URL for the PostgreSQL run")
    name = f"rsx_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def fill(store: object, backend: str, rows: int) -> float:
    """Insert `rows` rows in one statement and analyse the table; seconds taken."""
    start = datetime.now(UTC).replace(tzinfo=None) - SPAN
    step = SPAN.total_seconds() / rows
    started = time.perf_counter()
    with store.write() as conn:  # type: ignore[attr-defined]
        if backend == "sqlite":
            conn.execute(
                text(SQLITE_FILL.format(columns=COLUMNS, n=rows)),
                {"start": start.isoformat(sep=" "), "step_days": step / 86400},
            )
        else:
            conn.execute(
                text(POSTGRES_FILL.format(columns=COLUMNS, n=rows)),
                {"start": start, "step_seconds": step},
            )
    analyse(store, backend)
    return time.perf_counter() - started


def analyse(store: object, backend: str) -> None:
    engine = store.read_engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE" if backend == "sqlite" else "VACUUM ANALYZE _tasks")


def add_index(store: object, backend: str) -> None:
    with store.write() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f"CREATE INDEX {INDEX} ON _tasks (status, completed_at)"))
    analyse(store, backend)


def measure(client: object, store: object, repeat: int) -> list[str]:
    """The timings of one configuration, as report lines; the overview first."""
    from runtime.clock import utcnow

    get = client.get  # type: ignore[attr-defined]

    def fetch(path: str) -> Callable[[], object]:
        def call() -> object:
            answer = get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return answer

        return call

    started = time.perf_counter()
    fetch("/metrics")()
    first_scrape = time.perf_counter() - started
    lines = [
        summary("GET / (overview)", timed(fetch("/"), repeat), TARGET_S),
        summary("GET /overview.json (refresh)", timed(fetch("/overview.json"), repeat), TARGET_S),
        summary("GET /tasks", timed(fetch("/tasks"), repeat)),
        summary("GET /tasks?status=failed", timed(fetch("/tasks?status=failed"), repeat)),
        summary("GET /tasks?since=1h", timed(fetch("/tasks?since=1h"), repeat)),
        f"  {'GET /metrics, first scrape':<34} {first_scrape * 1000:8.1f} ms",
        summary("GET /metrics, later scrapes", timed(fetch("/metrics"), SLOW_REPEAT)),
        summary(
            "stats: task_stats over 24 h",
            timed(lambda: store.task_stats(utcnow() - timedelta(hours=24)), SLOW_REPEAT),  # type: ignore[attr-defined]
        ),
    ]
    return lines


def run(backend: str, rows: int, repeat: int) -> None:
    from starlette.testclient import TestClient

    from runtime.config import parse_config
    from runtime.store import Store
    from runtime.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="rsx-bench-web-") as scratch:
        folder = Path(scratch)
        with database(backend, folder) as url:
            (folder / "rsx.toml").write_text(CONFIG.format(url=url), encoding="utf-8")
            package = folder / "generated"
            package.mkdir()
            (package / "__init__.py").write_text("", encoding="utf-8")
            (package / "schedule.py").write_text(SCHEDULE, encoding="utf-8")
            config = parse_config(folder / "rsx.toml")
            store = Store(config)
            store.ensure_schema()
            print(f"{backend}: filling {rows:,} rows ...", flush=True)
            print(f"  filled and analysed in {fill(store, backend, rows):.1f} s", flush=True)
            for label in ("schema as it is", f"with {INDEX} (status, completed_at)"):
                if label.startswith("with"):
                    add_index(store, backend)
                app = create_app(config, store=store, metrics_lag_s=0)
                with TestClient(app, base_url="http://127.0.0.1") as client:
                    print(f"{backend}, {label}:")
                    for line in measure(client, store, repeat):
                        print(line, flush=True)
            store.dispose()
    for name in [m for m in sys.modules if m == "generated" or m.startswith("generated.")]:
        del sys.modules[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--backend", action="append", choices=("sqlite", "postgresql"), default=None
    )
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for backend in args.backend or ["sqlite", "postgresql"]:
        run(backend, args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers of the migration tests: old databases made as old runtimes made them, the rows
they hold, a normalised description of a schema, and a migration that dies halfway.

Run as a script (`python migratehelp.py kill-after N [migrate args]`) it is the wrapper
that runs `runtime.migrate` in-process and SIGKILLs itself right after the N-th DDL
statement has run, as a crash or an OOM kill would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, insert, inspect, text
from sqlalchemy.engine import make_url

Rows = list[dict[str, Any]]
OPTIONAL = (
    "result", "status_data", "status_log", "scheduled_at", "next_run_at", "started_at",
    "completed_at", "worker_pid", "temp_expires_at", "schedule_key", "worker_started",
    "temp_ttl_seconds",
)
"""The nullable `_tasks` columns of v1, NULL unless a row sets them (one executemany)."""
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP)\b", re.IGNORECASE)

BASE = datetime(2026, 11, 20, 8, 30, 15, 123456)
"""Naive UTC, with microseconds, as the runtime stores timestamps."""
LOG = "".join(f"line {n:05d} " + "x" * 90 + "\n" for n in range(1000))
"""A log of 100 KB, past TEXT's 64 KB on MySQL."""


def engine_for(url: str) -> Engine:
    """An engine as the runtime makes it for `url` (drivers, session settings)."""
    from runtime.backends import backend_for

    return backend_for(url).create_engine(url)


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name


def v1_rows() -> list[dict[str, Any]]:
    """`_tasks` rows of a v1 database: every status, an upcoming scheduled row, unicode,
    a long log, fractional seconds, results that are strings, lists, objects and null."""
    at = [BASE + timedelta(seconds=n, microseconds=n * 1001) for n in range(20)]

    def row(n: int, status: str, params: Any, **values: Any) -> dict[str, Any]:
        return dict.fromkeys(OPTIONAL) | {
            "server_id": 1,
            "service_name": "svc",
            "task_name": f"job{n}",
            "queue_name": "video",
            "execution_mode": "queued",
            "status": status,
            "params": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "timeout_seconds": 60 + n,
            "has_temp_directory": False,
            "created_at": at[n],
            "updated_at": at[n + 1],
            **values,
        }

    return [
        row(0, "pending", {"video_id": 5, "title": "Été 🎬 動画"}),
        row(1, "running", {"video_id": 6}, started_at=at[2], worker_pid=999_999_9,
            worker_started=1_700_000_000.25, status_data='{"progress":40}',
            status_log="[2026-11-20 08:30:16] started\n"),
        row(2, "completed", {"b": 1, "a": [1, 2.5, None, True]}, started_at=at[3],
            completed_at=at[4], result='"done"', status_data='{"progress":100,"step":"é"}',
            status_log=LOG, has_temp_directory=True, temp_expires_at=at[10],
            temp_ttl_seconds=3600),
        row(3, "completed", {}, started_at=at[4], completed_at=at[5],
            result='[1,"two",{"three":3},null]'),
        row(4, "completed", {"nested": {"deep": {"list": [{"x": "y"}]}}},
            started_at=at[5], completed_at=at[6], result="null"),
        row(5, "completed", {"n": 1}, started_at=at[6], completed_at=at[7], result=None),
        row(6, "failed", {"video_id": 7}, started_at=at[7], completed_at=at[8],
            result='{"error":"boom: ünïcödé","type":"RuntimeError"}',
            status_log="Traceback (most recent call last):\n  boom\n"),
        row(7, "stuck", {"video_id": 8}, started_at=at[8], completed_at=at[9],
            worker_pid=4242, status_log="Worker process 4242 is gone; marked stuck\n"),
        row(8, "pending", {"quote": "\"'\\", "tab": "\t", "big": 12345678901234},
            execution_mode="scheduled", queue_name="scheduled", service_name="cleanup",
            task_name="nightly", scheduled_at=at[12], next_run_at=at[12],
            schedule_key="cleanup.nightly"),
        row(9, "pending", {"video_id": 9}, queue_name="other", server_id=2),
    ]


def v1_workers() -> list[dict[str, Any]]:
    """`_workers` rows of a v1 database, one of them running task 2 (`current_task_id`)."""
    return [
        {"server_id": 1, "pid": 999_999_9, "process_started": 1_700_000_000.25,
         "queue_name": "video", "heartbeat_at": BASE + timedelta(seconds=3, microseconds=7),
         "created_at": BASE, "current_task_id": 2},
        {"server_id": 2, "pid": 77, "process_started": 1_700_000_100.5,
         "queue_name": "other", "heartbeat_at": BASE + timedelta(minutes=1),
         "created_at": BASE + timedelta(seconds=1), "current_task_id": None},
    ]


def make_old_database(url: str, version: int = 1) -> tuple[Rows, Rows]:
    """Create the tables as the runtime of schema `version` (1, or 2 of commit c25544e) did,
    with its `_meta` row and the rows above; the `_tasks` and `_workers` rows inserted."""
    if version == 1:
        from tests.runtime import schema_v1 as old
    else:
        from tests.runtime import schema_v2 as old  # type: ignore[no-redef]
    engine = engine_for(url)
    rows = v1_rows()
    workers = v1_workers()
    if version != 1:
        for worker in workers:
            worker.pop("current_task_id")
    with engine.begin() as conn:
        old.metadata.create_all(conn)
        conn.execute(insert(old.meta).values(key="schema_version", value=str(version)))
        conn.execute(insert(old.tasks), rows)
        conn.execute(insert(old.workers), workers)
    engine.dispose()
    return rows, workers


def describe(url: str) -> dict[str, Any]:
    """The runtime's tables as the database reports them: columns with types, nullability
    and defaults, primary keys, indexes (with a partial index's condition), unique
    constraints; on MySQL/MariaDB `SHOW CREATE TABLE` too, on PostgreSQL the catalog's
    data types and index definitions."""
    engine = engine_for(url)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        inspector = inspect(conn)
        found["tables"] = sorted(inspector.get_table_names())
        for table in found["tables"]:
            found[table] = _describe_table(conn, table)
    engine.dispose()
    return found


def _describe_table(conn: Connection, table: str) -> dict[str, Any]:
    inspector = inspect(conn)
    backend = conn.dialect.name
    columns = [
        (c["name"], repr(c["type"]), c["nullable"], str(c.get("default")))
        for c in inspector.get_columns(table)
    ]
    indexes = sorted(
        (
            i["name"],
            tuple(i["column_names"]),
            bool(i["unique"]),
            _where(i.get("dialect_options", {})),
        )
        for i in inspector.get_indexes(table)
    )
    uniques = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table))
    described: dict[str, Any] = {
        "columns": sorted(columns),
        "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
        "indexes": indexes,
        "uniques": uniques,
    }
    if backend == "mysql":
        ddl = conn.execute(text(f"SHOW CREATE TABLE `{table}`")).one()[1]
        # Its lines, in order but for the keys (unique ones too), which come in the order
        # they were created.
        lines = [line.strip().rstrip(",") for line in ddl.splitlines()]
        is_key = re.compile(r"(UNIQUE )?KEY ").match
        keys = sorted(line for line in lines if is_key(line))
        rest = [re.sub(r" AUTO_INCREMENT=\d+", "", ln) for ln in lines if not is_key(ln)]
        described["ddl"] = rest + keys
    elif backend == "postgresql":
        described["types"] = conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = :t ORDER BY column_name"
            ),
            {"t": table},
        ).all()
        described["indexdefs"] = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = :t ORDER BY indexname"),
            {"t": table},
        ).scalars().all()
    else:
        described["info"] = conn.execute(text(f"PRAGMA table_info('{table}')")).all()
        described["index_sql"] = sorted(
            " ".join(str(sql).split())
            for sql in conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
                {"t": table},
            ).scalars()
            if sql is not None
        )
    return described


def _where(options: dict[str, Any]) -> str | None:
    for key in ("sqlite_where", "postgresql_where"):
        if options.get(key) is not None:
            return " ".join(str(options[key]).strip("()").split())
    return None


def _kill_after(count: int) -> None:
    """SIGKILL this process right after the `count`-th DDL statement has run."""
    seen = [0]

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if DDL.match(statement):
            seen[0] += 1
            if seen[0] == count:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1] != "kill-after":
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
    _kill_after(int(sys.argv[2]))
    from runtime.migrate import main

    sys.exit(main(sys.argv[3:]))

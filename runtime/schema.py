"""The runtime's tables, as SQLAlchemy Core metadata.

`_tasks` carries the manual's columns under the names SPEC §8 fixes, plus:
- `schedule_key`: `"service.task"` on the single upcoming row of a schedule, NULL on every
  other row. Its UNIQUE constraint is what makes a schedule have at most one upcoming row
  however many processors race; releasing a due run clears it in a guarded UPDATE.
- `worker_started`: the executing process's start time (psutil `create_time()`), so a
  reused PID is told apart from the worker that claimed the task.
- `description` is not stored; it lives in the generated registry.

`_workers` has one row per live worker process; `_meta` records the schema version.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BigInteger falls back to Integer there.
_ID = BigInteger().with_variant(Integer(), "sqlite")

tasks = Table(
    "_tasks",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("server_id", Integer, nullable=False, default=1),
    Column("service_name", String(191), nullable=False),
    Column("task_name", String(191), nullable=False),
    Column("queue_name", String(100), nullable=False),
    Column("execution_mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("status_data", Text, nullable=True),
    Column("status_log", Text, nullable=True),
    Column("scheduled_at", DateTime, nullable=True),
    Column("next_run_at", DateTime, nullable=True),
    Column("started_at", DateTime, nullable=True),
    Column("completed_at", DateTime, nullable=True),
    Column("timeout_seconds", Integer, nullable=False),
    Column("worker_pid", Integer, nullable=True),
    Column("has_temp_directory", Boolean, nullable=False, default=False),
    Column("temp_expires_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("schedule_key", String(191), nullable=True, unique=True),
    Column("worker_started", Float, nullable=True),
    Index("ix__tasks_claim", "queue_name", "status", "id"),
    Index("ix__tasks_status", "status", "server_id"),
    Index("ix__tasks_service_task", "service_name", "task_name", "status"),
)

workers = Table(
    "_workers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("server_id", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process_started", Float, nullable=False),
    Column("queue_name", String(100), nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("current_task_id", BigInteger, nullable=True),
    Index("ix__workers_server_queue", "server_id", "queue_name"),
)

meta = Table(
    "_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

"""A frozen copy of the runtime's tables as commit c25544e made them: `_meta` version 2.

Between v1 and Alembic the runtime briefly created this schema (`worker_id`, the partial
claim index, no `current_task_id`, text JSON and naive timestamps); the migration tests
upgrade it too. Verbatim apart from this docstring.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    literal_column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from runtime.state import Status

SCHEMA_VERSION = 2

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BigInteger falls back to Integer there.
_ID = BigInteger().with_variant(Integer(), "sqlite")
_MYSQL = ("mysql", "mariadb")
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


class Timestamp(TypeDecorator[Any]):
    """A naive UTC DateTime, with microseconds on MySQL/MariaDB too (`DATETIME(6)`)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())


class LongText(TypeDecorator[Any]):
    """Unbounded text: TEXT, or `LONGTEXT` on MySQL/MariaDB where TEXT stops at 64 KB."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            from sqlalchemy.dialects.mysql import LONGTEXT

            return dialect.type_descriptor(LONGTEXT())
        return dialect.type_descriptor(Text())


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
    Column("params", LongText(), nullable=False),
    Column("result", LongText(), nullable=True),
    Column("status_data", LongText(), nullable=True),
    Column("status_log", LongText(), nullable=True),
    Column("scheduled_at", Timestamp(), nullable=True),
    Column("next_run_at", Timestamp(), nullable=True),
    Column("started_at", Timestamp(), nullable=True),
    Column("completed_at", Timestamp(), nullable=True),
    Column("timeout_seconds", Integer, nullable=False),
    Column("worker_pid", Integer, nullable=True),
    Column("has_temp_directory", Boolean, nullable=False, default=False),
    Column("temp_expires_at", Timestamp(), nullable=True),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
    Column("schedule_key", String(191), nullable=True, unique=True),
    Column("worker_started", Double, nullable=True),
    Column("temp_ttl_seconds", Integer, nullable=True),
    Column("worker_id", BigInteger, nullable=True),
    Index(
        "ix__tasks_claim",
        "queue_name",
        "status",
        "id",
        sqlite_where=literal_column("status = 'pending'"),
        postgresql_where=literal_column("status = 'pending'"),
    ),
    Index("ix__tasks_status", "status", "server_id"),
    Index("ix__tasks_service_task", "service_name", "task_name", "status"),
    Index("ix__tasks_temp_expiry", "server_id", "temp_expires_at"),
    **_MYSQL_TABLE,
)

workers = Table(
    "_workers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("server_id", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process_started", Double, nullable=False),
    Column("queue_name", String(100), nullable=False),
    Column("heartbeat_at", Timestamp(), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Index("ix__workers_server_queue", "server_id", "queue_name"),
    **_MYSQL_TABLE,
)

meta = Table(
    "_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    **_MYSQL_TABLE,
)


def status_is(status: Status) -> ColumnElement[bool]:
    """`status = '<value>'` with the value written into the SQL, so that the planner can use
    the partial index of pending rows (a bound parameter cannot prove the index applies)."""
    return tasks.c.status == literal_column(f"'{status.value}'")


def claimable(queue: str | None = None) -> ColumnElement[bool]:
    """The condition of a task a worker may take: pending, not a schedule's upcoming row."""
    condition = and_(status_is(Status.PENDING), tasks.c.schedule_key.is_(None))
    if queue is not None:
        condition = and_(tasks.c.queue_name == queue, condition)
    return condition

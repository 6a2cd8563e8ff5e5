"""The runtime's tables, as SQLAlchemy Core metadata.

`_tasks` carries the columns the contract names (docs/contract.md), plus:
- `schedule_key`: `"service.task"` on the single upcoming row of a schedule, NULL on every
  other row. Its UNIQUE constraint is what makes a schedule have at most one upcoming row
  however many processors race; releasing a due run clears it in a guarded UPDATE.
- `worker_started`: the executing process's start time (psutil `create_time()`), so a
  reused PID is told apart from the worker that claimed the task. A double: MySQL's
  single-precision FLOAT cannot hold an epoch timestamp to the second.
- `temp_ttl_seconds`: the task's `set_temp_expiration` value, kept so that a task marked
  stuck after calling it still gets that expiry (NULL: `temp_directory_default_ttl`).
- `worker_id`: the `_workers` row of the worker that claimed the task, whose heartbeat
  tells other servers whether the task is still being run.
- `attempts`: how many times a worker has started the task; a retried task keeps its row.
- `unique_key`: a unique task's key while it holds it (pending, or pending and running);
  its partial UNIQUE index makes the database refuse a second equal task.
- `cancel_requested_at`: when a cancel was asked of the task while it ran.

`ix__tasks_status_completed (status, completed_at)` serves the sweep (the few running rows),
the operator views' recent failures and time windows, and the old-task cleanup.
- `description` is not stored; it lives in the generated registry.

`ix__tasks_claim` covers claimable rows only on SQLite and PostgreSQL (a partial index:
pending, without a schedule key), so a claim stays one short index probe however many
ended rows the table keeps (with the whole claim condition in its predicate, PostgreSQL
estimates it right and walks it in id order instead of sorting every pending row); MySQL has no
partial indexes and gets the full (queue_name, status, id) index. The UNIQUE index of
`schedule_key` covers only the rows that have one, so that no planner takes it for the
claim's `schedule_key IS NULL` (SQLite did: a scan of every ordinary row per claim).

`_workers` has one row per live worker process. `_tasks_alembic_version` holds the
schema's revision (`SCHEMA_REVISION`), as Alembic keeps it; `runtime.migrate` upgrades an
older database, and the store refuses to use one (`StoreBase.ensure_schema`).

`params`, `result` and `status_data` are JSON in the database's own type (`jsonb` on
PostgreSQL, `JSON` on MySQL/MariaDB, TEXT on SQLite) and JSON text in Python: the store
writes `json.dumps` output and parses what it reads. Timestamps are naive UTC in Python
on every backend; PostgreSQL stores them as `timestamptz`, MySQL/MariaDB as `DATETIME(6)`
(plain DATETIME drops the fraction of a second, which FIFO and timeout checks need). The
log is `LONGTEXT` on MySQL/MariaDB (TEXT stops at 64 KB, and a task's log can grow past
it). The MySQL types load only when that dialect is used, so SQLite users do not pay for
importing them. MySQL tables are InnoDB (row locks, `SKIP LOCKED`) in utf8mb4 with the
binary collation, so names compare case-sensitively as on SQLite and PostgreSQL (`Video`
is not `video`) and any text fits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
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
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    case,
    cast,
    literal_column,
    or_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine, UserDefinedType

from runtime.state import Status
from runtime.unique import WHILE_ACTIVE

SCHEMA_REVISIONS = ("0001", "0002", "0003")
"""The Alembic revisions of `runtime/migrations`, oldest first (a test checks they match)."""
SCHEMA_REVISION = SCHEMA_REVISIONS[-1]
"""The revision these tables are at: a database must be at it to be used."""
VERSION_TABLE = "_tasks_alembic_version"
"""Alembic's version table for the task tables, apart from any the application keeps."""

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
    """A naive UTC datetime in Python on every backend.

    Stored as `TIMESTAMP WITH TIME ZONE` on PostgreSQL (values are sent with UTC attached
    and read back converted to UTC), `DATETIME(6)` on MySQL/MariaDB (with microseconds),
    and DATETIME on SQLite.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_sqlite_datetime())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, datetime):
            return value
        if dialect.name == "postgresql":
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
        if value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value


@cache
def _sqlite_datetime() -> TypeEngine[Any]:
    """SQLite's DATETIME, writing a datetime with `isoformat` (the text SQLAlchemy writes,
    `YYYY-MM-DD HH:MM:SS.ffffff`, made in C at a third of the cost: the hot path writes
    two or three per statement)."""
    from sqlalchemy.dialects.sqlite import DATETIME

    class _DateTime(DATETIME):
        def bind_processor(self, dialect: Dialect) -> Any:
            fallback: Any = super().bind_processor(dialect)

            def process(value: Any) -> Any:
                if type(value) is datetime:
                    return value.isoformat(" ", "microseconds")
                return fallback(value)

            return process

    made: TypeEngine[Any] = _DateTime()  # type: ignore[no-untyped-call]
    return made


class _JSONB(UserDefinedType[Any]):
    """PostgreSQL's `jsonb`, written from JSON text and read back as JSON text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSONB"

    def bind_expression(self, bindvalue: BindParameter[Any]) -> ColumnElement[Any]:
        return cast(bindvalue, self)

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        return cast(colexpr, Text())


class _MySQLJSON(UserDefinedType[Any]):
    """MySQL's `JSON` (on MariaDB a LONGTEXT checked by `JSON_VALID`); PyMySQL reads str."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"


class JsonText(TypeDecorator[Any]):
    """JSON in the database's own type, JSON text (a `str`) in Python.

    `jsonb` on PostgreSQL, `JSON` on MySQL/MariaDB, TEXT on SQLite, so that operators can
    query into it (`params->>'video_id'`, `JSON_VALUE(params, '$.video_id')`), while the
    store keeps writing `json.dumps` output and parsing what it reads. PostgreSQL returns
    `jsonb` as its own canonical text: the same value, keys reordered and spaced.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return _JSONB()
        if dialect.name in _MYSQL:
            return _MySQLJSON()
        return dialect.type_descriptor(Text())


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
    Column("params", JsonText(), nullable=False),
    Column("result", JsonText(), nullable=True),
    Column("status_data", JsonText(), nullable=True),
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
    Column("schedule_key", String(191), nullable=True),
    Column("worker_started", Double, nullable=True),
    Column("temp_ttl_seconds", Integer, nullable=True),
    Column("worker_id", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("unique_key", String(191), nullable=True),
    Column("cancel_requested_at", Timestamp(), nullable=True),
    Index(
        "ix__tasks_claim",
        "queue_name",
        "status",
        "id",
    ),
    Index(
        "ux__tasks_schedule_key",
        "schedule_key",
        unique=True,
    ),
    Index(
        "ux__tasks_unique_key",
        "unique_key",
        unique=True,
    ),
    Index("ix__tasks_status_completed", "status", "completed_at"),
    Index("ix__tasks_service_task", "service_name", "task_name", "status"),
    Index("ix__tasks_temp_expiry", "server_id", "temp_expires_at"),
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
)

version_table = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)
"""The version table exactly as Alembic makes it (kept out of `metadata`: Alembic owns it)."""


def status_is(status: Status) -> ColumnElement[bool]:
    """`status = '<value>'` with the value written into the SQL, so that the planner can use
    the partial index of pending rows (a bound parameter cannot prove the index applies)."""
    return tasks.c.status == literal_column(f"'{status.value}'")


def claimable(
    queue: str | ColumnElement[Any] | None = None, due_by: Any = None
) -> ColumnElement[bool]:
    """The condition of a task a worker may take: pending, not a schedule's upcoming row
    (of `queue`, a name or a bound parameter, when given), and with `due_by` (a naive UTC
    datetime or a bound parameter) due by then: no `next_run_at`, or one not after it.

    The due test is a filter on the rows the claim index yields, not part of the index's
    predicate, so the claim still walks that index in id order (FIFO among due tasks)."""
    condition = and_(status_is(Status.PENDING), tasks.c.schedule_key.is_(None))
    if queue is not None:
        condition = and_(tasks.c.queue_name == queue, condition)
    if due_by is not None:
        condition = and_(
            condition, or_(tasks.c.next_run_at.is_(None), tasks.c.next_run_at <= due_by)
        )
    return condition


def unique_key_after_claim() -> ColumnElement[Any]:
    """The `unique_key` a claim leaves on the row: a key held while the task is active
    (`a:`) stays, any other (`p:`, held while pending) is released. Part of the claim's
    own UPDATE, so releasing costs no statement."""
    held = tasks.c.unique_key.like(literal_column(f"'{WHILE_ACTIVE}%'"))
    return case((held, tasks.c.unique_key), else_=None)


# Partial indexes (SQLite and PostgreSQL; MySQL has none and keeps them whole).
_PARTIAL = {
    "ix__tasks_claim": f"status = '{Status.PENDING.value}' AND schedule_key IS NULL",
    "ux__tasks_schedule_key": "schedule_key IS NOT NULL",
    "ux__tasks_unique_key": "unique_key IS NOT NULL",
}


def use_dialect(name: str) -> None:
    """Add a database's own options to the tables: MySQL's engine and collation, the
    partial indexes' WHERE on SQLite and PostgreSQL.

    Each backend calls this when it makes its engine. Declaring the options up front
    would make SQLAlchemy import every dialect's module whenever this module is imported,
    which every worker start pays for.
    """
    if name in ("mysql", "mariadb"):
        for table in metadata.tables.values():
            for key, value in _MYSQL_TABLE.items():
                table.dialect_kwargs[key] = value
    elif name in ("sqlite", "postgresql"):
        for index in tasks.indexes:
            where = _PARTIAL.get(str(index.name))
            if where is not None:
                index.dialect_kwargs[f"{name}_where"] = literal_column(where)

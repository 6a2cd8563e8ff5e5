"""v1 schema: _tasks, _workers and _meta as the runtime made them before Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

A database made by that runtime is recorded at this revision by `runtime.migrate`
(stamped, not run); running it creates the same tables on an empty database. The types
are frozen copies of that runtime's: DATETIME(6) and LONGTEXT on MySQL/MariaDB.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_MYSQL = ("mysql", "mariadb")
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class _Timestamp(sa.TypeDecorator[Any]):
    """v1's naive UTC DateTime: DATETIME(6) on MySQL/MariaDB, DATETIME elsewhere."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())


class _LongText(sa.TypeDecorator[Any]):
    """v1's unbounded text: LONGTEXT on MySQL/MariaDB, the dialect's text elsewhere."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            from sqlalchemy.dialects.mysql import LONGTEXT

            return dialect.type_descriptor(LONGTEXT())
        return dialect.type_descriptor(sa.Text())


def upgrade() -> None:
    op.create_table(
        "_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        **_MYSQL_TABLE,
    )
    op.create_table(
        "_tasks",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("server_id", sa.Integer, nullable=False),
        sa.Column("service_name", sa.String(191), nullable=False),
        sa.Column("task_name", sa.String(191), nullable=False),
        sa.Column("queue_name", sa.String(100), nullable=False),
        sa.Column("execution_mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", _LongText(), nullable=False),
        sa.Column("result", _LongText(), nullable=True),
        sa.Column("status_data", _LongText(), nullable=True),
        sa.Column("status_log", _LongText(), nullable=True),
        sa.Column("scheduled_at", _Timestamp(), nullable=True),
        sa.Column("next_run_at", _Timestamp(), nullable=True),
        sa.Column("started_at", _Timestamp(), nullable=True),
        sa.Column("completed_at", _Timestamp(), nullable=True),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("worker_pid", sa.Integer, nullable=True),
        sa.Column("has_temp_directory", sa.Boolean, nullable=False),
        sa.Column("temp_expires_at", _Timestamp(), nullable=True),
        sa.Column("created_at", _Timestamp(), nullable=False),
        sa.Column("updated_at", _Timestamp(), nullable=False),
        sa.Column("schedule_key", sa.String(191), nullable=True, unique=True),
        sa.Column("worker_started", sa.Double, nullable=True),
        sa.Column("temp_ttl_seconds", sa.Integer, nullable=True),
        **_MYSQL_TABLE,
    )
    op.create_index("ix__tasks_claim", "_tasks", ["queue_name", "status", "id"])
    op.create_index("ix__tasks_status", "_tasks", ["status", "server_id"])
    op.create_index("ix__tasks_service_task", "_tasks", ["service_name", "task_name", "status"])
    op.create_index("ix__tasks_temp_expiry", "_tasks", ["server_id", "temp_expires_at"])
    op.create_table(
        "_workers",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("server_id", sa.Integer, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("process_started", sa.Double, nullable=False),
        sa.Column("queue_name", sa.String(100), nullable=False),
        sa.Column("heartbeat_at", _Timestamp(), nullable=False),
        sa.Column("created_at", _Timestamp(), nullable=False),
        sa.Column("current_task_id", sa.BigInteger, nullable=True),
        **_MYSQL_TABLE,
    )
    op.create_index("ix__workers_server_queue", "_workers", ["server_id", "queue_name"])
    meta = sa.table("_meta", sa.column("key"), sa.column("value"))
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    op.drop_table("_workers")
    op.drop_table("_tasks")
    op.drop_table("_meta")

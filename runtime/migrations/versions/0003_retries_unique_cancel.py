"""attempts, unique_key and cancel_requested_at for retries, unique tasks and cancellation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- `_tasks.attempts` INTEGER NOT NULL DEFAULT 0: how many times a worker has started the
  task (a retried task keeps its row and counts up).
- `_tasks.unique_key` VARCHAR(191) NULL with the UNIQUE index `ux__tasks_unique_key`
  (partial, `WHERE unique_key IS NOT NULL`, on SQLite and PostgreSQL; MySQL/MariaDB allow
  any number of NULLs in a unique index): a unique task's key while it holds it, so the
  database itself refuses a second equal pending task.
- `_tasks.cancel_requested_at` timestamp NULL: when a cancel was asked of a running task.

Existing rows get `attempts = 0` (a finished task's count is not known) and NULL in the
others. Every step first looks whether it is already done, so a run interrupted on
MySQL/MariaDB (where each DDL statement commits by itself) is completed by the next one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

UNIQUE_KEY_INDEX = "ux__tasks_unique_key"
HAS_UNIQUE_KEY = "unique_key IS NOT NULL"


def upgrade() -> None:
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("_tasks")}
    added: list[sa.Column[Any]] = [
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("unique_key", sa.String(191), nullable=True),
        sa.Column("cancel_requested_at", _timestamp(bind), nullable=True),
    ]
    missing = [column for column in added if column.name not in columns]
    if missing:
        with op.batch_alter_table("_tasks") as batch:
            for column in missing:
                batch.add_column(column)
    if not _has_index(bind, UNIQUE_KEY_INDEX):
        where: dict[str, Any] = {}
        if bind.dialect.name in ("sqlite", "postgresql"):
            where[f"{bind.dialect.name}_where"] = sa.text(HAS_UNIQUE_KEY)
        op.create_index(UNIQUE_KEY_INDEX, "_tasks", ["unique_key"], unique=True, **where)


def downgrade() -> None:
    raise NotImplementedError(
        "revision 0003 is not reversible: restore the backup taken before upgrading"
    )


def _timestamp(bind: Connection) -> sa.types.TypeEngine[Any]:
    """The timestamp type of the other `_tasks` timestamps on this database."""
    if bind.dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import DATETIME

        return DATETIME(fsp=6)
    return sa.DateTime(timezone=bind.dialect.name == "postgresql")


def _has_index(bind: Connection, name: str) -> bool:
    return any(i["name"] == name for i in sa.inspect(bind).get_indexes("_tasks"))

"""native JSON and timestamp types, worker_id, partial claim index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

- `_tasks.worker_id` BIGINT NULL is added and `_workers.current_task_id` dropped: a
  task names the worker that claimed it, instead of the worker naming its task.
- `ix__tasks_claim` becomes partial, `WHERE status = 'pending' AND schedule_key IS NULL`
  (the claim's whole condition), on SQLite and PostgreSQL.
- `ix__tasks_status (status, server_id)` becomes `ix__tasks_status_completed (status,
  completed_at)`: the sweep reads the few running rows either way, and the operator views
  and the cleanup read ended rows by time.
- The UNIQUE constraint of `schedule_key` becomes the index `ux__tasks_schedule_key`,
  partial (`WHERE schedule_key IS NOT NULL`) on SQLite and PostgreSQL, so that no planner
  takes it for a claim's `schedule_key IS NULL` (SQLite scanned every ordinary row).
- PostgreSQL: `params`, `result` and `status_data` become `jsonb`, and the timestamps of
  `_tasks` and `_workers` `timestamptz` (stored values are naive UTC); one ALTER TABLE per
  table, so each is rewritten once.
- MySQL/MariaDB: `params`, `result` and `status_data` become `JSON`.
- `_meta` is dropped: the revision lives in `_tasks_alembic_version`.

Every step first looks whether it is already done and is skipped if so. On MySQL/MariaDB,
where each DDL statement commits by itself, a run killed halfway is completed by the next
one; on PostgreSQL and SQLite the whole upgrade is one transaction, and the checks let a
database made by the runtime between v1 and Alembic (`_meta` version 2, which had the
columns and the index already) be upgraded the same way.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy.engine import Connection

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

JSON_COLUMNS = {"params": False, "result": True, "status_data": True}
"""The JSON columns of `_tasks`, each with whether it is nullable."""
TIMESTAMPS = {
    "_tasks": (
        "scheduled_at",
        "next_run_at",
        "started_at",
        "completed_at",
        "temp_expires_at",
        "created_at",
        "updated_at",
    ),
    "_workers": ("heartbeat_at", "created_at"),
}
NUL_ESCAPE = r"(^|[^\\])(\\\\)*\\u0000"
"""A JSON text's `\\u0000` escape (not an escaped backslash before `u0000`), as a regex."""
CLAIM_COLUMNS = ["queue_name", "status", "id"]
PENDING = "status = 'pending' AND schedule_key IS NULL"
SCHEDULE_KEY_INDEX = "ux__tasks_schedule_key"
HAS_KEY = "schedule_key IS NOT NULL"
UNIQUE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""Names for SQLite's unnamed UNIQUE constraints, so batch mode can drop the old one."""


def upgrade() -> None:
    bind = op.get_bind()
    if not _has_index(bind, "ix__tasks_status_completed"):
        op.create_index("ix__tasks_status_completed", "_tasks", ["status", "completed_at"])
    if _has_index(bind, "ix__tasks_status"):
        op.drop_index("ix__tasks_status", table_name="_tasks")
    if bind.dialect.name == "sqlite":
        _upgrade_sqlite(bind)
    elif bind.dialect.name == "postgresql":
        _upgrade_postgresql(bind)
    else:
        _upgrade_mysql(bind)
    if sa.inspect(bind).has_table("_meta"):
        op.drop_table("_meta")


def downgrade() -> None:
    raise NotImplementedError(
        "revision 0002 is not reversible: restore the backup taken before upgrading"
    )


def _columns(bind: Connection, table: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in sa.inspect(bind).get_columns(table)}


def _claim_index_is_partial(bind: Connection, where_key: str) -> bool:
    """Whether `ix__tasks_claim` already has the whole claim condition as its predicate."""
    for index in sa.inspect(bind).get_indexes("_tasks"):
        if index["name"] == "ix__tasks_claim":
            where = index.get("dialect_options", {}).get(where_key)
            return where is not None and "schedule_key" in str(where)
    return False


def _old_unique_schedule_key(bind: Connection) -> str | None:
    """The v1 UNIQUE constraint (or MySQL unique key) of `schedule_key`, if still there:
    its name (`""` for SQLite's unnamed one)."""
    inspector = sa.inspect(bind)
    found = [
        *inspector.get_unique_constraints("_tasks"),
        *(i for i in inspector.get_indexes("_tasks") if i["unique"]),
    ]
    for entry in found:
        if entry["column_names"] == ["schedule_key"] and entry["name"] != SCHEDULE_KEY_INDEX:
            return entry["name"] or ""
    return None


def _has_index(bind: Connection, name: str) -> bool:
    return any(i["name"] == name for i in sa.inspect(bind).get_indexes("_tasks"))


def _upgrade_sqlite(bind: Connection) -> None:
    """Batch mode: `_tasks` gains a column and its indexes in place, and is copied into a
    new table only to lose the v1 UNIQUE constraint; `_workers` loses a column, for which
    Alembic copies it too (its index comes along)."""
    tasks = _columns(bind, "_tasks")
    partial = _claim_index_is_partial(bind, "sqlite_where")
    if _old_unique_schedule_key(bind) is not None:
        with op.batch_alter_table(
            "_tasks", recreate="always", naming_convention=UNIQUE_NAMES
        ) as batch:
            batch.drop_constraint("uq__tasks_schedule_key", type_="unique")
    if not _has_index(bind, SCHEDULE_KEY_INDEX):
        op.create_index(
            SCHEDULE_KEY_INDEX, "_tasks", ["schedule_key"], unique=True,
            sqlite_where=sa.text(HAS_KEY),
        )
    with op.batch_alter_table("_tasks") as batch:
        if "worker_id" not in tasks:
            batch.add_column(sa.Column("worker_id", sa.BigInteger(), nullable=True))
        if not partial:
            batch.drop_index("ix__tasks_claim")
            batch.create_index("ix__tasks_claim", CLAIM_COLUMNS, sqlite_where=sa.text(PENDING))
    if "current_task_id" in _columns(bind, "_workers"):
        with op.batch_alter_table("_workers") as batch:
            batch.drop_column("current_task_id")


def _upgrade_postgresql(bind: Connection) -> None:
    from sqlalchemy.dialects.postgresql import JSONB

    tasks = _columns(bind, "_tasks")
    if "worker_id" not in tasks:
        op.add_column("_tasks", sa.Column("worker_id", sa.BigInteger(), nullable=True))
    if "current_task_id" in _columns(bind, "_workers"):
        op.drop_column("_workers", "current_task_id")
    for table, stamps in TIMESTAMPS.items():
        columns = _columns(bind, table)
        changes = []
        if table == "_tasks":
            text_json = [n for n in JSON_COLUMNS if not isinstance(columns[n]["type"], JSONB)]
            _refuse_nul(bind, text_json)
            changes += [f"ALTER COLUMN {n} TYPE jsonb USING {n}::jsonb" for n in text_json]
        changes += [
            f"ALTER COLUMN {name} TYPE timestamptz USING {name} AT TIME ZONE 'UTC'"
            for name in stamps
            if not getattr(columns[name]["type"], "timezone", False)
        ]
        if changes:
            op.execute(f"ALTER TABLE {table} " + ", ".join(changes))
    if not _claim_index_is_partial(bind, "postgresql_where"):
        op.drop_index("ix__tasks_claim", table_name="_tasks")
        op.create_index(
            "ix__tasks_claim", "_tasks", CLAIM_COLUMNS, postgresql_where=sa.text(PENDING)
        )
    old = _old_unique_schedule_key(bind)
    if old is not None:
        op.execute(f'ALTER TABLE _tasks DROP CONSTRAINT IF EXISTS "{old}"')
    if not _has_index(bind, SCHEDULE_KEY_INDEX):
        op.create_index(
            SCHEDULE_KEY_INDEX, "_tasks", ["schedule_key"], unique=True,
            postgresql_where=sa.text(HAS_KEY),
        )


def _refuse_nul(bind: Connection, names: list[str]) -> None:
    """Stop, naming the rows, if a JSON column holds `\\u0000`, which `jsonb` cannot store
    (the conversion would fail with no hint of where)."""
    if not names:
        return
    found = bind.execute(
        sa.text(
            "SELECT id FROM _tasks WHERE "
            + " OR ".join(f"{name} ~ :nul" for name in names)
            + " ORDER BY id LIMIT 10"
        ),
        {"nul": NUL_ESCAPE},
    ).scalars()
    ids = [str(i) for i in found]
    if ids:
        raise CommandError(
            f"_tasks rows {', '.join(ids)} hold \\u0000 in params, result or status_data, "
            "which jsonb cannot store: change or delete those rows, then migrate again"
        )


def _upgrade_mysql(bind: Connection) -> None:
    if not _has_index(bind, SCHEDULE_KEY_INDEX):
        op.create_index(SCHEDULE_KEY_INDEX, "_tasks", ["schedule_key"], unique=True)
    old = _old_unique_schedule_key(bind)
    if old:
        op.drop_index(old, table_name="_tasks")
    tasks = _columns(bind, "_tasks")
    if "worker_id" not in tasks:
        op.add_column("_tasks", sa.Column("worker_id", sa.BigInteger(), nullable=True))
    if "current_task_id" in _columns(bind, "_workers"):
        op.drop_column("_workers", "current_task_id")
    changes = [
        f"MODIFY {name} JSON {'NULL' if nullable else 'NOT NULL'}"
        for name, nullable in JSON_COLUMNS.items()
        if not _is_mysql_json(bind, name)
    ]
    if changes:
        op.execute("ALTER TABLE _tasks " + ", ".join(changes))


def _is_mysql_json(bind: Connection, name: str) -> bool:
    """Whether `_tasks.<name>` is JSON: its type on MySQL; on MariaDB, where JSON is
    LONGTEXT, the `JSON_VALID` check constraint that JSON adds."""
    if getattr(bind.dialect, "is_mariadb", False):
        query = sa.text(
            "SELECT COUNT(*) FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = '_tasks' "
            "AND CHECK_CLAUSE = :clause"
        )
        return bool(bind.execute(query, {"clause": f"json_valid(`{name}`)"}).scalar())
    query = sa.text(
        "SELECT DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_tasks' AND COLUMN_NAME = :name"
    )
    return str(bind.execute(query, {"name": name}).scalar()).lower() == "json"

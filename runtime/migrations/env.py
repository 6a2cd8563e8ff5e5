"""Alembic's environment: migrate the connection `runtime.migrate` passes in.

`config.attributes` carries `connection` (a SQLAlchemy connection, possibly inside the
transaction that holds the whole upgrade) and `on_version_apply` (callbacks told of each
revision as it is recorded). Offline (`--sql`) runs are not supported: the revisions
inspect the database to skip steps that are already done.
"""

from __future__ import annotations

from alembic import context

from runtime.schema import VERSION_TABLE

_connection = context.config.attributes.get("connection")
if _connection is None:
    raise RuntimeError("the task migrations run through: python -m runtime.migrate")

context.configure(
    connection=_connection,
    version_table=VERSION_TABLE,
    on_version_apply=context.config.attributes.get("on_version_apply", ()),
)
with context.begin_transaction():
    context.run_migrations()

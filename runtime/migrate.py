"""`python -m runtime.migrate [--dry-run] [--config PATH]`: bring the task tables up to date.

Applies, in order, the Alembic revisions of `runtime/migrations` that the database has not
had, printing one line per revision (`0002 native JSON and timestamp types, ...`), or
`database is up to date (revision 0003)`. A database from before Alembic (v1, versioned
in `_meta`) is first recorded at revision 0001, which describes it. An empty database gets
the current tables, as the first store call would make them.

The whole run holds the schema lock that table creation takes (`rsx_schema`), so that
migrations started at once on several servers run one after another and the later ones
find nothing to do: a session `pg_advisory_lock` on PostgreSQL, `GET_LOCK` on
MySQL/MariaDB, SQLite's write lock (`BEGIN IMMEDIATE`) on SQLite. On PostgreSQL and SQLite
the upgrade is one transaction; MySQL/MariaDB commits each DDL statement, and each step
of a revision checks whether it is done, so rerunning completes an interrupted upgrade.

This is the only module that imports Alembic; processors, workers and dispatching never do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from runtime.cli import Parser, run_command
from runtime.config import load_config
from runtime.errors import BackendError
from runtime.schema import SCHEMA_REVISION, SCHEMA_REVISIONS
from runtime.store.base import StoreBase, check_revision, create_schema, stored_revision
from runtime.urls import masked_url

if TYPE_CHECKING:
    from alembic.config import Config

PROG = "python -m runtime.migrate"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK = "rsx_schema"
LOCK_WAIT_S = 600
"""How long a migration waits for another one holding the schema lock."""
BEFORE_ALEMBIC = "0001"
"""The revision a database versioned by `_meta` (v1, v2) is recorded at before upgrading."""


def alembic_config(connection: Connection | None = None, **attributes: Any) -> Config:
    """The Alembic configuration of the task tables: no ini file, `runtime/migrations` as
    the script location, `connection` and any other `attributes` for `env.py`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


def pending_revisions(current: str) -> list[tuple[str, str]]:
    """`(revision, description)` of each revision after `current` up to the head, in order."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    steps = list(script.iterate_revisions("head", current))
    return [(step.revision, step.doc) for step in reversed(steps) if step.revision != current]


def migrate(store: StoreBase, dry_run: bool = False, say: Callable[[str], None] = print) -> int:
    """Upgrade the store's database to `SCHEMA_REVISION` (see the module doc); exit status."""
    with _locked(store) as conn:
        revision = stored_revision(conn)
        if revision is None:
            if not dry_run:
                create_schema(conn)
            say(f"{'would create' if dry_run else 'created'} the task tables "
                f"(revision {SCHEMA_REVISION})")
            return 0
        start = BEFORE_ALEMBIC if revision in ("v1", "v2") else revision
        if start not in SCHEMA_REVISIONS:
            check_revision(store.url, revision)
        pending = pending_revisions(start)
        if not pending:
            say(f"database is up to date (revision {revision})")
            return 0
        if dry_run:
            for number, doc in pending:
                say(f"{number} {doc} (dry run: not applied)")
            return 0
        if store.backend.name == "mysql":
            # DDL commits by itself there: let Alembic commit each revision as it goes.
            conn.commit()
        _upgrade(conn, stamp=start if start != revision else None, say=say)
    return 0


def _upgrade(conn: Connection, stamp: str | None, say: Callable[[str], None]) -> None:
    from alembic import command

    def applied(*, step: Any, **_: Any) -> None:
        if step.is_upgrade and not step.is_stamp:
            say(f"{step.up_revision_id} {step.up_revision.doc}")

    config = alembic_config(conn, on_version_apply=[applied])
    if stamp is not None:
        command.stamp(config, stamp)
    command.upgrade(config, "head")


@contextmanager
def _locked(store: StoreBase) -> Iterator[Connection]:
    """A connection holding the schema lock for the whole run; what the run left
    uncommitted is committed when it returns, and rolled back when it raises."""
    engine = store.engine
    name = store.backend.name
    if name == "sqlite":
        _wait_longer_on_sqlite(engine)
        with store.backend.write(engine) as conn:
            yield conn
    elif name == "postgresql":
        from runtime.backends.postgresql import lock_key

        key = lock_key(LOCK)
        with engine.connect() as conn:
            with conn.begin():
                conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT_S}s'"))
                conn.execute(select(func.pg_advisory_lock(key)))
            try:
                yield conn
                if conn.in_transaction():
                    conn.commit()
            finally:
                _unlock(conn, select(func.pg_advisory_unlock(key)))
    else:
        from runtime.backends.mysql import lock_name

        lock = lock_name(engine.url.database, LOCK)
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": lock, "wait": LOCK_WAIT_S}
            ).scalar()
            conn.commit()
            if got != 1:
                raise BackendError(
                    f"database {masked_url(store.url)}: gave up after {LOCK_WAIT_S} s "
                    "waiting for another migration (lock 'rsx_schema')"
                )
            try:
                yield conn
                if conn.in_transaction():
                    conn.commit()
            finally:
                _unlock(conn, text("SELECT RELEASE_LOCK(:name)").bindparams(name=lock))


def _unlock(conn: Connection, statement: Any) -> None:
    """Release a session lock; on failure close the session, which releases it too."""
    try:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(statement)
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()


def _wait_longer_on_sqlite(engine: Engine) -> None:
    """Let this run's connections wait `LOCK_WAIT_S` for SQLite's write lock."""

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_S * 1000}")
        cursor.close()


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog=PROG, description="Upgrade the task tables to this runtime's schema."
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the migrations to apply; change nothing"
    )
    parser.add_argument("--config", help="path of rsx.toml (default: found from here upward)")
    args = parser.parse_args(argv)

    def body() -> int:
        store = StoreBase(load_config(args.config))
        try:
            return migrate(store, dry_run=args.dry_run)
        except SQLAlchemyError as exc:
            raise store.backend_error(exc) from None
        except BackendError:
            raise
        except Exception as exc:
            from alembic.util import CommandError

            if isinstance(exc, CommandError):
                raise store.backend_error(exc) from None
            raise
        finally:
            store.dispose()

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

"""The database-specific pieces of the store, behind one small interface.

Everything the store does is portable SQLAlchemy Core except four things, which each
backend supplies: how the engine is made, how a write transaction is serialised with the
others that must not interleave (claiming a task, registering a worker), how the next
claimable row is picked inside such a transaction, and how a waiter learns that something
changed. SQLite is implemented here; PostgreSQL and MySQL/MariaDB subclass `Backend` in
their own modules and are picked by `backend_for` from the URL's dialect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, select
from sqlalchemy.engine import make_url

from runtime.schema import tasks


class Backend:
    """What differs between databases; the defaults are plain, portable SQL.

    `write(engine, lock)` yields a connection inside a transaction that is serialised with
    every other `write` holding the same `lock` name (SQLite serialises all writers, so
    the name only matters to servers with advisory locks). `claimable(queue)` is the
    SELECT of the next task a worker may take, run inside that transaction.
    """

    name = "generic"

    def create_engine(self, url: str) -> Engine:
        """A lazily connecting engine for `url`."""
        from sqlalchemy import create_engine

        return create_engine(url, pool_pre_ping=True)

    @contextmanager
    def write(self, engine: Engine, lock: str) -> Iterator[Connection]:
        """A transaction serialised with other writers of `lock`; commits on success."""
        with engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self, engine: Engine) -> Iterator[Connection]:
        """A connection for reads that never blocks writers."""
        with engine.connect() as conn:
            yield conn

    def claimable(self, queue: str) -> Select[Any]:
        """The id of the oldest pending, non-upcoming task of `queue` (FIFO by id)."""
        return (
            select(tasks.c.id)
            .where(
                tasks.c.queue_name == queue,
                tasks.c.status == "pending",
                tasks.c.schedule_key.is_(None),
            )
            .order_by(tasks.c.id)
            .limit(1)
        )

    def notify(self, conn: Connection, channel: str) -> None:
        """Tell waiters on `channel` that something changed (after commit); default: no-op."""

    def wait(self, conn: Connection, channel: str, timeout: float) -> None:
        """Block until `channel` may have changed or `timeout` passes; default: poll."""
        time.sleep(min(timeout, 0.2))

    def is_already_exists(self, exc: BaseException) -> bool:
        """Whether a CREATE failed only because a racing process created the object first."""
        text = str(getattr(exc, "orig", exc)).lower()
        return "already exists" in text or "duplicate" in text


def backend_for(url: str) -> Backend:
    """The backend of a SQLAlchemy URL's dialect (`sqlite`, `postgresql`, `mysql`, ...)."""
    dialect = make_url(url).get_backend_name()
    if dialect == "sqlite":
        from runtime.backends.sqlite import SQLiteBackend

        return SQLiteBackend()
    if dialect in ("postgresql", "postgres"):
        from runtime.backends.postgresql import PostgreSQLBackend

        return PostgreSQLBackend()
    if dialect in ("mysql", "mariadb"):
        from runtime.backends.mysql import MySQLBackend

        return MySQLBackend()
    return Backend()

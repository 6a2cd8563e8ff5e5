"""The database-specific pieces of the store, behind one small interface.

Everything the store does is portable SQLAlchemy Core except what each backend supplies:
how the engine is made; how a write transaction is serialised with the others that must
not interleave (registering a worker, creating the tables); how the next task is claimed;
how a waiter learns that something changed; and what a driver error means (`classify`,
from the driver's error codes, never from message text). SQLite, PostgreSQL and
MySQL/MariaDB each subclass `Backend` in their own module; `backend_for` picks one from the
URL's dialect, and any other database is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Select, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from runtime.schema import claimable, tasks
from runtime.state import Status


class Failure(StrEnum):
    """What a database error means to the store, decided by each backend from codes."""

    DEADLOCK = "deadlock"
    """The transaction was aborted to break a deadlock or a serialisation conflict."""
    LOCK_TIMEOUT = "lock timeout"
    """A lock wait ran past the backend's limit: a holder is hung."""
    DISCONNECT = "disconnect"
    """The connection was lost; a transaction not yet committing was rolled back."""
    DUPLICATE_KEY = "duplicate key"
    """A UNIQUE or PRIMARY KEY constraint refused the row."""
    OTHER = "other"
    """Anything else: a bug, bad data, a full disk, a permission."""

    @property
    def worth_retrying(self) -> bool:
        """Whether running the whole transaction again on a fresh connection is safe."""
        return self in (Failure.DEADLOCK, Failure.DISCONNECT)


class UnsupportedDatabase(ValueError):
    """Raised for a URL whose dialect has no backend: its write serialisation is unknown."""


class Backend:
    """What differs between databases.

    `write(engine, lock)` yields a connection inside a transaction; with a `lock` name it
    is serialised with every other `write` of that name (SQLite serialises all writers).
    `claim(conn, queue, values)` takes the queue's oldest claimable task for a worker
    inside the caller's transaction and returns its row.
    """

    name = "generic"

    def create_engine(self, url: str) -> Engine:
        """A lazily connecting engine for `url`."""
        raise NotImplementedError

    @contextmanager
    def write(self, engine: Engine, lock: str | None = None) -> Iterator[Connection]:
        """A transaction, serialised with other writers of `lock`; commits on success."""
        with engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self, engine: Engine) -> Iterator[Connection]:
        """A connection for reads that never blocks writers."""
        with engine.connect() as conn:
            yield conn

    def claimable(self, queue: str) -> Select[Any]:
        """The oldest pending, non-upcoming task of `queue` (FIFO by id)."""
        return select(tasks).where(claimable(queue)).order_by(tasks.c.id).limit(1)

    def claim(
        self, conn: Connection, queue: str, values: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """Mark the queue's oldest claimable task running with `values`; its row, or None.

        The default is one `UPDATE ... WHERE id = (oldest) RETURNING *`, which SQLite (its
        single writer) and PostgreSQL (`FOR UPDATE SKIP LOCKED` in `claimable`) make safe.
        """
        oldest = self.claimable(queue).with_only_columns(tasks.c.id).scalar_subquery()
        statement = (
            update(tasks)
            .where(tasks.c.id == oldest, tasks.c.status == Status.PENDING.value)
            .values(**values)
            .returning(*tasks.c)
        )
        row = conn.execute(statement).first()
        return None if row is None else dict(row._mapping)

    def insert_tasks(
        self, conn: Connection, queue: str, rows: Sequence[Mapping[str, Any]], channel: str
    ) -> list[int]:
        """Insert task rows of `queue` and notify `channel`; their ids, in order."""
        if len(rows) == 1:
            key = conn.execute(insert(tasks).values(**rows[0])).inserted_primary_key
            assert key is not None
            ids = [int(key[0])]
        else:
            statement = insert(tasks).returning(tasks.c.id, sort_by_parameter_order=True)
            ids = [int(i) for i in conn.execute(statement, list(rows)).scalars()]
        self.notify(conn, channel)
        return ids

    def notify(self, conn: Connection, channel: str) -> None:
        """Tell waiters on `channel` that something changed (after commit); default: no-op."""

    def wait(self, conn: Connection, channel: str, timeout: float) -> None:
        """Block until `channel` may have changed or `timeout` passes; default: a short poll."""
        time.sleep(min(timeout, self.poll_interval))

    poll_interval = 0.2
    """How often a waiter without a change signal looks again, in seconds."""

    failures: Mapping[object, Failure] = {}
    """What each of the driver's error codes means (see `error_code`)."""

    def error_code(self, exc: DBAPIError) -> object:
        """The driver's code for an error (SQLSTATE, errno, SQLite result code)."""
        return None

    def classify(self, exc: DBAPIError) -> Failure:
        """What a driver error means, from its error code."""
        if exc.connection_invalidated:
            return Failure.DISCONNECT
        return self.failures.get(self.error_code(exc), Failure.OTHER)


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
    raise UnsupportedDatabase(
        f"database {dialect!r} is not supported: use sqlite://, postgresql:// or mysql:// "
        "(the worker limits depend on each database's own locks)"
    )

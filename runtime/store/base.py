"""The store's foundation: the engine, transactions, the retry policy and error messages.

Every method of the store that touches the database is wrapped by `guarded`, the one
retry policy: a transaction the database aborted as a deadlock victim, or whose connection
was lost before it began committing, is run again on a fresh connection (it was rolled
back whole, so that is safe whatever it writes), at most `ATTEMPTS` times in all. Any
other database failure leaves the store as one `BackendError` line naming the URL without
its password. A connection lost *during* COMMIT is never retried: the outcome is unknown,
and a retried INSERT could dispatch twice.

A process that forks (gunicorn `--preload`, `multiprocessing`) gives its child a copy of
every pooled connection, whose socket the parent still uses. Every store therefore drops
its pools in the child right after a fork, without closing the parent's sessions, so the
child makes its own connections on first use.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, column, insert, inspect, select, table
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from runtime.backends import Backend, Failure, UnsupportedDatabase, backend_for
from runtime.config import Config
from runtime.errors import BackendError
from runtime.schema import (
    SCHEMA_REVISION,
    SCHEMA_REVISIONS,
    VERSION_TABLE,
    metadata,
    version_table,
)
from runtime.store.fast import HeldConnections, Prepared, raw_transaction
from runtime.urls import masked_url, redact

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="StoreBase")

# How many times in all a store call runs when its transaction is aborted as a deadlock
# victim or loses its connection before committing.
ATTEMPTS = 3


def guarded(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Apply the store's retry policy (see the module doc) to a store method."""

    @wraps(method)
    def wrapper(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return method(store, *args, **kwargs)
            except DBAPIError as exc:
                failure = store.backend.classify(exc)
                if not failure.worth_retrying or attempt == ATTEMPTS:
                    raise store.backend_error(exc, failure) from None
            except SQLAlchemyError as exc:
                raise store.backend_error(exc) from None
        raise AssertionError("unreachable")

    return wrapper


class StoreBase:
    """Access to the task tables of one database, for one server: connections and errors.

    Creating a store does nothing; the engine is made and the tables created on first use.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = config.database_url
        self.server_id = config.server_id
        self._engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._backend: Backend | None = None
        self._held: HeldConnections | None = None
        self._held_reads: HeldConnections | None = None
        self._schema_ready = False
        _stores.add(self)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            try:
                self._backend = backend_for(self.url)
            except ArgumentError:
                raise BackendError("database_url is not a valid SQLAlchemy URL") from None
            except UnsupportedDatabase as exc:
                raise BackendError(str(exc)) from None
        return self._backend

    @property
    def engine(self) -> Engine:
        """The engine of transactions, made on first use (no connection until a query)."""
        if self._engine is None:
            self._engine = self._create_engine(autocommit=False)
        return self._engine

    @property
    def read_engine(self) -> Engine:
        """The engine of reads: each statement commits on its own, so a read is one round
        trip, with no BEGIN or ROLLBACK around it."""
        if self._read_engine is None:
            self._read_engine = self._create_engine(autocommit=True)
        return self._read_engine

    def _create_engine(self, autocommit: bool) -> Engine:
        try:
            if self.backend.name == "sqlite":
                _private_database_file(self.url)
            return self.backend.create_engine(self.url, autocommit=autocommit)
        except (ArgumentError, NoSuchModuleError, ImportError, OSError) as exc:
            raise BackendError(f"cannot use database {masked_url(self.url)}: {exc}") from None

    def dispose(self, close: bool = True) -> None:
        """Drop pooled connections (before a fork, `close=True`; in the child, `False`)."""
        for engine in (self._engine, self._read_engine):
            if engine is not None:
                engine.dispose(close=close)
        if not close:
            # A forked child keeps the parent's held connections referenced for good: were
            # they collected, the pool would reset (roll back) them on the parent's socket.
            _inherited.extend(held for held in (self._held, self._held_reads) if held)
        self._held = self._held_reads = None

    def backend_error(self, exc: BaseException, failure: Failure | None = None) -> BackendError:
        """A one-line `BackendError` for a database failure, without the password."""
        original = getattr(exc, "orig", None) or exc
        text = str(original).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if failure is Failure.LOCK_TIMEOUT:
            reason = f"gave up waiting for a lock ({reason})"
        return BackendError(f"database {masked_url(self.url)}: {redact(reason, self.url)}")

    @contextmanager
    def write(self, lock: str | None = None) -> Iterator[Connection]:
        """A write transaction, serialised with other holders of `lock` when one is named.

        A connection lost while committing is a `BackendError` saying the write may or may
        not have been saved, so that no caller retries it blindly.
        """
        self.ensure_schema()
        committing = False
        try:
            with self.backend.write(self.engine, lock) as conn:
                yield conn
                committing = True
        except DBAPIError as exc:
            if committing and exc.connection_invalidated:
                raise BackendError(
                    f"{self.backend_error(exc)} (the connection was lost while committing; "
                    "the change may or may not have been saved)"
                ) from None
            raise

    def raw_write(self) -> AbstractContextManager[Any]:
        """A write transaction on a driver connection, yielding a cursor, for the hot path's
        prepared statements (`runtime.store.fast`)."""
        self.ensure_schema()
        if self._held is None:
            self._held = HeldConnections(self.engine)
        return raw_transaction(self._held, self.backend_error, self.backend.begin_raw)

    def raw_autocommitted_write(self) -> AbstractContextManager[Any]:
        """A cursor on this thread's autocommit driver connection (the reads') for one
        write statement that commits as it runs: one round trip where `raw_write` takes
        two (the statement and its COMMIT). A connection lost during it is a
        `BackendError` saying the write may or may not have been saved."""
        self.ensure_schema()
        if self._held_reads is None:
            self._held_reads = HeldConnections(self.read_engine)
        return raw_transaction(
            self._held_reads, self.backend_error, None, dropped=self.backend.dropped
        )

    def raw_read(self) -> AbstractContextManager[Any]:
        """A cursor on an autocommit driver connection, for the hot path's prepared reads."""
        self.ensure_schema()
        if self._held_reads is None:
            self._held_reads = HeldConnections(self.read_engine)
        return raw_transaction(self._held_reads, self.backend_error, None)

    def compile(self, key: Hashable, build: Callable[[], Any]) -> Prepared:
        """The `Prepared` form of the statement `build` makes, compiled once per `key`."""
        return self.backend.prepared(("raw", key), lambda: Prepared(build(), self.engine.dialect))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (autocommit), tables ensured first."""
        self.ensure_schema()
        with self.backend.read(self.read_engine) as conn:
            yield conn

    def wait_for_change(self, conn: Connection, channel: str, timeout: float) -> None:
        """Block until the database may have changed on `channel`, at most `timeout` s."""
        self.backend.wait(conn, channel, timeout)

    @guarded
    def ensure_schema(self) -> None:
        """Create the tables on an empty database, or check that they are at this runtime's
        revision; `BackendError` naming the way out otherwise (see `check_revision`).

        Runs once per store, costs two small queries, and never imports Alembic. Creating
        takes the backend's `rsx_schema` lock and looks again under it, so processes racing
        on an empty database create the tables once; the revision row is written last, so
        an interrupted creation (MySQL commits each CREATE) is completed by the next user.
        """
        if self._schema_ready:
            return
        with self.backend.read(self.read_engine) as conn:
            revision = stored_revision(conn)
        if revision is None:
            with self.backend.write(self.engine, "rsx_schema") as conn:
                revision = stored_revision(conn)
                if revision is None:
                    create_schema(conn)
                    revision = SCHEMA_REVISION
        check_revision(self.url, revision)
        self._schema_ready = True


_META = table("_meta", column("key"), column("value"))
"""The version table of the task schema before Alembic (v1), read to recognise it."""


def stored_revision(conn: Connection) -> str | None:
    """The task schema's revision as the database records it.

    An Alembic revision id from `_tasks_alembic_version`; `v1` or `v2` for a database
    versioned by the `_meta` table that came before it (`v<value>`, and `v1` when the
    table has no row yet); None when neither records anything, which is an empty
    database or a creation of the current tables that was interrupted.
    """
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        found = sorted(conn.execute(select(version_table.c.version_num)).scalars())
        if found:
            return "+".join(found)
    if "_meta" in names:
        value = conn.execute(select(_META.c.value).where(_META.c.key == "schema_version"))
        return f"v{value.scalar() or 1}"
    return None


def create_schema(conn: Connection) -> None:
    """Create whatever current tables are missing, then record `SCHEMA_REVISION` (last)."""
    metadata.create_all(conn, checkfirst=True)
    version_table.create(conn, checkfirst=True)
    conn.execute(insert(version_table).values(version_num=SCHEMA_REVISION))


def check_revision(url: str, revision: str) -> None:
    """Nothing if `revision` is this runtime's; else a one-line `BackendError` saying that
    the database must be migrated (older) or the runtime upgraded (newer or unknown)."""
    if revision == SCHEMA_REVISION:
        return
    if revision in SCHEMA_REVISIONS[:-1] or revision in ("v1", "v2"):
        raise BackendError(
            f"database {masked_url(url)} has an older task schema ({revision}); "
            "run: python -m runtime.migrate"
        )
    raise BackendError(
        f"database {masked_url(url)} has task schema revision {revision}, which this "
        f"runtime (revision {SCHEMA_REVISION}) does not know: the database was upgraded "
        "by a newer runtime; upgrade this one"
    )


_stores: weakref.WeakSet[StoreBase] = weakref.WeakSet()
"""Every store of this process, for `_forget_pools_after_fork`."""


def _forget_pools_after_fork() -> None:
    """In a forked child: give every store new, empty pools; the parent keeps its sessions."""
    for store in list(_stores):
        store.dispose(close=False)


_inherited: list[HeldConnections] = []
"""Held connections a forked child got from its parent, never to be used or collected."""

os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _private_database_file(url: str) -> None:
    """Create a SQLite database file 0600 in a 0700 folder before SQLite does (it would use
    the umask); SQLite gives the `-wal` and `-shm` files the database file's mode."""
    from sqlalchemy.engine import make_url

    from runtime.storage import create_private_file

    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        create_private_file(Path(database))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (for log lines about failed writes)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def inserted_id(result: Any) -> int:
    """The primary key of the row an INSERT added."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])

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

import re
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from runtime.schema import Timestamp, claimable, status_is, tasks, unique_key_after_claim
from runtime.state import Status

T = TypeVar("T")
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")
"""A SELECT of any columns."""
Compile = Callable[[Hashable, Callable[[], Any]], Any]
"""Gives the `runtime.store.fast.Prepared` form of the statement a builder makes, by key."""


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


BATCH_ROWS = 500
"""Rows per INSERT statement of a batch: 12 parameters a row stay far below SQLite's limit
of 32,766 and MariaDB's `max_allowed_packet`."""
_NAMED_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def dispatch_insert() -> Any:
    """`INSERT INTO _tasks (<DISPATCH_COLUMNS>) VALUES (...)`, each value bound as `v_<column>`."""
    return insert(tasks).values({n: bindparam(f"v_{n}") for n in DISPATCH_COLUMNS})


def queue_lock(queue: str) -> str:
    """The name of the lock a dispatch to `queue` holds where inserts take one (PostgreSQL),
    and a worker retiring from it (`WorkerStore.deregister`)."""
    return f"rsx_queue_{queue}"


class Backend:
    """What differs between databases.

    `write(engine, lock)` yields a connection inside a transaction; with a `lock` name it
    is serialised with every other `write` of that name (SQLite serialises all writers).
    `claim(conn, queue, values)` takes the queue's oldest claimable task for a worker
    inside the caller's transaction and returns its row. The statements of the hot path
    are built once per backend and run with parameters, so SQLAlchemy compiles each once.
    """

    name = "generic"
    counts_workers_in_dispatch = False
    """Whether a dispatch's transaction is ordered against a worker retiring from its
    queue, so the dispatch may count the queue's workers inside it: SQLite runs one write
    transaction at a time; PostgreSQL's insert and the retirement both take the queue's
    lock (`queue_lock`)."""
    autocommits_single_dispatch = False
    """Whether a dispatch of one task, its INSERT being one statement (unique or not), is
    sent on an autocommit connection, committing as it runs: one round trip instead of the
    INSERT and its COMMIT. Only where the queue's workers are counted after the commit
    (not `counts_workers_in_dispatch`), since no lock then needs to be held to the count."""

    def create_engine(self, url: str, autocommit: bool = False) -> Engine:
        """A lazily connecting engine for `url`; with `autocommit`, one for reads whose
        statements each commit on their own (no BEGIN/ROLLBACK round trips)."""
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

    def claimable(self, queue: str, due_by: Any = None) -> Select[Any]:
        """The oldest pending, non-upcoming task of `queue` (FIFO by id), due by `due_by`
        when given."""
        return select(tasks).where(claimable(queue, due_by)).order_by(tasks.c.id).limit(1)

    def _oldest(self) -> Select[Any]:
        """The id of the oldest task of the queue bound as `claim_queue` that is claimable
        and due at the time bound as `claim_now`."""
        return self.first_claimable(bindparam("claim_queue", type_=String), claim_now())

    def first_claimable(self, queue: Any, due_by: Any, limit: int = 1) -> Select[Any]:
        """The ids of the queue's oldest claimable tasks due by `due_by`, at most `limit`,
        read as the claim reads them: the claim index in id order (without the order,
        PostgreSQL scanned the whole table for a LIMIT 1 it expected to meet early)."""
        statement = select(tasks.c.id).where(claimable(queue, due_by))
        return self.on_claim_index(statement.order_by(tasks.c.id).limit(limit))

    def on_claim_index(self, statement: Q) -> Q:
        """`statement`, a read of `_tasks` rows of one queue, made to read them through the
        claim index where the planner must be told (MySQL)."""
        return statement

    @cached_property
    def row_notify(self) -> ColumnElement[Any] | None:
        """An expression that, returned by an UPDATE of a task, notifies the task's
        channel (None where the database has no notifications)."""
        return None

    def returning_notify(self, statement: Any) -> Any:
        """`statement` made to notify the changed task's channel, where that is possible."""
        notify = self.row_notify
        return statement if notify is None else statement.returning(tasks.c.id, notify)

    def prepared(self, key: Hashable, build: Callable[[], T]) -> T:
        """The statement `build` makes, built once per backend and `key`."""
        found = self._prepared.get(key)
        if found is None:
            found = self._prepared[key] = build()
        return found

    @cached_property
    def _prepared(self) -> dict[Hashable, Any]:
        return {}

    @cached_property
    def claim_statement(self) -> Any:
        """`UPDATE ... WHERE id = (oldest claimable) RETURNING <CLAIMED_COLUMNS>`, values
        bound as `v_<column>` (and the attempt counted: `attempts = attempts + 1`)."""
        statement = (
            update(tasks)
            .where(tasks.c.id == self._oldest().scalar_subquery(), status_is(Status.PENDING))
            .values(claim_values())
            .values(unique_key=unique_key_after_claim())
            .returning(*(tasks.c[name] for name in CLAIMED_COLUMNS))
        )
        notify = self.row_notify
        return statement if notify is None else statement.returning(notify)

    def begin_raw(self, dbapi_connection: Any) -> None:
        """Start a transaction on a driver connection (drivers other than SQLite's begin
        one implicitly with the first statement)."""

    def dropped(self, dbapi_connection: Any) -> bool:
        """Whether an idle driver connection may have been closed by the server, as far as
        can be told without a round trip (default: no sign)."""
        return False

    def insert_one(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int:
        """Insert one task row through a driver cursor (see `runtime.store.fast`); its id."""
        statement = compile("insert_one", dispatch_insert)
        statement.execute(cursor, row, "v_")
        return int(cursor.lastrowid)

    def insert_unique(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int | None:
        """Insert one task row that holds a unique key (`row["unique_key"]`) through a
        driver cursor, unless another row holds that key; the new row's id, or None when
        the key is taken (the caller then reads which row holds it: `holder_statement`).
        The database decides, in the INSERT itself: no read comes before it."""
        raise NotImplementedError

    @cached_property
    def holder_statement(self) -> Any:
        """The id of the row holding the unique key bound as `b_key`."""
        return select(tasks.c.id).where(tasks.c.unique_key == bindparam("b_key", type_=String))

    def insert_many(
        self, cursor: Any, compile: Compile, queue: str, rows: Sequence[Mapping[str, Any]],
        channel: str,
    ) -> list[int]:
        """Insert a batch of task rows, alike but for their `params`, through a driver
        cursor; their ids, in order.

        The default: multi-row INSERTs of `BATCH_ROWS` rows, the single-row statement's
        VALUES group repeated (named placeholders made positional), each statement's ids
        given by `batch_ids`.
        """
        single = compile("insert_one", dispatch_insert)
        head, group = single.sql.split(" VALUES ")
        names = _NAMED_PLACEHOLDER.findall(group)
        if names:
            group = _NAMED_PLACEHOLDER.sub("%s", group)
        ids: list[int] = []
        for start in range(0, len(rows), BATCH_ROWS):
            chunk = rows[start : start + BATCH_ROWS]
            params: list[Any] = []
            for values in single.parameter_rows(chunk, "v_", varying=("params",)):
                params += [values[name] for name in names] if names else values
            cursor.execute(f"{head} VALUES {', '.join([group] * len(chunk))}", params)
            ids += self.batch_ids(cursor, len(chunk))
        return ids

    def batch_ids(self, cursor: Any, count: int) -> range:
        """The ids of the `count` rows the multi-row INSERT just run on `cursor` made."""
        raise NotImplementedError

    def claim_one(
        self, cursor: Any, compile: Compile, queue: str, values: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """Mark the queue's oldest claimable task running with `values`, through a driver
        cursor (see `runtime.store.fast`); its row, or None.

        The default is one `UPDATE ... WHERE id = (oldest) RETURNING *`, which SQLite (its
        single writer) and PostgreSQL (`FOR UPDATE SKIP LOCKED` in `claimable`) make safe.
        """
        statement = compile("claim", lambda: self.claim_statement)
        params = {
            "claim_queue": queue,
            "claim_now": values["started_at"],
            **{f"v_{k}": v for k, v in values.items()},
        }
        row: Mapping[str, Any] | None = statement.first(statement.execute(cursor, params))
        return row

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


CLAIM_COLUMNS = (
    "status",
    "server_id",
    "worker_id",
    "worker_pid",
    "worker_started",
    "started_at",
    "updated_at",
)
"""The columns a claim sets (`TaskStore.claim` gives their values); it also counts the
attempt (`claim_values`) and releases a unique key held only while pending
(`runtime.schema.unique_key_after_claim`)."""


def claim_now() -> Any:
    """The claim's time, bound as `claim_now` (the claim's `started_at`): a task whose
    `next_run_at` is later is not due yet."""
    return bindparam("claim_now", type_=Timestamp())


def claim_values() -> dict[str, Any]:
    """What a claim's UPDATE sets: each of `CLAIM_COLUMNS` bound as `v_<column>`, and
    `attempts = attempts + 1` (a retried task keeps its row and its count)."""
    values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in CLAIM_COLUMNS}
    values["attempts"] = tasks.c.attempts + 1
    return values


CLAIMED_COLUMNS = (
    "id",
    "status",
    "service_name",
    "task_name",
    "queue_name",
    "execution_mode",
    "params",
    "timeout_seconds",
    "server_id",
    "worker_pid",
    "attempts",
)
"""The columns a claim returns: what the worker needs to run the task. The others (the
timestamps above all, which SQLite returns as text to parse) would cost the claim more
than the rest of its row."""

DISPATCH_COLUMNS = (
    "server_id",
    "service_name",
    "task_name",
    "queue_name",
    "execution_mode",
    "status",
    "params",
    "timeout_seconds",
    "has_temp_directory",
    "next_run_at",
    "created_at",
    "updated_at",
)
"""The columns a dispatch sets (`next_run_at` NULL unless delayed); the others keep their
defaults (NULL, `attempts` 0)."""

UNIQUE_DISPATCH_COLUMNS = (*DISPATCH_COLUMNS, "unique_key")
"""The columns a dispatch of a unique task sets (`Backend.insert_unique`)."""


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

"""PostgreSQL through psycopg 3: advisory locks, `FOR UPDATE SKIP LOCKED`, LISTEN/NOTIFY.

A serialised write takes `pg_advisory_xact_lock` on a stable 64-bit hash of the lock
name, so it is released with the transaction however it ends (commit, rollback, or the
session dying with its process). Advisory locks and notification channels are scoped to
the database, so apps in different databases of one server do not contend.

`wait` listens on the connection it is given. The first call on a connection subscribes
and returns at once, so that a caller looping "check, then wait" re-checks after the
subscription is in place and cannot miss a NOTIFY sent between its check and its LISTEN;
later calls block until a notification arrives or the timeout passes. Waiting ends the
connection's open transaction (notifications reach a session only between transactions).
The subscription lives as long as the pooled connection, so a caller that checks out a
connection per wait still blocks on every call after the first.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from runtime.backends import (
    DISPATCH_COLUMNS,
    UNIQUE_DISPATCH_COLUMNS,
    Backend,
    Compile,
    Failure,
    queue_lock,
)
from runtime.schema import tasks, use_dialect

DRIVER = "postgresql+psycopg"
CONNECT_TIMEOUT_S = 10
# A lock wait longer than this means a holder is hung; fail in one line rather than hang.
LOCK_TIMEOUT_S = 60
# PostgreSQL truncates identifiers, channel names included, to 63 bytes.
_MAX_IDENTIFIER = 63
_LISTENING = "rsx_listening"
_FAILURES: dict[object, Failure] = {
    "40P01": Failure.DEADLOCK,
    "40001": Failure.DEADLOCK,
    "55P03": Failure.LOCK_TIMEOUT,
    "23505": Failure.DUPLICATE_KEY,
    "57P01": Failure.DISCONNECT,
    "57P02": Failure.DISCONNECT,
    "57P03": Failure.DISCONNECT,
    "08000": Failure.DISCONNECT,
}


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock name (the same in every process)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel_name(channel: str) -> str:
    """The NOTIFY channel of an interface channel: prefixed, and hashed when too long."""
    name = f"rsx_{channel}"
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER:
        name = "rsx_" + hashlib.blake2b(channel.encode("utf-8"), digest_size=16).hexdigest()
    return name


def driver_url(url: str | URL) -> URL:
    """The URL with psycopg 3 as its driver when none or the default one is named."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=DRIVER)
    return parsed


class PostgreSQLBackend(Backend):
    """Many processes, possibly on several machines, sharing one PostgreSQL database."""

    name = "postgresql"
    counts_workers_in_dispatch = True

    def create_engine(self, url: str, autocommit: bool = False) -> Engine:
        from sqlalchemy import create_engine

        parsed = driver_url(url)
        if parsed.get_driver_name() != "psycopg":
            raise ArgumentError(
                f"PostgreSQL is supported through psycopg 3: use {DRIVER}:// "
                f"(or postgresql://), not {parsed.drivername}://"
            )
        try:
            importlib.import_module("psycopg")
        except ImportError:
            raise ArgumentError(
                "PostgreSQL needs psycopg 3: pip install 'rsxgen[postgres]'"
            ) from None
        use_dialect("postgresql")
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "rsx",
            "options": f"-c lock_timeout={LOCK_TIMEOUT_S * 1000} -c timezone=UTC",
        }
        if autocommit:
            return create_engine(parsed, connect_args=connect_args, isolation_level="AUTOCOMMIT")
        return create_engine(parsed, connect_args=connect_args)

    @contextmanager
    def write(self, engine: Engine, lock: str | None = None) -> Iterator[Connection]:
        with engine.begin() as conn:
            if lock is not None:
                conn.execute(select(func.pg_advisory_xact_lock(lock_key(lock))))
            yield conn

    def claimable(self, queue: str, due_by: Any = None) -> Select[Any]:
        return super().claimable(queue, due_by).with_for_update(skip_locked=True)

    def _oldest(self) -> Select[Any]:
        return super()._oldest().with_for_update(skip_locked=True)

    @cached_property
    def row_notify(self) -> ColumnElement[Any] | None:
        """`pg_notify('rsx_task_<id>', '')`, evaluated for the row an UPDATE returns."""
        return func.pg_notify(literal(channel_name("task_")) + cast(tasks.c.id, Text), "")

    @cached_property
    def insert_statement(self) -> Any:
        """One statement: the queue's advisory lock in its FROM clause, held to the commit,
        and the queue's channel notified in its RETURNING clause. Parameters: the row's
        columns, `lock_key` and `channel`."""
        return _locked_insert(DISPATCH_COLUMNS).returning(tasks.c.id, _queue_notify())

    @cached_property
    def insert_unique_statement(self) -> Any:
        """`insert_statement` for a row holding a unique key: `ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL DO NOTHING`, so it returns no row (and notifies
        nobody) when another row holds the key."""
        return (
            _locked_insert(UNIQUE_DISPATCH_COLUMNS)
            .on_conflict_do_nothing(
                index_elements=[tasks.c.unique_key], index_where=tasks.c.unique_key.is_not(None)
            )
            .returning(tasks.c.id, _queue_notify())
        )

    def insert_unique(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int | None:
        statement = compile("insert_unique", lambda: self.insert_unique_statement)
        key = lock_key(queue_lock(queue))
        statement.execute(cursor, {**row, "lock_key": key, "channel": channel_name(channel)})
        found = cursor.fetchone()
        return None if found is None else int(found[0])

    def insert_one(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int:
        statement = compile("insert_one", lambda: self.insert_statement)
        key = lock_key(queue_lock(queue))
        params = {**row, "lock_key": key, "channel": channel_name(channel)}
        statement.execute(cursor, params)
        return int(cursor.fetchone()[0])

    def insert_many(
        self, cursor: Any, compile: Compile, queue: str, rows: Sequence[Mapping[str, Any]],
        channel: str,
    ) -> list[int]:
        """The single-row statement run for every row in one `executemany`, which psycopg
        sends as a pipeline (not a round trip per row) and whose results come back in the
        rows' order. The queue's lock is taken by the first and held to the commit."""
        statement = compile("insert_one", lambda: self.insert_statement)
        fixed = {"lock_key": lock_key(queue_lock(queue)), "channel": channel_name(channel)}
        # The rows are alike but for their params: the first is bound whole, the others
        # lend their params only.
        bound = statement.parameter_rows([{**rows[0], **fixed}, *rows[1:]], varying=("params",))
        cursor.executemany(statement.sql, list(bound), returning=True)
        ids = []
        while True:
            ids.append(int(cursor.fetchone()[0]))
            if not cursor.nextset():
                return ids

    def notify(self, conn: Connection, channel: str) -> None:
        """Queue a NOTIFY in the caller's transaction; PostgreSQL delivers it on commit."""
        conn.execute(select(func.pg_notify(channel_name(channel), "")))

    def wait(self, conn: Connection, channel: str, timeout: float) -> None:
        name = channel_name(channel)
        listening: set[str] = conn.info.setdefault(_LISTENING, set())
        try:
            if name not in listening:
                conn.rollback()
                conn.execute(text(f'LISTEN "{name}"'))
                conn.commit()
                listening.add(name)
                return
            # Notifications reach a session only between transactions.
            conn.rollback()
            driver = conn.connection.driver_connection
            assert driver is not None
            for _ in driver.notifies(timeout=timeout, stop_after=1):
                break
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        except Exception as exc:
            from psycopg import OperationalError

            if not isinstance(exc, OperationalError):
                raise
            # The session died while waiting; the caller reconnects on its next use.
            conn.invalidate()

    failures = _FAILURES

    def error_code(self, exc: DBAPIError) -> object:
        """The SQLSTATE; every code of class 08 (connection exception) as 08000."""
        state = getattr(exc.orig, "sqlstate", None)
        return "08000" if isinstance(state, str) and state.startswith("08") else state


def _locked_insert(columns: tuple[str, ...]) -> Any:
    """`INSERT INTO _tasks (columns) SELECT :columns FROM (SELECT pg_advisory_xact_lock(
    :lock_key))`: the queue's advisory lock taken by the statement itself."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    lock = select(func.pg_advisory_xact_lock(bindparam("lock_key", type_=BigInteger))).subquery()
    names = [column.name for column in tasks.c if column.name in columns]
    source = select(*(bindparam(n, type_=tasks.c[n].type) for n in names)).select_from(lock)
    return pg_insert(tasks).from_select(names, source)


def _queue_notify() -> Any:
    """`pg_notify(:channel, '')`, for an INSERT's RETURNING clause."""
    return func.pg_notify(bindparam("channel", type_=String), "")

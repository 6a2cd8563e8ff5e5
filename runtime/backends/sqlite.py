"""SQLite: WAL, a 30 s busy timeout, and `BEGIN IMMEDIATE` as the lock of every writer.

pysqlite's own transaction handling is switched off (the SQLAlchemy-documented recipe) so
the store decides how each transaction begins: writes with `BEGIN IMMEDIATE`, which takes
SQLite's single write lock up front (so two claimers are serialised rather than failing
on a lock upgrade), reads with a plain deferred `BEGIN`, which in WAL mode blocks nobody.
Since every writer holds the one write lock, lock names do not matter here, and a claim
is a plain `UPDATE ... RETURNING`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from runtime.backends import UNIQUE_DISPATCH_COLUMNS, Backend, Compile, Failure
from runtime.schema import tasks, use_dialect

BUSY_TIMEOUT_S = 30
_IMMEDIATE = "rsx_begin_immediate"
_SEEN_VERSION = "rsx_data_version"
_FIRST_RETRY_S = 0.00005
_LAST_RETRY_S = 0.002
_FAILURES: dict[object, Failure] = {
    sqlite3.SQLITE_BUSY: Failure.LOCK_TIMEOUT,
    sqlite3.SQLITE_LOCKED: Failure.LOCK_TIMEOUT,
    sqlite3.SQLITE_CONSTRAINT_UNIQUE: Failure.DUPLICATE_KEY,
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: Failure.DUPLICATE_KEY,
}


class SQLiteBackend(Backend):
    """One database file shared by every process of the server."""

    name = "sqlite"
    counts_workers_in_dispatch = True
    poll_interval = 0.005
    """`PRAGMA data_version` reads shared memory only, so an idle worker can look often."""

    def create_engine(self, url: str, autocommit: bool = False) -> Engine:
        from sqlalchemy import create_engine

        use_dialect("sqlite")
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            if not autocommit:
                cursor.execute("PRAGMA busy_timeout = 0")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get(_IMMEDIATE, False):
                begin_immediate(conn.connection.dbapi_connection)
            elif not autocommit:
                conn.exec_driver_sql("BEGIN")

        return engine

    @contextmanager
    def write(self, engine: Engine, lock: str | None = None) -> Iterator[Connection]:
        with engine.connect() as conn:
            conn = conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    def begin_raw(self, dbapi_connection: Any) -> None:
        begin_immediate(dbapi_connection)

    def batch_ids(self, cursor: Any, count: int) -> range:
        """The transaction holds SQLite's write lock, and each new row gets one more than
        the largest id: a statement's rows have consecutive ids ending at `lastrowid`."""
        last = int(cursor.lastrowid)
        return range(last - count + 1, last + 1)

    def wait(self, conn: Connection, channel: str, timeout: float) -> None:
        """Poll `PRAGMA data_version`, which changes when another connection commits.

        The baseline is the version seen when the previous wait on this connection
        returned, so a commit made between the caller's check and this call ends the wait
        at once; the first wait on a connection only records it and returns.
        """
        seen = conn.info.get(_SEEN_VERSION)
        current = _data_version(conn)
        conn.info[_SEEN_VERSION] = current
        if seen is None or current != seen:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(self.poll_interval)
            current = _data_version(conn)
            if current != seen:
                conn.info[_SEEN_VERSION] = current
                return

    @cached_property
    def _insert_unique(self) -> Any:
        from sqlalchemy.dialects.sqlite import insert

        return (
            insert(tasks)
            .values({name: bindparam(f"v_{name}") for name in UNIQUE_DISPATCH_COLUMNS})
            .on_conflict_do_nothing(
                index_elements=[tasks.c.unique_key], index_where=tasks.c.unique_key.is_not(None)
            )
            .returning(tasks.c.id)
        )

    def insert_unique(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int | None:
        """`INSERT ... ON CONFLICT (unique_key) DO NOTHING RETURNING id` (SQLite 3.35+)."""
        statement = compile("insert_unique", lambda: self._insert_unique)
        statement.execute(cursor, row, "v_")
        found = cursor.fetchone()
        return None if found is None else int(found[0])

    failures = _FAILURES

    def error_code(self, exc: DBAPIError) -> object:
        """SQLite's extended result code; busy and locked by their primary code."""
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return code & 0xFF
        return code


def begin_immediate(dbapi_connection: Any) -> None:
    """`BEGIN IMMEDIATE`, waiting for the write lock by polling from 50 µs up to 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms and more between tries, so a writer
    that finds the lock held for a fraction of a millisecond would wait milliseconds; a
    dispatch beside a busy worker paid that on every call. Connections of the write
    engine therefore have no busy timeout (once the lock is held nothing else in the
    transaction waits), and `BUSY_TIMEOUT_S` bounds this loop instead.
    """
    delay = _FIRST_RETRY_S
    deadline: float | None = None
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            if deadline is None:
                deadline = time.monotonic() + BUSY_TIMEOUT_S
            elif time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, _LAST_RETRY_S)


def _data_version(conn: Connection) -> Any:
    """The connection's view of the commit counter, outside any open read snapshot."""
    value = conn.exec_driver_sql("PRAGMA data_version").scalar()
    conn.rollback()
    return value

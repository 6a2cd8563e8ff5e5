"""SQLite: WAL, a 30 s busy timeout, and `BEGIN IMMEDIATE` as the lock of every writer.

pysqlite's own transaction handling is switched off (the SQLAlchemy-documented recipe) so
the store decides how each transaction begins: writes with `BEGIN IMMEDIATE`, which takes
SQLite's single write lock up front (so two claimers are serialised rather than failing
on a lock upgrade), reads with a plain deferred `BEGIN`, which in WAL mode blocks nobody.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url

from runtime.backends import Backend

BUSY_TIMEOUT_S = 30
_IMMEDIATE = "rsx_begin_immediate"
_SEEN_VERSION = "rsx_data_version"


class SQLiteBackend(Backend):
    """One database file shared by every process of the server."""

    name = "sqlite"

    def create_engine(self, url: str) -> Engine:
        from sqlalchemy import create_engine

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
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextmanager
    def write(self, engine: Engine, lock: str) -> Iterator[Connection]:
        with engine.connect() as conn:
            conn = conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

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
            time.sleep(0.05)
            current = _data_version(conn)
            if current != seen:
                conn.info[_SEEN_VERSION] = current
                return


def _data_version(conn: Connection) -> Any:
    """The connection's view of the commit counter, outside any open read snapshot."""
    value = conn.exec_driver_sql("PRAGMA data_version").scalar()
    conn.rollback()
    return value

"""MySQL and MariaDB through PyMySQL: `GET_LOCK`, `FOR UPDATE`, READ COMMITTED.

`GET_LOCK` belongs to the session, not the transaction: a lock taken for a write is
released in `finally` whatever the transaction did, and a connection whose release fails
is invalidated (closed) rather than returned to the pool still holding the lock; the
server frees the locks of a closed session. Lock names are server-wide, so each is
prefixed with the database name, and hashed when longer than the 64 characters MySQL
allows.

Every connection runs at READ COMMITTED, so a claimer sees rows committed after its
transaction began (InnoDB's default REPEATABLE READ would show it a stale snapshot), and
InnoDB takes no gap locks that could deadlock racing inserts. That includes the autocommit
connections of reads, on which a single dispatch's INSERT runs and commits in one round
trip (`autocommits_single_dispatch`); the queue's workers are read after it.

A claim reads the oldest pending row with a plain `FOR UPDATE`: a row still being inserted
or claimed by another transaction is waited for, not skipped, so tasks start in id order
even when dispatches commit out of order. MariaDB has no `UPDATE ... RETURNING`, so the
claim is that locking SELECT and an UPDATE of the row it returned.
"""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from select import POLLIN, poll
from typing import Any

from sqlalchemy import Connection, Engine, String, bindparam, func, select, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from runtime.backends import (
    CLAIMED_COLUMNS,
    UNIQUE_DISPATCH_COLUMNS,
    Backend,
    Compile,
    Failure,
    Q,
    claim_now,
    claim_values,
)
from runtime.errors import BackendError
from runtime.schema import claimable, tasks, unique_key_after_claim, use_dialect

DRIVER = "mysql+pymysql"
CONNECT_TIMEOUT_S = 10
# A lock wait longer than this means a holder is hung; fail in one line rather than hang.
LOCK_TIMEOUT_S = 60
READ_COMMITTED = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
# MySQL rejects user lock names longer than this.
_MAX_LOCK_NAME = 64
_FAILURES: dict[object, Failure] = {
    1213: Failure.DEADLOCK,
    1205: Failure.LOCK_TIMEOUT,
    1062: Failure.DUPLICATE_KEY,
    1053: Failure.DISCONNECT,
    1927: Failure.DISCONNECT,
    2006: Failure.DISCONNECT,
    2013: Failure.DISCONNECT,
    4031: Failure.DISCONNECT,
}


def driver_url(url: str | URL) -> URL:
    """The URL with PyMySQL as its driver when none is named (`mysql://`, `mariadb://`)."""
    parsed = make_url(url)
    if parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.drivername}+pymysql")
    return parsed


def lock_name(database: str | None, lock: str) -> str:
    """The server-wide `GET_LOCK` name of `lock` in `database` (at most 64 characters)."""
    name = f"rsx:{database or ''}:{lock}"
    if len(name) > _MAX_LOCK_NAME:
        name = "rsx:" + hashlib.blake2b(name.encode("utf-8"), digest_size=16).hexdigest()
    return name


def tls_arguments(url: URL) -> dict[str, Any]:
    """`ssl_disabled` for a server on this machine whose URL says nothing about TLS; else
    nothing, and PyMySQL decides.

    Since 1.2, PyMySQL tries TLS on every connection not told otherwise, and for that builds
    an SSL context each time, loading the system's CA certificates, which took 60 to 120 ms
    per connection here (three on a worker's start) even against a server without TLS. To a
    loopback address the traffic never leaves the machine, so TLS protects nothing there.
    """
    if any(key.startswith("ssl") for key in url.query):
        return {}
    host = url.host or "localhost"
    if host == "localhost":
        return {"ssl_disabled": True}
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return {}
    return {"ssl_disabled": True} if loopback else {}


class MySQLBackend(Backend):
    """Many processes, possibly on several machines, sharing one MySQL/MariaDB database."""

    name = "mysql"
    autocommits_single_dispatch = True
    poll_interval = 0.01
    """MySQL has no change signal; an idle worker looks again this often (an index probe)."""

    def create_engine(self, url: str, autocommit: bool = False) -> Engine:
        from sqlalchemy import create_engine

        parsed = driver_url(url)
        if parsed.get_driver_name() != "pymysql":
            raise ArgumentError(
                f"MySQL/MariaDB is supported through PyMySQL: use {DRIVER}:// "
                f"(or mysql://, mariadb://), not {parsed.drivername}://"
            )
        try:
            importlib.import_module("pymysql")
        except ImportError:
            raise ArgumentError(
                "MySQL/MariaDB needs PyMySQL: pip install 'rsxgen[mysql]'"
            ) from None
        use_dialect("mysql")
        connect_args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            **tls_arguments(parsed),
        }
        if autocommit:
            # A single dispatch's INSERT runs on these connections too
            # (`autocommits_single_dispatch`), at READ COMMITTED as every write.
            connect_args["init_command"] = READ_COMMITTED
        return create_engine(
            parsed,
            isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
            connect_args=connect_args,
        )

    def dropped(self, dbapi_connection: Any) -> bool:
        """Whether the idle connection's socket has anything to read: the end of the stream
        of a session the server closed (killed, timed out, restarted), or the error it sent
        first. An idle connection has nothing to read; one poll, no round trip."""
        sock = getattr(dbapi_connection, "_sock", None)
        if sock is None:
            return True
        poller = poll()
        poller.register(sock, POLLIN)
        return bool(poller.poll(0))

    @contextmanager
    def write(self, engine: Engine, lock: str | None = None) -> Iterator[Connection]:
        if lock is None:
            with engine.begin() as conn:
                yield conn
            return
        name = lock_name(engine.url.database, lock)
        with engine.connect() as conn:
            try:
                with conn.begin():
                    got = conn.execute(
                        text("SELECT GET_LOCK(:name, :timeout)"),
                        {"name": name, "timeout": LOCK_TIMEOUT_S},
                    ).scalar()
                    if got != 1:
                        raise BackendError(
                            f"database {engine.url.render_as_string(hide_password=True)}: "
                            f"timed out after {LOCK_TIMEOUT_S} s waiting for lock {lock!r}"
                        )
                    yield conn
            finally:
                _release(conn, name)

    @cached_property
    def _claim_select(self) -> Any:
        """The oldest claimable row of the queue bound as `claim_queue` that is due at
        `claim_now` (its `CLAIMED_COLUMNS`), locked."""
        columns = (tasks.c[name] for name in CLAIMED_COLUMNS)
        queue = bindparam("claim_queue", type_=String)
        oldest = self.on_claim_index(select(*columns).where(claimable(queue, claim_now())))
        return oldest.order_by(tasks.c.id).limit(1).with_for_update()

    def on_claim_index(self, statement: Q) -> Q:
        # Left to itself MySQL walks the primary key in id order past every ended row
        # (2 s per claim with 1,000,000 of them), or intersects two indexes (40 ms with
        # 100,000); the claim index gives the same order.
        return statement.with_hint(tasks, "FORCE INDEX (ix__tasks_claim)", "*")

    @cached_property
    def _claim_update(self) -> Any:
        """The claim's UPDATE of the row found, values bound as `v_<column>`."""
        return (
            update(tasks)
            .where(tasks.c.id == bindparam("claim_id"))
            .values(claim_values())
            .values(unique_key=unique_key_after_claim())
        )

    @cached_property
    def _insert_unique(self) -> Any:
        """`INSERT ... ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)`: on a taken key
        the statement changes nothing and leaves the holder's id as the insert id."""
        from sqlalchemy.dialects.mysql import insert

        statement = insert(tasks).values(
            {name: bindparam(f"v_{name}") for name in UNIQUE_DISPATCH_COLUMNS}
        )
        return statement.on_duplicate_key_update(id=func.last_insert_id(tasks.c.id))

    def insert_many(
        self, cursor: Any, compile: Compile, queue: str, rows: Sequence[Mapping[str, Any]],
        channel: str,
    ) -> list[int]:
        """Multi-row INSERTs of `BATCH_ROWS` rows, the single-row statement's VALUES group
        repeated. InnoDB gives a multi-row INSERT consecutive ids from the first, which is
        the insert id, unless `innodb_autoinc_lock_mode` is 2 (interleaved): there each row
        is inserted on its own."""
        if self._interleaved_ids(cursor):
            return [self.insert_one(cursor, compile, queue, row, channel) for row in rows]
        return super().insert_many(cursor, compile, queue, rows, channel)

    def batch_ids(self, cursor: Any, count: int) -> range:
        """InnoDB gives a multi-row INSERT consecutive ids from the insert id (outside the
        interleaved lock mode, which `insert_many` avoids)."""
        first = int(cursor.lastrowid)
        return range(first, first + count)

    def _interleaved_ids(self, cursor: Any) -> bool:
        """Whether the server may interleave a multi-row INSERT's ids with others' (asked
        once per backend)."""
        if self._autoinc_mode is None:
            cursor.execute("SELECT @@innodb_autoinc_lock_mode")
            self._autoinc_mode = int(cursor.fetchone()[0])
        return self._autoinc_mode == 2

    _autoinc_mode: int | None = None

    def insert_unique(
        self, cursor: Any, compile: Compile, queue: str, row: Mapping[str, Any], channel: str
    ) -> int | None:
        """Never None here: the holder's id comes back from the INSERT itself (the only
        UNIQUE index a dispatched row can collide on is `unique_key`'s; the primary key is
        generated and `schedule_key` is NULL)."""
        statement = compile("insert_unique", lambda: self._insert_unique)
        statement.execute(cursor, {f"v_{k}": v for k, v in row.items()})
        return int(cursor.lastrowid)

    def claim_one(
        self, cursor: Any, compile: Compile, queue: str, values: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        select_oldest = compile("claim_select", lambda: self._claim_select)
        found = {"claim_queue": queue, "claim_now": values["started_at"]}
        row = select_oldest.first(select_oldest.execute(cursor, found))
        if row is None:
            return None
        params = {"claim_id": row["id"], **{f"v_{k}": v for k, v in values.items()}}
        compile("claim_update", lambda: self._claim_update).execute(cursor, params)
        return {**row, **values, "attempts": row["attempts"] + 1}

    failures = _FAILURES

    def error_code(self, exc: DBAPIError) -> object:
        """MySQL's error number, the first argument of PyMySQL's exceptions."""
        args = getattr(exc.orig, "args", ())
        return args[0] if args and isinstance(args[0], int) else None


def _release(conn: Connection, name: str) -> None:
    """Release a session lock; close the session instead if that fails, which also frees it."""
    try:
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()

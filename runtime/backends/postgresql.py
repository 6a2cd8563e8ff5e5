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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from runtime.backends import Backend

DRIVER = "postgresql+psycopg"
CONNECT_TIMEOUT_S = 10
# A lock wait longer than this means a holder is hung; fail in one line rather than hang.
LOCK_TIMEOUT_S = 60
# PostgreSQL truncates identifiers, channel names included, to 63 bytes.
_MAX_IDENTIFIER = 63
_LISTENING = "rsx_listening"


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

    def create_engine(self, url: str) -> Engine:
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
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "rsx",
            "options": f"-c lock_timeout={LOCK_TIMEOUT_S * 1000}",
        }
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)

    @contextmanager
    def write(self, engine: Engine, lock: str) -> Iterator[Connection]:
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(lock_key(lock))))
            yield conn

    def claimable(self, queue: str) -> Select[Any]:
        return super().claimable(queue).with_for_update(skip_locked=True)

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

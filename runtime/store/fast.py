"""The hot path's statements, run on the driver's own connection.

A dispatch, a claim and a task's finish are each one short transaction, and SQLAlchemy's
per-transaction and per-statement machinery (checkout events, execution contexts,
result objects) cost several times what SQLite itself needs for them. So these
statements are written with SQLAlchemy Core as everywhere else, compiled once per
dialect (`Prepared`), and executed on the DBAPI connection of a pooled connection
(`raw_transaction`), with SQLAlchemy's own bind and result processors applied to the
values. Driver errors leave as SQLAlchemy's `DBAPIError`, so the store's one retry policy
and error messages apply unchanged.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError

from runtime.errors import BackendError


class Prepared:
    """A Core statement compiled once for a dialect, run with parameters on a DBAPI cursor."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._compiled = compiled
        self._positions: list[str] | None = compiled.positiontup
        self._processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        self._dialect = dialect
        self._columns: list[tuple[str, Callable[[Any], Any] | None]] | None = None
        # The statement's own values (a LIMIT, a literal default), merged under the caller's:
        # building them per call is most of what `construct_params` costs.
        self._constants = compiled.construct_params({}, _check=False)

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for `values` (constants such as a LIMIT filled in).

        Each value is converted once, however often the statement uses it (a finish
        writes its moment to two columns)."""
        merged = {**self._constants, **values}
        for key, process in self._processors.items():
            if key in merged:
                merged[key] = process(merged[key])
        if self._positions is not None:
            return tuple([merged[key] for key in self._positions])
        return merged

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        """Run the statement on `cursor`; the cursor."""
        cursor.execute(self.sql, self.parameters(values))
        return cursor

    def first(self, cursor: Any) -> dict[str, Any] | None:
        """The first row the statement returned, by column name and converted as
        SQLAlchemy would convert it; None if there was none."""
        row = cursor.fetchone()
        if row is None:
            return None
        return self._convert(row, cursor)

    def all(self, cursor: Any) -> list[dict[str, Any]]:
        """Every row the statement returned, converted as `first` converts one."""
        return [self._convert(row, cursor) for row in cursor.fetchall()]

    def _convert(self, row: Any, cursor: Any) -> dict[str, Any]:
        if self._columns is None:
            self._columns = [
                (column[0], column[3]._cached_result_processor(self._dialect, described[1]))
                for column, described in zip(
                    self._compiled._result_columns, cursor.description, strict=True
                )
            ]
        return {
            name: value if process is None else process(value)
            for (name, process), value in zip(self._columns, row, strict=True)
        }


HELD_CONNECTIONS = 4
"""The most connections one engine's threads keep checked out for the hot path (within the
pool's size); more threads (a web server's) check one out per transaction as before."""


class _Held:
    """One thread's held connection. When the thread ends, its thread-local data goes and
    with it this: the connection goes back to the pool (in the process that checked it
    out only: a forked child must not touch its parent's session) and its place is freed."""

    def __init__(self, owner: HeldConnections, fairy: Any) -> None:
        # A weak reference, so that dropping the owner drops its threads' connections at
        # once (a cycle would wait for the garbage collector).
        self.owner = weakref.ref(owner)
        self.fairy: Any = fairy
        self.busy = False
        self.pid = os.getpid()

    def __del__(self) -> None:
        owner = self.owner()
        if owner is not None:
            owner.freed()
        if self.fairy is not None and os.getpid() == self.pid:
            try:
                self.fairy.close()
            except Exception:  # noqa: BLE001 - a pool disposed meanwhile may refuse it
                pass


class HeldConnections:
    """Pooled connections kept checked out by threads for the hot path.

    Checking a pooled connection out and back in (events, reset, bookkeeping) costs about
    what SQLite needs for a whole insert and commit, and a dispatching or working thread
    runs these transactions one after another. So up to `HELD_CONNECTIONS` threads keep one
    connection each, checked out of the pool for as long as the thread lives; other
    threads, and a thread that opens a second transaction inside its first (none does on
    the hot path), check one out per transaction. A lost connection is invalidated and
    replaced on next use.
    """

    def __init__(self, engine: Engine, limit: int = HELD_CONNECTIONS) -> None:
        self.engine = engine
        self.limit = limit
        self.count = 0
        self._lock = threading.RLock()
        self._local = threading.local()

    def take(self) -> Any:
        """This thread's held connection (a pool fairy kept checked out), or one checked
        out for this use only."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            with self._lock:
                room = self.count < self.limit
                if room:
                    self.count += 1
            if not room:
                return self.engine.raw_connection()
            try:
                fairy = self.engine.raw_connection()
            except BaseException:
                self.freed()
                raise
            held = self._local.held = _Held(self, fairy)
        elif held.busy:
            return self.engine.raw_connection()
        held.busy = True
        return held.fairy

    def freed(self) -> None:
        """A held connection's place is free again."""
        with self._lock:
            self.count -= 1

    def give_back(self, fairy: Any) -> None:
        """End a use of `take`'s connection: a pooled one goes back to the pool."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and fairy is held.fairy:
            held.busy = False
        else:
            fairy.close()

    def lose(self, fairy: Any, exc: BaseException) -> None:
        """The connection is broken: drop it, and make the next `take` connect anew."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and fairy is held.fairy:
            held.fairy = None
            self._local.held = None
        fairy.invalidate(exc)


@contextmanager
def raw_transaction(
    held: HeldConnections,
    url_error: Callable[[BaseException], BackendError],
    begin: Callable[[Any], None] | None,
) -> Iterator[Any]:
    """A transaction on this thread's held driver connection; yields a cursor.

    `begin(dbapi_connection)` starts it (SQLite's `BEGIN IMMEDIATE`; the other drivers
    begin implicitly). It commits on success and rolls back on error. Without `begin` it
    is a read on an autocommit connection: nothing is begun or committed. A driver error is
    raised as `DBAPIError` (with `connection_invalidated` when the connection was lost,
    which also drops it); a connection lost while committing is a `BackendError` saying
    the outcome is unknown, so that nobody retries it blindly.
    """
    dialect = held.engine.dialect
    driver_error = dialect.loaded_dbapi.Error
    fairy = held.take()
    connection = fairy.dbapi_connection
    assert connection is not None
    committing = False
    try:
        try:
            if begin is not None:
                begin(connection)
            cursor = connection.cursor()
            yield cursor
            if begin is not None:
                committing = True
                connection.commit()
        except driver_error as exc:
            lost = dialect.is_disconnect(exc, connection, None)
            if lost:
                held.lose(fairy, exc)
            else:
                _rollback(connection, driver_error)
            wrapped = DBAPIError.instance(
                None, None, exc, driver_error, connection_invalidated=lost, dialect=dialect
            )
            if committing and lost:
                raise BackendError(
                    f"{url_error(wrapped)} (the connection was lost while committing; "
                    "the change may or may not have been saved)"
                ) from None
            raise wrapped from exc
        except BaseException:
            _rollback(connection, driver_error)
            raise
    finally:
        held.give_back(fairy)


def _rollback(connection: Any, driver_error: type[BaseException]) -> None:
    try:
        connection.rollback()
    except driver_error:
        pass

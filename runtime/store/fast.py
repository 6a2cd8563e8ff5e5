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

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError

from runtime.errors import BackendError

_Slot = tuple[str, str, Callable[[Any], Any] | None, Any, int | None]
"""A placeholder of a `Prepared` statement, as `Prepared._plan` lists them."""


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
        self._order: list[str] = (
            self._positions if self._positions is not None else list(self._constants)
        )
        self._plans: dict[str, list[_Slot]] = {}

    def _plan(self, prefix: str) -> list[_Slot]:
        """Each placeholder in the driver's order: its name, that name without `prefix`
        (the caller's key), its processor, its constant, and the position of its first use
        when the statement binds it more than once (a finish writes its moment to two
        columns), so that each value is converted once."""
        plan = self._plans.get(prefix)
        if plan is None:
            first: dict[str, int] = {}
            plan = self._plans[prefix] = []
            for index, key in enumerate(self._order):
                plan.append(
                    (
                        key,
                        key.removeprefix(prefix),
                        self._processors.get(key),
                        self._constants[key],
                        first.get(key),
                    )
                )
                first.setdefault(key, index)
        return plan

    def parameters(self, values: Mapping[str, Any], prefix: str = "") -> Any:
        """The driver's parameters for `values`, keyed by the placeholders' names without
        `prefix` (constants such as a LIMIT filled in)."""
        out: list[Any] = []
        for _key, name, process, constant, same in self._plan(prefix):
            if same is not None:
                out.append(out[same])
                continue
            value = values[name] if name in values else constant
            out.append(value if process is None else process(value))
        return out if self._positions is not None else dict(zip(self._order, out, strict=True))

    def parameter_rows(
        self, rows: Sequence[Mapping[str, Any]], prefix: str = "", varying: Collection[str] = ()
    ) -> Iterator[Any]:
        """`parameters` of each of `rows`, which hold the very same values as the first
        row but under the keys in `varying`: the others are bound once."""
        if not rows:
            return
        plan = self._plan(prefix)
        template = self.parameters(rows[0], prefix)
        if self._positions is None:
            template = [template[key] for key in self._order]
        slots = [
            (index, name, process)
            for index, (_key, name, process, _constant, _same) in enumerate(plan)
            if name in varying
        ]
        for row in rows:
            out = template.copy()
            for index, name, process in slots:
                value = row[name]
                out[index] = value if process is None else process(value)
            yield out if self._positions is not None else dict(zip(self._order, out, strict=True))

    def execute(self, cursor: Any, values: Mapping[str, Any], prefix: str = "") -> Any:
        """Run the statement on `cursor` with `values` (keyed as for `parameters`); the
        cursor."""
        cursor.execute(self.sql, self.parameters(values, prefix))
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
        self.used = time.monotonic()

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
            held.used = time.monotonic()
        else:
            fairy.close()

    def idle_for(self, fairy: Any) -> float:
        """Seconds since `take`'s connection was last used by this thread (infinite for
        one checked out for this use only, whose past is not known)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and fairy is held.fairy:
            return time.monotonic() - held.used
        return math.inf

    def lose(self, fairy: Any, exc: BaseException) -> None:
        """The connection is broken: drop it, and make the next `take` connect anew."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and fairy is held.fairy:
            held.fairy = None
            self._local.held = None
        fairy.invalidate(exc)


IDLE_PING_S = 5.0
"""An autocommitted write on a connection unused for longer than this pings it first: a
connection the server or the network dropped meanwhile is then replaced before anything is
sent, instead of leaving the write's outcome unknown."""


class raw_transaction:  # noqa: N801 - used as a context manager, like contextlib's
    """A transaction on this thread's held driver connection; `with` gives a cursor.

    `begin(dbapi_connection)` starts it (SQLite's `BEGIN IMMEDIATE`; the other drivers
    begin implicitly). It commits on success and rolls back on error. Without `begin` it
    is a read on an autocommit connection: nothing is begun or committed. A driver error is
    raised as `DBAPIError` (with `connection_invalidated` when the connection was lost,
    which also drops it); a connection lost while committing is a `BackendError` saying
    the outcome is unknown, so that nobody retries it blindly.

    With `dropped` the cursor runs one write on the autocommit connection, which commits
    as it runs: a connection lost during it is that same `BackendError`. So the connection
    is looked at first, and pinged when `dropped(dbapi_connection)` says the server may
    have closed it or it was idle for more than `IDLE_PING_S`: a lost one is then a
    `DBAPIError` the retry policy runs again, nothing having been written.

    A class rather than a generator: the hot path enters one per dispatch and per task.
    """

    __slots__ = ("held", "url_error", "begin", "dropped", "fairy", "connection", "committing")

    def __init__(
        self,
        held: HeldConnections,
        url_error: Callable[[BaseException], BackendError],
        begin: Callable[[Any], None] | None,
        dropped: Callable[[Any], bool] | None = None,
    ) -> None:
        self.held = held
        self.url_error = url_error
        self.begin = begin
        self.dropped = dropped
        self.committing = False

    def __enter__(self) -> Any:
        held = self.held
        self.fairy = fairy = held.take()
        self.connection = connection = fairy.dbapi_connection
        assert connection is not None
        try:
            if self.begin is not None:
                self.begin(connection)
            elif self.dropped is not None:
                if self.dropped(connection) or held.idle_for(fairy) > IDLE_PING_S:
                    held.engine.dialect.do_ping(connection)
                self.committing = True
            return connection.cursor()
        except BaseException as exc:
            self._failed(exc, committing=False)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if exc is not None:
            self._failed(exc, committing=self.committing)
        try:
            if self.begin is not None:
                self.connection.commit()
        except BaseException as error:
            self._failed(error, committing=True)
        self.held.give_back(self.fairy)

    def _failed(self, exc: BaseException, committing: bool) -> NoReturn:
        """Roll back, give the connection back (or drop a lost one) and raise `exc` as the
        store raises a driver error."""
        held, fairy, connection = self.held, self.fairy, self.connection
        dialect = held.engine.dialect
        driver_error = dialect.loaded_dbapi.Error
        try:
            if not isinstance(exc, driver_error):
                _rollback(connection, driver_error)
                raise exc
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
                    f"{self.url_error(wrapped)} (the connection was lost while committing; "
                    "the change may or may not have been saved)"
                ) from None
            raise wrapped from exc
        finally:
            held.give_back(fairy)


def _rollback(connection: Any, driver_error: type[BaseException]) -> None:
    try:
        connection.rollback()
    except driver_error:
        pass

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

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for `values` (constants such as a LIMIT filled in)."""
        merged = self._compiled.construct_params(values, _check=False)
        processors = self._processors
        if self._positions is not None:
            return tuple(
                processors[key](merged[key]) if key in processors else merged[key]
                for key in self._positions
            )
        return {
            key: processors[key](value) if key in processors else value
            for key, value in merged.items()
        }

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


@contextmanager
def raw_transaction(
    engine: Engine, url_error: Callable[[BaseException], BackendError], begin: Callable[[Any], None]
) -> Iterator[Any]:
    """A transaction on the driver connection of a pooled connection; yields a cursor.

    `begin(dbapi_connection)` starts it (SQLite's `BEGIN IMMEDIATE`; the other drivers
    begin implicitly). It commits on success and rolls back on error. A driver error is
    raised as `DBAPIError` (with `connection_invalidated` when the connection was lost,
    which also drops it from the pool); a connection lost while committing is a
    `BackendError` saying the outcome is unknown, so that nobody retries it blindly.
    """
    dialect = engine.dialect
    driver_error = dialect.loaded_dbapi.Error
    fairy = engine.raw_connection()
    connection = fairy.driver_connection
    assert connection is not None
    committing = False
    try:
        try:
            begin(connection)
            cursor = connection.cursor()
            yield cursor
            committing = True
            connection.commit()
        except driver_error as exc:
            lost = dialect.is_disconnect(exc, connection, None)
            if lost:
                fairy.invalidate(exc)
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
        fairy.close()


def _rollback(connection: Any, driver_error: type[BaseException]) -> None:
    try:
        connection.rollback()
    except driver_error:
        pass

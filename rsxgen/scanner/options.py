"""The options gatherer: `@task`'s keyword-only arguments, checked (RSX017-RSX020).

`retries`/`retry_backoff` (RSX017), `unique`/`unique_key`/`unique_while` (RSX018),
`retry_on` (RSX019, names resolved by `rsxgen.scanner.exceptions`) and `delay` (RSX020),
each reported at its value, or at the element of a tuple that is wrong. It runs after the
signature gatherer, because a `unique_key` must name the task's parameters.
"""

from __future__ import annotations

import difflib
from typing import Any

import libcst as cst

from rsxgen.names import normal
from rsxgen.scanner.decorators import Decorated
from rsxgen.scanner.exceptions import ExceptionNames, NotAnException
from rsxgen.scanner.facts import UNIQUE_WHILE, TaskOptions
from rsxgen.scanner.literals import NotJson, NotLiteral, literal_value
from rsxgen.scanner.report import Report, code_of
from runtime.limits import (
    DEFAULT_RETRY_BACKOFF_SECONDS,
    MAX_DURATION_SECONDS,
    MAX_DURATION_TEXT,
    MAX_RETRIES,
)


class OptionsGatherer:
    """Checks the options of each task and returns them as `TaskOptions`."""

    def __init__(self, exceptions: ExceptionNames, report: Report) -> None:
        self.exceptions = exceptions
        self.report = report
        self._found: Decorated

    def gather(self, found: Decorated, params: tuple[str, ...] | None) -> TaskOptions:
        """The task's options; `params` are its parameter names after the TaskInstance, or
        None when its signature was not read (a misplaced task: names are not checked)."""
        self._found = found
        written = found.options
        retries = self._retries(written.get("retries"))
        backoff = self._backoff(written.get("retry_backoff"))
        retry_on = self._retry_on(written.get("retry_on"))
        for name in ("retry_backoff", "retry_on"):
            if retries == 0 and name in written and not _is_default(written[name]):
                self._error(
                    written[name],
                    "RSX017",
                    f"{name} has no effect without retries; add retries=N (at most {MAX_RETRIES})",
                )
        unique = self._unique(written, params)
        return TaskOptions(
            retries=retries or 0,
            retry_backoff=backoff,
            retry_on=retry_on,
            unique=unique,
            unique_while=self._unique_while(written),
            delay=self._delay(written.get("delay")),
        )

    def _retries(self, expr: cst.BaseExpression | None) -> int | None:
        """The number of retries; None when it is wrong (reported)."""
        if expr is None:
            return 0
        value = self._literal(expr, "RSX017", "retries", "an integer")
        if value is _MISSING:
            return None
        if not _is_int(value) or not 0 <= value <= MAX_RETRIES:
            self._error(
                expr,
                "RSX017",
                f"retries must be an integer from 0 to {MAX_RETRIES}, got {code_of(expr)}",
            )
            return None
        return int(value)

    def _backoff(self, expr: cst.BaseExpression | None) -> float:
        value = None if expr is None else self._literal(expr, "RSX017", "retry_backoff", "a number")
        if expr is None or value is None or value is _MISSING:
            return DEFAULT_RETRY_BACKOFF_SECONDS
        if not _is_number(value) or not 0 < value <= MAX_DURATION_SECONDS:
            self._error(
                expr,
                "RSX017",
                "retry_backoff must be a positive number of seconds (the first retry's "
                f"delay, doubled at each attempt) up to {MAX_DURATION_TEXT}, got {code_of(expr)}",
            )
            return DEFAULT_RETRY_BACKOFF_SECONDS
        return float(value)

    def _retry_on(self, expr: cst.BaseExpression | None) -> tuple[str, ...]:
        if expr is None:
            return ()
        named: list[cst.BaseExpression] = [expr]
        if isinstance(expr, cst.Tuple | cst.List):
            named = []
            for element in expr.elements:
                if isinstance(element, cst.StarredElement):
                    self._error(element, "RSX019", "retry_on takes classes, not an unpacking (*)")
                else:
                    named.append(element.value)
        if self._found.misplaced is not None:
            return ()  # its bindings are not the module's; RSX012 says why
        names: dict[str, None] = {}
        for node in named:
            try:
                names[self.exceptions.qualified(node, self._found.top)] = None
            except NotAnException as problem:
                self._error(node, "RSX019", f"retry_on must name exception classes: {problem}")
        return tuple(names)

    def _unique(
        self, written: dict[str, cst.BaseExpression], params: tuple[str, ...] | None
    ) -> tuple[str, ...] | None:
        """The key's parameter names, or None for a task that is not unique."""
        unique: Any = False
        if "unique" in written:
            expr = written["unique"]
            unique = self._literal(expr, "RSX018", "unique", "a bool")
            if unique is not _MISSING and not isinstance(unique, bool):
                self._error(expr, "RSX018", f"unique must be True or False, got {code_of(expr)}")
                unique = _MISSING
            elif unique is False and "unique_key" in written:
                self._error(
                    expr,
                    "RSX018",
                    "unique=False contradicts unique_key (which makes the task unique); "
                    "drop one of them",
                )
        if "unique_key" in written:
            return self._unique_key(written["unique_key"], params)
        if unique is True:
            return params or ()
        return None

    def _unique_key(
        self, expr: cst.BaseExpression, params: tuple[str, ...] | None
    ) -> tuple[str, ...] | None:
        value = self._literal(expr, "RSX018", "unique_key", "parameter names")
        if value is _MISSING:
            return None
        if isinstance(value, str):
            named = [(value, expr)]
        elif isinstance(value, list | tuple) and value and isinstance(expr, cst.Tuple | cst.List):
            named = [
                (item, element.value) for item, element in zip(value, expr.elements, strict=True)
            ]
        else:
            self._error(
                expr,
                "RSX018",
                "unique_key must name parameters: a string or a non-empty tuple of strings, "
                f"got {code_of(expr)}",
            )
            return None
        key: dict[str, None] = {}
        for item, node in named:
            if not isinstance(item, str):
                self._error(
                    node, "RSX018", f"unique_key names parameters as strings, got {code_of(node)}"
                )
            elif params is not None and normal(item) not in params:
                self._error(node, "RSX018", self._not_a_param(item, params))
            else:
                key[normal(item)] = None
        return tuple(key)

    def _not_a_param(self, name: str, params: tuple[str, ...]) -> str:
        task = self._found.function.name.value
        listed = ", ".join(params) if params else "none"
        message = (
            f"unique_key names '{name}', which is not a parameter of task '{task}' "
            f"(parameters: {listed})"
        )
        close = difflib.get_close_matches(name, params, n=1)
        return message + (f"; did you mean '{close[0]}'?" if close else "")

    def _unique_while(self, written: dict[str, cst.BaseExpression]) -> str:
        expr = written.get("unique_while")
        if expr is None:
            return "pending"
        value = self._literal(expr, "RSX018", "unique_while", "a string")
        if value is _MISSING:
            return "pending"
        if value not in UNIQUE_WHILE or not isinstance(value, str):
            self._error(
                expr,
                "RSX018",
                f"unique_while must be 'pending' or 'active' (pending or running), "
                f"got {code_of(expr)}",
            )
            return "pending"
        if "unique_key" not in written and not _is_true(written.get("unique")):
            self._error(
                expr,
                "RSX018",
                "unique_while applies to a unique task; add unique=True or unique_key=...",
            )
        return value

    def _delay(self, expr: cst.BaseExpression | None) -> float:
        value = None if expr is None else self._literal(expr, "RSX020", "delay", "a number")
        if expr is None or value is None or value is _MISSING:
            return 0.0
        if self._found.schedule is not None:
            self._error(
                expr,
                "RSX020",
                "a scheduled task cannot have a delay: its runs start at their cron times "
                "(a dispatch by hand may still pass delay=)",
            )
            return 0.0
        if not _is_number(value) or not 0 <= value <= MAX_DURATION_SECONDS:
            self._error(
                expr,
                "RSX020",
                f"delay must be a number of seconds from 0 to {MAX_DURATION_TEXT}, "
                f"got {code_of(expr)}",
            )
            return 0.0
        return float(value)

    def _literal(self, expr: cst.BaseExpression, code: str, what: str, kind: str) -> Any:
        """The literal's value, or `_MISSING` after reporting `code` for a non-literal."""
        try:
            return literal_value(expr)
        except (NotLiteral, NotJson) as problem:
            self._error(expr, code, f"{what} must be written as a literal ({kind}), not {problem}")
        return _MISSING

    def _error(self, node: cst.CSTNode, code: str, message: str) -> None:
        self.report.error(node, self._found.function, code, message)


_MISSING = object()


def _is_default(expr: cst.BaseExpression) -> bool:
    """Whether `expr` writes out an option's default: `None`, or an empty tuple or list."""
    if isinstance(expr, cst.Name):
        return expr.value == "None"
    return isinstance(expr, cst.Tuple | cst.List) and not expr.elements


def _is_true(expr: cst.BaseExpression | None) -> bool:
    """Whether `expr` is a `unique=` value other than False (a wrong one is reported as such)."""
    return expr is not None and not (isinstance(expr, cst.Name) and expr.value == "False")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

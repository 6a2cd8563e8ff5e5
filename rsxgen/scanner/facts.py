"""What a scan of one service file yields: raw task facts and diagnostics, as cacheable data.

Scans come back from the build cache, a file anyone who can write the storage folder can
edit, and their names, types and defaults are written into generated code. So
`from_data` accepts only what a scan could have produced (identifiers, canonical type
spellings, literal defaults of their type, timeouts and options in range, dotted names)
and raises `CacheEntryError` for anything else; the build then scans the file again.
"""

from __future__ import annotations

import ast
import copy
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rsxgen.diagnostics import CODES, Diagnostic
from rsxgen.names import is_name, reserved_param
from rsxgen.scanner.cron import CronError, check_cron
from rsxgen.spelling import SpellingError, parse_spelling, to_json
from runtime.limits import DEFAULT_RETRY_BACKOFF_SECONDS, MAX_DURATION_SECONDS, MAX_RETRIES

Position = tuple[int, int]
"""A 1-based (line, column)."""

_TASK_KEYS = {
    "name",
    "description",
    "at",
    "queue",
    "queue_at",
    "timeout",
    "scheduled",
    "cron",
    "cron_at",
    "params",
    "result",
    "options",
}
_OPTION_KEYS = {"retries", "retry_backoff", "retry_on", "unique", "unique_while", "delay"}
UNIQUE_WHILE = ("pending", "active")
"""`unique_while` values: an equal task blocks a dispatch while pending, or while pending
or running."""
_PARAM_KEYS = {"name", "type", "default"}
_SCAN_KEYS = {"path", "service", "module", "tasks", "diagnostics"}


class CacheEntryError(ValueError):
    """Cached scan data that no scan could have produced; the file is scanned again."""


@dataclass(frozen=True)
class ParamFacts:
    """One task parameter after the TaskInstance one, as scanned.

    `type` is the annotation's canonical spelling in generated code, using only the names
    `datetime`, `typing` and builtins (e.g. `list[int]`, `int | None`, `datetime.date`,
    `typing.Literal['a', 'b']`, `typing.Any`). `default` is the literal's Python source
    (e.g. `'high'`, `None`, `[1, 2]`) or None when the parameter is required;
    `default_value` is the same value as JSON-ready data.
    """

    name: str
    type: str
    default: str | None = None
    default_value: Any = None

    @property
    def required(self) -> bool:
        """Whether the parameter has no default."""
        return self.default is None


@dataclass(frozen=True)
class TaskOptions:
    """A task's keyword-only `@task` options as the runtime takes them, defaults filled in.

    `retry_on` holds the exception classes' qualified names; `unique` the uniqueness key's
    parameter names (every parameter for `unique=True`), None when the task is not unique;
    `retry_backoff` and `delay` are seconds.
    """

    retries: int = 0
    retry_backoff: float = DEFAULT_RETRY_BACKOFF_SECONDS
    retry_on: tuple[str, ...] = ()
    unique: tuple[str, ...] | None = None
    unique_while: str = "pending"
    delay: float = 0.0

    def to_data(self) -> dict[str, Any]:
        return {
            "retries": self.retries,
            "retry_backoff": self.retry_backoff,
            "retry_on": list(self.retry_on),
            "unique": None if self.unique is None else list(self.unique),
            "unique_while": self.unique_while,
            "delay": self.delay,
        }

    @classmethod
    def from_data(cls, data: object, scheduled: bool) -> TaskOptions:
        """The inverse of `to_data`; `CacheEntryError` for options no scan writes."""
        if not isinstance(data, dict) or data.keys() != _OPTION_KEYS:
            raise CacheEntryError("options without the keys of them")
        retries, backoff, delay = data["retries"], data["retry_backoff"], data["delay"]
        whole = isinstance(retries, int) and not isinstance(retries, bool)
        if not (whole and 0 <= retries <= MAX_RETRIES):
            raise CacheEntryError(f"retries out of range: {retries!r}")
        if not (_seconds(backoff) and backoff > 0):
            raise CacheEntryError("a retry_backoff that is not a positive number of seconds")
        if not _seconds(delay) or (scheduled and delay):
            raise CacheEntryError("a delay that is not seconds, or on a scheduled task")
        if data["unique_while"] not in UNIQUE_WHILE:
            raise CacheEntryError("unique_while is neither 'pending' nor 'active'")
        unique = data["unique"]
        return cls(
            retries=retries,
            retry_backoff=backoff,
            retry_on=_names(data["retry_on"], dotted=True),
            unique=None if unique is None else _names(unique, dotted=False),
            unique_while=data["unique_while"],
            delay=delay,
        )


@dataclass(frozen=True)
class TaskFacts:
    """One task as written, before the config gives it a queue and timeout.

    `queue` and `timeout` are None when not given; `queue_at` is where the queue was
    written. `cron` is the expression as written (None when not scheduled, or when it
    was not a string literal) and `cron_at` where; `scheduled` says whether an
    `@schedule` is present. `at` is the position of the function's name. `result` is the
    return type's canonical spelling (`typing.Any` without annotation).
    """

    name: str
    description: str
    at: Position
    queue: str | None = None
    queue_at: Position | None = None
    timeout: int | None = None
    scheduled: bool = False
    cron: str | None = None
    cron_at: Position | None = None
    params: tuple[ParamFacts, ...] = ()
    result: str = "typing.Any"
    options: TaskOptions = TaskOptions()

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "at": list(self.at),
            "queue": self.queue,
            "queue_at": list(self.queue_at) if self.queue_at else None,
            "timeout": self.timeout,
            "scheduled": self.scheduled,
            "cron": self.cron,
            "cron_at": list(self.cron_at) if self.cron_at else None,
            "params": [{"name": p.name, "type": p.type, "default": p.default} for p in self.params],
            "result": self.result,
            "options": self.options.to_data(),
        }

    @classmethod
    def from_data(cls, data: object) -> TaskFacts:
        """The inverse of `to_data`; `CacheEntryError` for data no scan makes."""
        if not isinstance(data, dict) or data.keys() != _TASK_KEYS:
            raise CacheEntryError("a task entry without the keys of one")
        name, description = data["name"], data["description"]
        if not is_name(name):
            raise CacheEntryError(f"task name {name!r} is not an identifier")
        if not isinstance(description, str):
            raise CacheEntryError("a description that is not a string")
        queue, timeout, scheduled, cron = (
            data["queue"],
            data["timeout"],
            data["scheduled"],
            data["cron"],
        )
        if queue is not None and not isinstance(queue, str):
            raise CacheEntryError("a queue that is not a string")
        if timeout is not None and not (
            isinstance(timeout, int)
            and not isinstance(timeout, bool)
            and 0 < timeout <= MAX_DURATION_SECONDS
        ):
            raise CacheEntryError(f"a timeout out of range: {timeout!r}")
        if not isinstance(scheduled, bool):
            raise CacheEntryError("'scheduled' is not a bool")
        if cron is not None and not isinstance(cron, str):
            raise CacheEntryError("a cron expression that is not a string")
        params = data["params"]
        if not isinstance(params, list):
            raise CacheEntryError("params that are not a list")
        checked = tuple(_param(param) for param in params)
        if len({param.name for param in checked}) != len(checked):
            raise CacheEntryError(f"task {name} has a parameter twice")
        if not isinstance(data["result"], str):
            raise CacheEntryError("a result type that is not a string")
        _kind(data["result"])
        return cls(
            name=name,
            description=description,
            at=_position(data["at"]),
            queue=queue,
            queue_at=_optional_position(data["queue_at"]),
            timeout=timeout,
            scheduled=scheduled,
            cron=cron,
            cron_at=_optional_position(data["cron_at"]),
            params=checked,
            result=data["result"],
            options=TaskOptions.from_data(data["options"], scheduled),
        )


@dataclass(frozen=True)
class FileScan:
    """The scan of one service file: its tasks and every config-independent problem.

    `path` is relative to the app root; `service` the dotted service name; `module` the
    import path of the file. A file without tasks has an empty `tasks`.
    """

    path: str
    service: str
    module: str
    tasks: tuple[TaskFacts, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    def to_data(self) -> dict[str, Any]:
        """JSON-ready data, for the build cache."""
        return {
            "path": self.path,
            "service": self.service,
            "module": self.module,
            "tasks": [task.to_data() for task in self.tasks],
            "diagnostics": [[d.path, d.line, d.col, d.code, d.message] for d in self.diagnostics],
        }

    @classmethod
    def from_data(cls, data: object, path: str, service: str, module: str) -> FileScan:
        """The inverse of `to_data`, for the file `path` of `service` in `module`.

        Raises `CacheEntryError` unless the data is what a scan of that file could be:
        the caller scans the file again instead.
        """
        if not isinstance(data, dict) or data.keys() != _SCAN_KEYS:
            raise CacheEntryError("a scan entry without the keys of one")
        if (data["path"], data["service"], data["module"]) != (path, service, module):
            raise CacheEntryError(f"the entry is not the scan of {path}")
        tasks, diagnostics = data["tasks"], data["diagnostics"]
        if not isinstance(tasks, list) or not isinstance(diagnostics, list):
            raise CacheEntryError("tasks or diagnostics that are not lists")
        found = tuple(_diagnostic(entry, path) for entry in diagnostics)
        facts = tuple(TaskFacts.from_data(task) for task in tasks)
        if not found:
            for task in facts:
                if not task.description.strip():
                    raise CacheEntryError(f"task {task.name} has no description")
                if task.cron is not None:
                    _cron(task.cron)
                if task.options.unique is not None and not set(task.options.unique) <= {
                    param.name for param in task.params
                }:
                    raise CacheEntryError(f"task {task.name} is unique by a missing parameter")
        return cls(path=path, service=service, module=module, tasks=facts, diagnostics=found)


def _param(data: object) -> ParamFacts:
    """One cached parameter: an allowed name, a canonical type, a literal default of it."""
    if not isinstance(data, dict) or data.keys() != _PARAM_KEYS:
        raise CacheEntryError("a parameter entry without the keys of one")
    name, spelling, default = data["name"], data["type"], data["default"]
    if not is_name(name) or reserved_param(name) is not None:
        raise CacheEntryError(f"parameter name {name!r} is not allowed")
    if not isinstance(spelling, str):
        raise CacheEntryError("a parameter type that is not a string")
    if default is None:
        _kind(spelling)
        return ParamFacts(name, spelling)
    if not isinstance(default, str):
        raise CacheEntryError("a default that is not Python source")
    return ParamFacts(name, spelling, default, copy.deepcopy(_default_value(spelling, default)))


@lru_cache(maxsize=4096)
def _kind(spelling: str) -> None:
    try:
        parse_spelling(spelling)
    except SpellingError as error:
        raise CacheEntryError(str(error)) from None


@lru_cache(maxsize=4096)
def _default_value(spelling: str, default: str) -> Any:
    """The JSON value of a default written as a literal of the type, as the scanner wrote it."""
    try:
        kind = parse_spelling(spelling)
        value = ast.literal_eval(default)
    except (SpellingError, ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise CacheEntryError(f"the default {default[:80]!r} is not a literal") from None
    if repr(value) != default or not kind.accepts(value):
        raise CacheEntryError(f"the default {default[:80]!r} is not one of {spelling}")
    data = to_json(value)
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise CacheEntryError(f"the default {default[:80]!r} has no JSON form") from None
    return data


def _cron(expression: str) -> None:
    try:
        check_cron(expression)
    except CronError as error:
        raise CacheEntryError(f"invalid cron expression: {error}") from None


def _diagnostic(entry: object, path: str) -> Diagnostic:
    if not (
        isinstance(entry, list)
        and len(entry) == 5
        and entry[0] == path
        and all(_positive(number) for number in entry[1:3])
        and entry[3] in CODES
        and isinstance(entry[4], str)
    ):
        raise CacheEntryError("a diagnostic entry that is not one")
    return Diagnostic(*entry)


def _names(value: object, dotted: bool) -> tuple[str, ...]:
    """Distinct identifiers (`dotted`: dotted names of a module and a class) from a list."""
    if not isinstance(value, list):
        raise CacheEntryError("names that are not a list")
    for name in value:
        parts = name.split(".") if isinstance(name, str) and dotted else [name]
        if (dotted and len(parts) < 2) or not all(map(is_name, parts)):
            raise CacheEntryError(f"{name!r} is not a name a scan writes")
    if len(set(value)) != len(value):
        raise CacheEntryError("a name listed twice")
    return tuple(value)


def _seconds(value: object) -> bool:
    """A float a scan writes for seconds: finite, from 0 up to the duration bound."""
    return type(value) is float and math.isfinite(value) and 0 <= value <= MAX_DURATION_SECONDS


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _position(value: object) -> Position:
    if not (isinstance(value, list) and len(value) == 2 and all(map(_positive, value))):
        raise CacheEntryError("a position that is not (line, column)")
    line, col = value
    return (line, col)


def _optional_position(value: object) -> Position | None:
    return None if value is None else _position(value)

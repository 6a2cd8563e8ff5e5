"""The shapes of the generated tables, and loading them for an app.

The generated `registry.py` and `schedule.py` build `TaskEntry` and `ScheduleEntry`
values; the runtime finds task functions only through them, never from names stored in
the database.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runtime.errors import ConfigError, ResultError, UnknownTaskError
from runtime.limits import DEFAULT_RETRY_BACKOFF_SECONDS
from runtime.state import Status, TaskStatus
from runtime.text import shorten

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter, ValidationError

    from runtime.config import Config


@dataclass(frozen=True)
class TaskEntry:
    """One task as the compiler saw it: where it lives, how it runs, what it takes and
    returns, and its `@task` options.

    `retries` failed attempts are run again, after `retry_backoff` · 2^attempt seconds,
    when the exception is an instance of one of `retry_on` (any exception when empty):
    dotted names that import as written (`builtins.ConnectionError`,
    `services.video_service.TransientError`, `requests.exceptions.Timeout`), the longest
    importable prefix being the module. `unique` names the parameters whose values make
    the uniqueness key (None: not unique), held while the task is `pending` or, with
    `unique_while="active"`, pending or running. `delay` seconds hold back every dispatch.
    `result` is the return annotation as a type pydantic validates (`typing.Any` when there
    is none). Every field after `cron` has a default, so registries generated before they
    existed still load.
    """

    service: str
    task: str
    module: str
    function: str
    queue: str
    timeout: int
    description: str
    params: type[BaseModel]
    cron: str | None = None
    retries: int = 0
    retry_backoff: float = DEFAULT_RETRY_BACKOFF_SECONDS
    retry_on: tuple[str, ...] = ()
    unique: tuple[str, ...] | None = None
    unique_while: str = "pending"
    delay: float = 0.0
    result: Any = typing.Any

    def load(self) -> Callable[..., Any]:
        """Import the task's module (named by the generated table) and return the function."""
        module = importlib.import_module(self.module)
        return getattr(module, self.function)  # type: ignore[no-any-return]

    def check_result(self, value: Any) -> Any:
        """A task's return value, validated against `result`, as JSON-ready data.

        Validation is pydantic's lax mode, as for parameters (`5.0` for an `int` is 5, a
        datetime becomes its ISO 8601 text). Raises `ResultError` with a one-line message
        when the value does not match or has no JSON form. Without an annotation
        (`typing.Any`) the value is returned unchanged and pydantic is not imported.
        """
        if self.result is Any or (type(value) is self.result and _plain_scalar(value)):
            return value
        from pydantic import ValidationError
        from pydantic_core import PydanticSerializationError

        try:
            checked = self._result_adapter.validate_python(value)
        except ValidationError as exc:
            raise ResultError(
                f"result does not match the return annotation {self.result_name}: "
                f"{_first_problem(exc)}"
            ) from None
        try:
            return self._result_adapter.dump_python(checked, mode="json")
        except (PydanticSerializationError, ValueError, RecursionError) as exc:
            raise ResultError(f"result is not JSON-serialisable: {exc}") from None

    def load_result(self, value: Any) -> Any:
        """A stored JSON result in the declared type (an ISO string back to a `datetime`);
        `ResultError` when it does not match (the task's return type changed since)."""
        if self.result is Any:
            return value
        from pydantic import ValidationError

        try:
            return self._result_adapter.validate_python(value)
        except ValidationError as exc:
            raise ResultError(
                f"stored result does not match the return annotation {self.result_name}: "
                f"{_first_problem(exc)}"
            ) from None

    @property
    def result_name(self) -> str:
        """The return annotation as written in code (`dict[str, int]`, `datetime.date`)."""
        kind = self.result
        if kind is None:
            return "None"
        if isinstance(kind, type):
            if kind.__module__ == "builtins":
                return kind.__qualname__
            return f"{kind.__module__}.{kind.__qualname__}"
        return repr(kind)

    @cached_property
    def _result_adapter(self) -> TypeAdapter[Any]:
        """Built on first use: importing the registry stays as cheap as its models."""
        from pydantic import ConfigDict, TypeAdapter

        config = ConfigDict(allow_inf_nan=False, ser_json_inf_nan="constants")
        return TypeAdapter(self.result, config=config)


@dataclass(frozen=True)
class ScheduleEntry:
    """One scheduled task: its cron, queue, timeout and the defaults it runs with."""

    service: str
    task: str
    cron: str
    queue: str
    timeout: int
    params: Mapping[str, Any] = field(default_factory=dict)


def _package(config: Config, submodule: str) -> ModuleType:
    """Import `<output>.<submodule>` with the output's and the services' parents on sys.path."""
    for folder in (config.root, config.services.parent, config.output.parent):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    name = f"{config.output.name}.{submodule}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == config.output.name or exc.name == name):
            raise ConfigError(
                f"generated package not found at {config.output}: run `rsxgen build` first"
            ) from None
        raise
    # Another folder of the same name earlier on sys.path must not stand in for this app's.
    found = Path(module.__file__ or "").resolve().parent
    if found != config.output.resolve():
        raise ConfigError(
            f"generated package not found at {config.output} (`{name}` is {found}): "
            "run `rsxgen build` first"
        )
    return module


def load_tasks(config: Config) -> Mapping[tuple[str, str], TaskEntry]:
    """The generated worker registry of the app (imports pydantic)."""
    return _package(config, "registry").TASKS  # type: ignore[no-any-return]


def load_schedules(config: Config) -> tuple[ScheduleEntry, ...]:
    """The generated schedule table of the app (light: no pydantic)."""
    return tuple(_package(config, "schedule").SCHEDULES)


def load_retries(config: Config) -> dict[tuple[str, str], int]:
    """Each task's `retries` as the generated `manifest.json` records them, for the views
    (reading JSON imports neither pydantic nor the app); empty when it cannot be read, and
    without the tasks it gives no `retries` for (a manifest built before retries)."""
    try:
        data = json.loads((config.output / "manifest.json").read_text(encoding="utf-8"))
        return {
            (str(service["name"]), str(task["name"])): int(task["retries"])
            for service in data["services"]
            for task in service["tasks"]
            if "retries" in task
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def lookup(tasks: Mapping[tuple[str, str], TaskEntry], service: str, task: str) -> TaskEntry:
    """Find a task or raise `UnknownTaskError` naming what exists."""
    entry = tasks.get((service, task))
    if entry is None:
        services = sorted({s for s, _ in tasks})
        if service not in services:
            raise UnknownTaskError(
                f"unknown service '{service}' (services: {', '.join(services) or 'none'})"
            )
        names = sorted(t for s, t in tasks if s == service)
        raise UnknownTaskError(
            f"unknown task '{service}.{task}' (tasks of {service}: {', '.join(names)})"
        )
    return entry


def load_status(
    tasks: Mapping[tuple[str, str], TaskEntry], state: TaskStatus[Any]
) -> TaskStatus[Any]:
    """`state` with a completed task's result in its declared type (`TaskEntry.load_result`).

    Other states, and a task no longer in the registry, keep the stored value: a failed
    task's result is its `{"error": ..., "type": ...}` object."""
    entry = tasks.get((state.service_name, state.task_name))
    if entry is None or state.status != Status.COMPLETED or state.result is None:
        return state
    return replace(state, result=entry.load_result(state.result))


def _plain_scalar(value: Any) -> bool:
    """Whether `value`, of exactly its annotation's type, is what pydantic's validation and
    JSON dump would give back unchanged: an int, a bool, a finite float or ASCII text (a
    worker checks each task's result, most of them such scalars)."""
    kind = type(value)
    if kind is int or kind is bool:
        return True
    if kind is float:
        return math.isfinite(value)
    return kind is str and value.isascii()


def _first_problem(error: ValidationError) -> str:
    """The first thing pydantic found wrong, in one line: `'x' at ['a']: input should be ...`."""
    problems = error.errors(include_url=False)
    first = problems[0]
    where = "".join(f"[{part!r}]" for part in first["loc"])
    text = f"{_shown(first['input'])}{f' at {where}' if where else ''}: "
    text += first["msg"][:1].lower() + first["msg"][1:]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return text


def _shown(value: Any) -> str:
    """A value in a message: its repr, shortened; only its type when Python cannot print it
    (an integer too long for decimal, alone or inside, or nesting too deep)."""
    try:
        return shorten(repr(value), 80)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} too large to show"


def bind(
    entry: TaskEntry, params: Mapping[str, Any] | None
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The task's function and its validated parameters, ready to call (imports pydantic).

    Raises `ParamsError` naming each bad field; the one place where every mode (queued,
    scheduled, immediate) turns a registry entry and stored params into a call.
    """
    from runtime.validation import validate

    model = validate(entry, params)
    # The model's fields as iterating it gives them, without its generator's cost.
    values = dict(model.__dict__)
    if model.__pydantic_extra__:
        values.update(model.__pydantic_extra__)
    return entry.load(), values

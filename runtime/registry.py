"""The shapes of the generated tables, and loading them for an app.

The generated `registry.py` and `schedule.py` build `TaskEntry` and `ScheduleEntry`
values; the runtime finds task functions only through them, never from names stored in
the database.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runtime.errors import ConfigError, UnknownTaskError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from runtime.config import Config


@dataclass(frozen=True)
class TaskEntry:
    """One task as the compiler saw it: where it lives, how it runs, what it takes."""

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
    retry_backoff: float = 10.0
    retry_on: tuple[str, ...] = ()
    unique: tuple[str, ...] | None = None
    unique_while: str = "pending"
    delay: float = 0.0
    result: Any = None

    def load(self) -> Callable[..., Any]:
        """Import the task's module (named by the generated table) and return the function."""
        module = importlib.import_module(self.module)
        return getattr(module, self.function)  # type: ignore[no-any-return]


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


def bind(
    entry: TaskEntry, params: Mapping[str, Any] | None
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The task's function and its validated parameters, ready to call (imports pydantic).

    Raises `ParamsError` naming each bad field; the one place where every mode (queued,
    scheduled, immediate) turns a registry entry and stored params into a call.
    """
    from runtime.validation import validate

    values = dict(validate(entry, params))
    return entry.load(), values

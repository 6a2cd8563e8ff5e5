"""The rsx task runtime: decorators for service modules and the API for applications.

Importing this package does no work: no connection, no table, no thread. The heavier
parts (the store, pydantic) load on first use of `Task`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.decorators import schedule, task
from runtime.errors import (
    BackendError,
    ConfigError,
    ParamsError,
    ResultError,
    TaskError,
    TaskNotFoundError,
    UnknownTaskError,
)
from runtime.instance import TaskInstance

if TYPE_CHECKING:
    from runtime.api import Task
    from runtime.state import TaskId, TaskStatus

__all__ = [
    "BackendError",
    "ConfigError",
    "ParamsError",
    "ResultError",
    "Task",
    "TaskError",
    "TaskId",
    "TaskInstance",
    "TaskNotFoundError",
    "TaskStatus",
    "UnknownTaskError",
    "schedule",
    "task",
]


def __getattr__(name: str) -> Any:
    if name == "Task":
        from runtime.api import Task

        return Task
    if name in ("TaskId", "TaskStatus"):
        from runtime import state

        return getattr(state, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")

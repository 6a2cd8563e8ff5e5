"""The `@task` and `@schedule` decorators.

They only attach metadata and return the function unchanged: the compiler reads the
decorators statically, and the worker finds functions through the generated registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def task(description: str, queue: str = "default", timeout: int | None = None) -> Callable[[F], F]:
    """Declare a module-level function as a task with a description, queue and timeout."""

    def mark(fn: F) -> F:
        fn.__rsx_task__ = {"description": description, "queue": queue, "timeout": timeout}  # type: ignore[attr-defined]
        return fn

    return mark


def schedule(cron: str) -> Callable[[F], F]:
    """Run a task on a cron schedule (five fields, read in the configured timezone)."""

    def mark(fn: F) -> F:
        fn.__rsx_schedule__ = cron  # type: ignore[attr-defined]
        return fn

    return mark

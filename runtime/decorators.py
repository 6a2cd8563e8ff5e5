"""The `@task` and `@schedule` decorators.

They return the function unchanged and record nothing: the compiler reads the decorators
statically (their arguments and defaults are its business, and it checks them), and the
worker finds functions through the generated registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def task(
    description: str, queue: str | None = None, timeout: int | None = None
) -> Callable[[F], F]:
    """Declare a module-level function as a task with a description, queue and timeout.

    Without a queue a task runs on `default`, a scheduled one on `scheduled`; without a
    timeout, `[tasks] default_timeout` applies.
    """
    return _unchanged


def schedule(cron: str) -> Callable[[F], F]:
    """Run a task on a cron schedule (five fields, read in the configured timezone)."""
    return _unchanged


def _unchanged(fn: F) -> F:
    """The decorated function itself."""
    return fn

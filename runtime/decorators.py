"""The `@task` and `@schedule` decorators.

They return the function unchanged and record nothing: the compiler reads the decorators
statically (their arguments and defaults are its business, and it checks them), and the
worker finds functions through the generated registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def task(
    description: str,
    queue: str | None = None,
    timeout: int | None = None,
    *,
    retries: int = 0,
    retry_backoff: float | None = None,
    retry_on: type[BaseException] | Sequence[type[BaseException]] = (),
    unique: bool = False,
    unique_key: str | Sequence[str] | None = None,
    unique_while: Literal["pending", "active"] = "pending",
    delay: float | None = None,
) -> Callable[[F], F]:
    """Declare a module-level function as a task with a description, queue and timeout.

    Without a queue a task runs on `default`, a scheduled one on `scheduled`; without a
    timeout, `[tasks] default_timeout` applies. A task that raises is run again up to
    `retries` times, `retry_backoff` seconds (default 10) doubled at each attempt later,
    if the exception is one of `retry_on` (any, when empty). `unique=True` (or
    `unique_key` naming parameters) makes a dispatch equal to a pending task's (with
    `unique_while="active"`: pending or running) return that task's id instead. `delay`
    holds back every dispatch by that many seconds (not allowed on scheduled tasks).
    """
    return _unchanged


def schedule(cron: str) -> Callable[[F], F]:
    """Run a task on a cron schedule (five fields, read in the configured timezone)."""
    return _unchanged


def _unchanged(fn: F) -> F:
    """The decorated function itself."""
    return fn

"""Retrying a failed attempt: whether it is retried, and when.

A task declared with `@task(..., retries=N)` runs up to N + 1 times. An attempt that
raises goes back to `pending` (same row, same id) when attempts remain and the exception
is an instance of one of `retry_on` (any `Exception` when `retry_on` is empty); it is
claimed again no earlier than `backoff_seconds` after it failed. A timed-out attempt counts
as one that raised `TimeoutError`. A task whose worker died (`stuck`) is never retried:
only the worker that ran an attempt to its end knows that it failed.

`retry_on` holds qualified names (`builtins.ConnectionError`, `services.demo.Flaky`),
resolved in the worker, after the task's module was imported, by importing the longest
prefix that is a module. A name that does not resolve to an exception class matches
nothing, and is logged once per process.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from runtime.limits import MAX_DURATION_SECONDS
from runtime.registry import TaskEntry

JITTER = (1.0, 1.25)
"""The random factor each wait is multiplied by: never shorter than the plain backoff, at
most a quarter longer, so that tasks that failed together do not all retry together."""

log = logging.getLogger(__name__)

_resolved: dict[str, type[BaseException] | None] = {}


def backoff_seconds(
    base: float, attempt: int, draw: Callable[[float, float], float] = random.uniform
) -> float:
    """How long to wait after failed attempt number `attempt` (1 for the first run):
    `base · 2^(attempt − 1)`, times a factor drawn from `JITTER`, and at most
    `MAX_DURATION_SECONDS` (ten years)."""
    if base <= 0:
        return 0.0
    plain = base * 2.0 ** min(max(attempt - 1, 0), 64)
    return float(min(plain * draw(*JITTER), MAX_DURATION_SECONDS))


@dataclass(frozen=True)
class Verdict:
    """What becomes of a failed attempt: `retry_at` (None: it ends as it is) and the line
    that says so in the task's log (None for a task without retries)."""

    retry_at: datetime | None
    note: str | None


def decide(
    entry: TaskEntry,
    attempt: int,
    error: type[BaseException],
    now: datetime,
    *,
    importing: bool = True,
) -> Verdict:
    """The verdict on attempt number `attempt` of `entry`'s task, which failed with
    `error` at `now`. With `importing=False` names of modules not yet imported are not
    resolved (the supervisor judging a timeout imports no application code)."""
    if entry.retries <= 0:
        return Verdict(None, None)
    total = entry.retries + 1
    if attempt > entry.retries:
        return Verdict(None, f"attempt {attempt} of {total} failed; no retries left")
    if not matches(entry.retry_on, error, importing=importing):
        names = ", ".join(entry.retry_on)
        return Verdict(
            None,
            f"attempt {attempt} of {total} failed with {error.__name__}, which retry_on "
            f"({names}) does not cover; not retried",
        )
    at = now + timedelta(seconds=backoff_seconds(entry.retry_backoff, attempt))
    return Verdict(at, f"attempt {attempt} of {total} failed; retrying at {moment(at)}")


def moment(at: datetime) -> str:
    """A retry time as the log shows it: UTC, to the millisecond."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def matches(names: Sequence[str], error: type[BaseException], *, importing: bool = True) -> bool:
    """Whether `error` is one of the exception classes named (any `Exception` when none)."""
    if not names:
        return issubclass(error, Exception)
    for name in names:
        kind = resolve(name, importing=importing)
        if kind is not None and issubclass(error, kind):
            return True
    return False


def resolve(name: str, *, importing: bool = True) -> type[BaseException] | None:
    """The exception class a qualified name stands for, or None (logged once per process)
    when it names no exception class."""
    if name in _resolved:
        return _resolved[name]
    found, why = _lookup(name, importing)
    if found is not None or importing:
        _resolved[name] = found
        if found is None:
            log.warning("retry_on names %s, which %s; it matches no exception", name, why)
    return found


def _lookup(name: str, importing: bool) -> tuple[type[BaseException] | None, str]:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None and module_name == "builtins":
            module = builtins
        if module is None and importing:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                missing = exc.name or ""
                if module_name == missing or module_name.startswith(missing + "."):
                    continue  # not a module: the name goes on with an attribute
                return None, f"cannot be imported ({type(exc).__name__}: {exc})"
            except Exception as exc:
                return None, f"cannot be imported ({type(exc).__name__}: {exc})"
        if module is None:
            continue
        value: object = module
        for attribute in parts[cut:]:
            value = getattr(value, attribute, None)
            if value is None:
                return None, f"is not defined in {module_name}"
        if isinstance(value, type) and issubclass(value, BaseException):
            return value, ""
        return None, "is not an exception class"
    return None, "cannot be imported"

"""Upper bounds shared by the config loader, the compiler and the runtime.

One place for every limit that a value must respect before it reaches the database or
`datetime` arithmetic, so that `rsxgen build` and the runtime reject the same values.
This module imports nothing, so the compiler and the processor can use it for free.
"""

from __future__ import annotations

INT32_MAX = 2_147_483_647
"""The largest value of a 32-bit INTEGER column (`timeout_seconds`, `server_id`, ...)."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The range of a 64-bit BIGINT column: task ids outside it name no task."""

MAX_INT_BITS = 13_000
"""Larger integers cannot be written in decimal (Python's default 4,300-digit limit), so
neither the compiler (defaults) nor the runtime (parameters) accepts them."""

MAX_DURATION_SECONDS = 315_360_000
"""Ten years: the longest timeout, temp-directory TTL or stuck-after delay accepted."""

MAX_DURATION_TEXT = "315360000 seconds (10 years)"

MAX_RETRIES = 100
"""The most retries `@task(retries=...)` accepts: backoff doubles with each attempt, so far
fewer are useful."""

DEFAULT_RETRY_BACKOFF_SECONDS = 10.0
"""The base of the exponential backoff when `@task` gives retries but no `retry_backoff`."""

MAX_RETENTION_DAYS = 36_500
"""A hundred years: the longest `task_retention_days` accepted."""

MAX_WORKER_IDLE_SECONDS = 3600
"""The longest a worker waits on an empty queue before it exits."""

MIN_OUTPUT_BYTES = 1_000
MAX_OUTPUT_BYTES = 1_000_000_000
"""The range of `max_log_bytes` and `max_result_bytes`."""


def is_task_id(value: int) -> bool:
    """Whether `value` fits the BIGINT id column, so that looking it up is meaningful."""
    return INT64_MIN <= value <= INT64_MAX

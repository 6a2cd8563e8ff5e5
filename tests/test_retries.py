"""Retries and delays without a database: the backoff, the verdict on a failed attempt,
`retry_on` names, a dispatch's `delay`/`run_at`, and the log kept across attempts."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from runtime import retries
from runtime.api import due_time
from runtime.errors import ParamsError
from runtime.limits import MAX_DURATION_SECONDS
from runtime.registry import TaskEntry
from runtime.retries import JITTER, backoff_seconds, decide, resolve
from runtime.tasklog import STUCK_LINE_ROOM, BoundedLog

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Flaky(ConnectionError):
    """An application's own exception class, named in `retry_on` by its qualified name."""


def entry(**options: Any) -> TaskEntry:
    class Params(BaseModel):
        pass

    return TaskEntry(
        service="demo",
        task="flaky",
        module="services.demo",
        function="flaky",
        queue="default",
        timeout=60,
        description="a flaky task",
        params=Params,
        **options,
    )


# -- the backoff ------------------------------------------------------------------------


@SETTINGS
@given(
    base=st.floats(min_value=0.001, max_value=10_000, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=150),
    factor=st.floats(min_value=JITTER[0], max_value=JITTER[1]),
)
def test_the_backoff_doubles_per_attempt_with_at_most_a_quarter_of_jitter(
    base: float, attempt: int, factor: float
) -> None:
    waited = backoff_seconds(base, attempt, lambda low, high: factor)
    plain = base * 2.0 ** (attempt - 1)
    if plain * factor <= MAX_DURATION_SECONDS:
        assert waited == pytest.approx(plain * factor)
        assert plain <= waited * (1 + 1e-12)
        assert waited <= plain * 1.25 * (1 + 1e-12)
    else:
        assert waited == MAX_DURATION_SECONDS
    assert math.isfinite(waited)


@SETTINGS
@given(base=st.floats(min_value=0.001, max_value=1000), attempt=st.integers(1, 30))
def test_the_real_jitter_never_waits_less_than_the_plain_backoff(base: float, attempt: int) -> None:
    plain = base * 2.0 ** (attempt - 1)
    for _ in range(20):
        waited = backoff_seconds(base, attempt)
        assert min(plain, MAX_DURATION_SECONDS) <= waited <= min(plain * 1.25, MAX_DURATION_SECONDS)


def test_a_zero_backoff_retries_at_once() -> None:
    assert backoff_seconds(0, 1) == 0.0
    assert backoff_seconds(0, 7) == 0.0


# -- the verdict on a failed attempt ----------------------------------------------------


def test_a_task_without_retries_fails_as_before() -> None:
    assert decide(entry(), 1, ValueError, NOW) == retries.Verdict(None, None)


def test_a_failed_attempt_is_retried_while_attempts_remain() -> None:
    task = entry(retries=2, retry_backoff=10.0)
    first = decide(task, 1, ValueError, NOW)
    assert first.retry_at is not None
    assert NOW + timedelta(seconds=10) <= first.retry_at <= NOW + timedelta(seconds=12.5)
    assert first.note is not None
    assert first.note.startswith("attempt 1 of 3 failed; retrying at 2026-12-01 12:00:1")
    second = decide(task, 2, ValueError, NOW)
    assert second.retry_at is not None
    assert NOW + timedelta(seconds=20) <= second.retry_at <= NOW + timedelta(seconds=25)
    last = decide(task, 3, ValueError, NOW)
    assert last == retries.Verdict(None, "attempt 3 of 3 failed; no retries left")


def test_retry_on_limits_the_exceptions_retried() -> None:
    task = entry(retries=1, retry_on=("builtins.ConnectionError", f"{__name__}.Flaky"))
    assert decide(task, 1, ConnectionResetError, NOW).retry_at is not None
    assert decide(task, 1, Flaky, NOW).retry_at is not None
    refused = decide(task, 1, ValueError, NOW)
    assert refused.retry_at is None
    assert refused.note == (
        "attempt 1 of 2 failed with ValueError, which retry_on (builtins.ConnectionError, "
        f"{__name__}.Flaky) does not cover; not retried"
    )


def test_an_empty_retry_on_covers_every_exception_but_not_exits() -> None:
    task = entry(retries=1)
    assert decide(task, 1, KeyError, NOW).retry_at is not None
    assert decide(task, 1, TimeoutError, NOW).retry_at is not None
    assert decide(task, 1, KeyboardInterrupt, NOW).retry_at is None
    assert decide(task, 1, SystemExit, NOW).retry_at is None


def test_a_timeout_counts_as_timeout_error() -> None:
    for names, retried in (
        (("builtins.TimeoutError",), True),
        (("builtins.OSError",), True),
        (("builtins.ConnectionError",), False),
        ((f"{__name__}.Flaky",), False),
    ):
        task = entry(retries=1, retry_on=names)
        verdict = decide(task, 1, TimeoutError, NOW, importing=False)
        assert (verdict.retry_at is not None) is retried, names


# -- retry_on names ---------------------------------------------------------------------


def test_names_resolve_through_the_longest_importable_module() -> None:
    assert resolve("builtins.ConnectionError") is ConnectionError
    assert resolve(f"{__name__}.Flaky") is Flaky
    assert resolve("json.JSONDecodeError") is __import__("json").JSONDecodeError
    assert resolve("concurrent.futures.TimeoutError") is TimeoutError


def test_a_name_that_is_no_exception_class_matches_nothing_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.retries")
    for _ in range(3):
        assert resolve("nowhere_at_all.Missing") is None
        assert resolve("builtins.len") is None
        assert resolve(f"{__name__}.NotDefinedHere") is None
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert "nowhere_at_all.Missing, which cannot be imported" in messages[0]
    assert "builtins.len, which is not an exception class" in messages[1]
    assert f"NotDefinedHere, which is not defined in {__name__}" in messages[2]
    task = entry(retries=1, retry_on=("nowhere_at_all.Missing",))
    assert decide(task, 1, ValueError, NOW).retry_at is None


# -- a dispatch's delay and run_at ------------------------------------------------------


def test_a_delay_or_run_at_gives_the_start_time() -> None:
    assert due_time(NOW, None, None) is None
    assert due_time(NOW, 0, None) is None
    assert due_time(NOW, 1.5, None) == NOW + timedelta(seconds=1.5)
    assert due_time(NOW, 60, None) == NOW + timedelta(minutes=1)
    naive = datetime(2026, 12, 1, 13, 0)
    assert due_time(NOW, None, naive) == naive.replace(tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    assert due_time(NOW, None, datetime(2026, 12, 1, 14, 0, tzinfo=paris)) == datetime(
        2026, 12, 1, 13, 0, tzinfo=UTC
    )
    assert due_time(NOW, None, NOW - timedelta(hours=1)) is None


@pytest.mark.parametrize(
    ("delay", "run_at", "message"),
    [
        (5, NOW, "give delay or run_at, not both"),
        (-1, None, "delay must be from 0 to 315360000 seconds (10 years), not -1"),
        (math.nan, None, "not nan"),
        (math.inf, None, "not inf"),
        (MAX_DURATION_SECONDS + 1, None, "not 315360001"),
        (10**5000, None, "not a larger integer"),
        ("5", None, "delay must be a number of seconds, not str"),
        (True, None, "delay must be a number of seconds, not bool"),
        (None, "2026-12-01", "run_at must be a datetime, not str"),
    ],
    ids=["both", "negative", "nan", "inf", "too-long", "huge", "str", "bool", "run_at-str"],
)
def test_bad_delays_are_one_line_params_errors(delay: Any, run_at: Any, message: str) -> None:
    with pytest.raises(ParamsError) as caught:
        due_time(NOW, delay, run_at)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


# -- the log kept across attempts -------------------------------------------------------


def test_a_retried_task_log_stays_within_the_limit_over_its_attempts() -> None:
    limit = 2000
    stored = "".join(f"[attempt 1] line {n}\n" for n in range(60))  # about 1,300 bytes
    log = BoundedLog(limit)
    log.seed(stored)
    assert log.take() is None, "a log that fits is not written again"
    for n in range(60):
        log.add(f"[attempt 2] line {n}\n")
    taken = log.take(final=True)
    assert taken is not None
    text, replace = taken
    assert replace, "the earlier attempts' lines had to make way: the row is rewritten"
    assert len(text.encode()) <= limit - STUCK_LINE_ROOM
    assert text.startswith("[attempt 1] line 0\n")
    assert text.endswith("[attempt 2] line 59\n")
    assert "lines truncated" in text

"""Retries with backoff, on every backend, with real workers: `@task(retries=N,
retry_backoff=S, retry_on=(...))`.

A failed attempt goes back to pending on the same row, waits its backoff and runs again;
after the last attempt the task fails as before. The demo tasks count their runs in a file
(one line per run, holding the time it started), so each test sees every attempt."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime import Task
from runtime.clock import utcnow
from runtime.state import TaskStatus
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def _runs(path: Path) -> list[float]:
    """When each run of a demo task started (`time.time()`), in order."""
    if not path.exists():
        return []
    return [float(line) for line in path.read_text(encoding="utf-8").split()]


def _waiting_retry(app: App, task_id: int, attempts: int) -> TaskStatus:
    """Poll until the task is pending again after `attempts` attempts."""

    def probe() -> TaskStatus | None:
        status = app.status(task_id)
        return status if status.status == "pending" and status.attempts == attempts else None

    return wait_until(probe, 30, f"task {task_id} to wait for its retry", every=0.02)


def test_a_flaky_task_is_retried_after_its_backoff_until_it_completes(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    path = app.root / "runs"
    task_id = Task.dispatch("demo", "flaky", {"path": str(path), "failures": 2})

    done = app.wait_status(task_id)
    assert done.status == "completed", done.log
    assert done.result == 3
    assert done.attempts == 3
    assert done.id == task_id
    first, second, third = _runs(path)
    assert second - first >= 0.2, "the first retry came before retry_backoff"
    assert third - second >= 0.4, "the second retry came before retry_backoff * 2"
    log = done.log
    assert log.count("Task failed: TransientError: run") == 2
    assert "attempt 1 of 3 failed; retrying at" in log
    assert "attempt 2 of 3 failed; retrying at" in log
    assert log.index("run 1") < log.index("attempt 1 of 3") < log.index("run 2")
    assert log.index("run 2") < log.index("attempt 2 of 3") < log.index("run 3")

    shown = app.command("status", str(task_id))
    assert shown.returncode == 0, shown.stderr
    assert "  status     completed\n  attempts   3 of 3\n" in shown.stdout
    [line] = app.command("tasks").stdout.splitlines()[1:]
    assert line.split()[:6] == [str(task_id), "demo.flaky", "default", "completed", "(3", "of"]


def test_a_task_that_always_fails_ends_failed_after_its_last_attempt(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    path = app.root / "runs"
    task_id = Task.dispatch("demo", "always_fails", {"path": str(path)})

    done = app.wait_status(task_id)
    assert done.status == "failed"
    assert done.attempts == 3
    assert len(_runs(path)) == 3
    assert done.result == {"error": "run 3 failed", "type": "TransientError"}
    assert done.log.count("Traceback (most recent call last)") == 3
    assert "attempt 3 of 3 failed; no retries left" in done.log
    assert done.completed_at is not None and done.next_run_at is not None


def test_an_error_retry_on_does_not_name_fails_at_once(make_app: Callable[..., App]) -> None:
    app = make_app(worker_idle_seconds=5)
    bug = Task.dispatch("demo", "picky", {"path": str(app.root / "bug"), "error": "value"})
    done = app.wait_status(bug)
    assert done.status == "failed"
    assert done.attempts == 1
    assert len(_runs(app.root / "bug")) == 1
    assert done.result == {"error": "a bug, not worth retrying", "type": "ValueError"}
    assert (
        "attempt 1 of 4 failed with ValueError, which retry_on "
        "(services.demo.TransientError) does not cover; not retried"
    ) in done.log

    named = Task.dispatch("demo", "picky", {"path": str(app.root / "named"), "error": "transient"})
    assert app.wait_status(named).status == "failed"
    assert app.status(named).attempts == 4
    assert len(_runs(app.root / "named")) == 4


def test_a_waiting_retry_holds_no_worker_and_the_next_processor_run_after_it_runs_it(
    make_app: Callable[..., App],
) -> None:
    app = make_app()  # worker_idle_seconds = 0: the worker leaves when nothing is due
    path = app.root / "runs"
    task_id = Task.dispatch("demo", "patient", {"path": str(path)})  # retry_backoff = 2

    waiting = _waiting_retry(app, task_id, attempts=1)
    [failed_at] = _runs(path)
    assert waiting.next_run_at is not None
    backoff = waiting.next_run_at.timestamp() - failed_at
    assert 2.0 <= backoff <= 2.0 * 1.25 + 1.0, f"retry {backoff:.3f} s after the failed run"
    assert waiting.worker_pid is None and waiting.started_at is None
    assert waiting.result is None and waiting.completed_at is None
    assert "attempt 1 of 2 failed; retrying at" in waiting.log

    shown = app.command("status", str(task_id))
    assert shown.returncode == 0, shown.stderr
    assert "  status     pending\n  attempts   1 of 2\n  next run   " in shown.stdout
    assert "pending (1 of 2)" in app.command("tasks").stdout

    app.wait_idle()
    assert app.registered_workers() == []
    early = app.command("process")
    assert early.returncode == 0, early.stderr
    if utcnow() < waiting.next_run_at:
        assert app.registered_workers() == [] and app.status(task_id).status == "pending"

    wait_until(lambda: utcnow() >= waiting.next_run_at, 10, "the retry's time")
    assert app.command("process").returncode == 0
    done = app.wait_status(task_id)
    assert done.status == "completed"
    assert done.attempts == 2 and done.result == 2
    assert done.started_at is not None and done.started_at >= waiting.next_run_at


def test_a_timed_out_attempt_is_retried_and_the_last_one_is_marked_stuck(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    path = app.root / "runs"
    task_id = Task.dispatch("demo", "hang_retried", {"path": str(path)})  # timeout 1 s

    done = app.wait_status(task_id, timeout=30)
    assert done.status == "stuck"
    assert done.attempts == 2
    first, second = _runs(path)
    # The timeout counts from the claim, a little before the run wrote its time; the
    # backoff counts from the kill.
    assert second - first >= 0.2 + 0.5
    assert (
        "Task exceeded its timeout of 1 s and was killed; attempt 1 of 2 failed; retrying at"
    ) in done.log
    assert (
        "Task exceeded its timeout of 1 s and was killed; attempt 2 of 2 failed; "
        "no retries left; marked stuck"
    ) in done.log


def test_a_task_whose_worker_died_is_stuck_and_never_retried(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5)
    task_id = Task.dispatch("demo", "gated_retried", {"gate": str(app.root / "never")})
    running = app.wait_status(task_id, "running")
    assert running.worker_pid is not None and running.attempts == 1

    os.kill(running.worker_pid, signal.SIGKILL)
    stuck = app.wait_status(task_id)
    assert stuck.status == "stuck"
    assert "died while running the task (killed by signal 9)" in stuck.log
    assert app.command("process").returncode == 0
    again = app.status(task_id)
    assert again.status == "stuck" and again.attempts == 1
    assert "retrying" not in again.log


def test_a_task_waiting_for_its_retry_is_cancelled_at_once(make_app: Callable[..., App]) -> None:
    app = make_app()
    task_id = Task.dispatch("demo", "patient", {"path": str(app.root / "runs")})
    _waiting_retry(app, task_id, attempts=1)

    assert Task.cancel(task_id) is True
    status = app.status(task_id)
    assert status.status == "cancelled" and status.attempts == 1
    wait_until(lambda: utcnow() >= (status.next_run_at or utcnow()), 10, "the retry's time")
    assert app.command("process").returncode == 0
    app.wait_idle()
    assert app.status(task_id).status == "cancelled"
    assert len(_runs(app.root / "runs")) == 1


def test_an_attempt_that_fails_after_its_cancel_was_requested_is_not_retried(
    make_app: Callable[..., App],
) -> None:
    app = make_app(worker_idle_seconds=5, cancel_grace_seconds=60)
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "gated_then_fails", {"gate": str(gate)})
    wait_until(lambda: "waiting for the gate" in app.status(task_id).log, 30, "the task to wait")

    assert Task.cancel(task_id) is True
    assert app.status(task_id).cancel_requested_at is not None
    gate.touch()  # the task raises without having looked at task.cancelled()

    done = app.wait_status(task_id, "completed", "failed", "stuck", "cancelled")
    assert done.status == "cancelled", done.log
    assert done.attempts == 1
    assert "retrying" not in done.log
    assert "Task stopped after its cancel was requested" in done.log


def test_a_task_unique_while_active_keeps_its_key_while_it_waits_for_its_retry(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    path = str(app.root / "runs")
    task_id = Task.dispatch("demo", "patient_unique", {"path": path})  # retry_backoff = 2
    _waiting_retry(app, task_id, attempts=1)

    assert Task.dispatch("demo", "patient_unique", {"path": path}) == task_id
    wait_until(lambda: utcnow() >= (app.status(task_id).next_run_at or utcnow()), 10, "its time")
    assert app.command("process").returncode == 0
    assert app.wait_status(task_id).status == "completed"
    assert Task.dispatch("demo", "patient_unique", {"path": path}) != task_id

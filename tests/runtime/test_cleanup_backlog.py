"""The daily old-task cleanup on a large backlog: it deletes every expired row in batches,
each its own short transaction, so dispatches made meanwhile never wait long."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from runtime import Task
from runtime.clock import to_db, utcnow
from runtime.schema import tasks
from tests.runtime.helpers import App

pytestmark = pytest.mark.slow

BACKLOG = 300_000
CHUNK = 10_000
DISPATCH_EVERY_S = 0.05
SLOWEST_DISPATCH_S = 2.0


def _insert_backlog(app: App) -> None:
    """BACKLOG completed rows that ended 31 days ago (retention: 30), inserted in bulk."""
    ended = to_db(utcnow() - timedelta(days=31))
    row = {
        "server_id": 1, "service_name": "demo", "task_name": "add", "queue_name": "default",
        "execution_mode": "queued", "status": "completed", "params": "{}", "result": "0",
        "timeout_seconds": 60, "has_temp_directory": False, "created_at": ended,
        "updated_at": ended, "started_at": ended, "completed_at": ended,
    }
    for _ in range(BACKLOG // CHUNK):
        with app.store.write() as conn:
            conn.execute(insert(tasks), [row] * CHUNK)


def test_the_old_task_cleanup_deletes_a_large_backlog_while_dispatches_stay_fast(
    app: App,
) -> None:
    warm = Task.dispatch("demo", "add", {"a": -1})  # loads the registry, as a running app has
    assert app.wait_status(warm).status == "completed"
    _insert_backlog(app)
    durations: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def dispatch() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                Task.dispatch("demo", "add", {"a": len(durations)})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            durations.append(time.monotonic() - began)
            stop.wait(DISPATCH_EVERY_S)

    dispatcher = threading.Thread(target=dispatch, name="dispatcher")
    dispatcher.start()
    try:
        began = time.monotonic()
        done = app.command("run", "cleanup_service", "cleanup_old_tasks", timeout=600)
        took = time.monotonic() - began
    finally:
        stop.set()
        dispatcher.join()

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f'{{"deleted": {BACKLOG}}}'
    assert errors == []
    assert len(durations) >= min(20, took / (DISPATCH_EVERY_S * 4)), (len(durations), took)
    assert max(durations) < SLOWEST_DISPATCH_S, sorted(durations)[-5:]
    with app.store.read() as conn:
        left = conn.execute(select(func.count()).select_from(tasks)).scalar()
    assert left == 1 + len(durations)

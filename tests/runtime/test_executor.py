"""The executor's cost: how many write transactions a short task takes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from sqlalchemy import Connection

import runtime.executor
from runtime.api import context
from runtime.executor import Executor
from runtime.store import Store
from runtime.worker import register
from tests.runtime.helpers import App


def test_a_short_task_that_logs_costs_two_write_transactions(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [app.insert_row("demo", "add", "default", {"a": n}) for n in range(5)]
    worker_id = register(app.config, app.store, "default")
    assert worker_id is not None

    writes: list[str] = []
    real_write = Store.write

    def counting_write(self: Store, lock: str = "rsx_tasks") -> AbstractContextManager[Connection]:
        writes.append(lock)
        return real_write(self, lock)

    monkeypatch.setattr(Store, "write", counting_write)
    # Lines reach the row at most every FLUSH_INTERVAL_S; widened so a loaded machine cannot
    # stall a task past it and add a flush this test is not about.
    monkeypatch.setattr(runtime.executor, "FLUSH_INTERVAL_S", 5.0)
    reports: list[str] = []
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        Executor(
            app.config, app.store, context().tasks, "default", worker_id, reports.append,
            os.getppid(),
        ).run()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert reports[-1] == "retired"
    assert [r.split()[0] for r in reports[:-1]] == ["start", "end"] * 5
    assert len(writes) == 2 * len(ids) + 1, writes  # claim + finish per task, then retire
    for task_id in ids:
        status = app.status(task_id)
        assert status.status == "completed"
        assert f"adding {task_id - ids[0]} and 0" in status.log
    assert app.registered_workers() == []


@pytest.fixture(autouse=True)
def _no_stray_flush_threads() -> Iterator[None]:
    import threading

    yield
    assert not [t for t in threading.enumerate() if t.name == "rsx-flush"]

"""The executor's cost: how many write transactions a short task takes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlalchemy import Connection

import runtime.executor
from runtime import pipe
from runtime.api import context
from runtime.executor import Executor
from runtime.store import Store
from runtime.worker import register
from tests.runtime.helpers import App


def test_a_short_task_that_logs_costs_one_write_transaction(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [app.insert_row("demo", "add", "default", {"a": n}) for n in range(5)]
    worker_id = register(app.config, app.store, "default")
    assert worker_id is not None

    writes: list[str] = []
    real_write, real_raw_write = Store.write, Store.raw_write

    def counting_write(
        self: Store, lock: str | None = None
    ) -> AbstractContextManager[Connection]:
        writes.append(str(lock))
        return real_write(self, lock)

    def counting_raw_write(self: Store) -> AbstractContextManager[Any]:
        writes.append("hot path")
        return real_raw_write(self)

    monkeypatch.setattr(Store, "write", counting_write)
    monkeypatch.setattr(Store, "raw_write", counting_raw_write)
    # Lines reach the row at most every FLUSH_INTERVAL_S; widened so a loaded machine cannot
    # stall a task past it and add a flush this test is not about.
    monkeypatch.setattr(runtime.executor, "FLUSH_INTERVAL_S", 5.0)
    reports: list[pipe.Message] = []
    registry = context().tasks
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        Executor(
            app.config, app.store, lambda: registry, "default", worker_id,
            lambda *messages: reports.extend(messages),
            os.getppid(),
        ).run()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert reports[-1].kind is pipe.Kind.RETIRED
    assert [r.kind.value for r in reports[:-1]] == ["start", "end"] * 5
    # The first claim; then each task's finish claims the next; then the slot is given up.
    assert len(writes) == len(ids) + 2, writes
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

"""Rows in every status for the operator-view tests, inserted directly with known times."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runtime.clock import to_db
from tests.runtime.helpers import App


@dataclass(frozen=True)
class Seeded:
    """The ids of the rows `seed` inserted, by what they stand for."""

    old_completed: int
    completed: list[int]
    failed: int
    stuck: int
    running: int
    pending: int
    other_pending: int
    scheduled_on_time: int
    scheduled_late: int


def insert(
    app: App,
    service: str,
    task: str,
    queue: str,
    status: str,
    created: datetime,
    ran: float | None = None,
    params: Any = None,
    **values: Any,
) -> int:
    """A row of `status`, created at `created`, started a second later and (if ended) done
    `ran` seconds after that; params `{"n": 1}` unless given."""
    started = created + timedelta(seconds=1)
    extra: dict[str, Any] = {"status": status, "created_at": to_db(created)}
    if status != "pending":
        extra["started_at"] = to_db(started)
    if ran is not None:
        extra["completed_at"] = to_db(started + timedelta(seconds=ran))
    given = {"n": 1} if params is None else params
    return app.insert_row(service, task, queue, given, **(extra | values))


def seed(app: App, now: datetime) -> Seeded:
    """Three hours of history: completed runs of demo.add taking 1..10 s, one failure and
    one stuck run of demo.fail, a running demo.gated at 40 %, pending tasks on two queues,
    one run older than a day, and one on-time and one late run of the built-in schedules;
    inserted in the order of their creation, as ids follow it."""
    minutes = [now - timedelta(minutes=m) for m in range(200, 0, -1)]
    old = insert(app, "demo", "add", "default", "completed", now - timedelta(days=3), ran=50)
    completed = [
        insert(app, "demo", "add", "default", "completed", minutes[10 + i], ran=float(i + 1))
        for i in range(10)
    ]
    slot = now - timedelta(hours=2)
    on_time = insert(
        app, "cleanup_service", "cleanup_old_tasks", "scheduled", "completed", slot, ran=1.0,
        execution_mode="scheduled", scheduled_at=to_db(slot),
    )  # fmt: skip
    late = insert(
        app, "cleanup_service", "cleanup_temp_directories", "scheduled", "completed",
        slot + timedelta(minutes=5), ran=1.0,
        execution_mode="scheduled", scheduled_at=to_db(slot),
    )  # fmt: skip
    failed = insert(
        app, "demo", "fail", "default", "failed", minutes[150], ran=2.0,
        result=json.dumps({"error": "boom", "type": "ValueError"}),
        status_log="[2024-01-01 00:00:00] about to fail\n",
    )  # fmt: skip
    stuck = insert(app, "demo", "fail", "default", "stuck", minutes[160], ran=30.0)
    running = insert(
        app, "demo", "gated", "video", "running", minutes[190],
        status_data=json.dumps({"progress": 40}), worker_pid=1,
    )  # fmt: skip
    pending = insert(app, "demo", "add", "default", "pending", minutes[195])
    other = insert(app, "demo", "record", "video", "pending", minutes[196])
    return Seeded(old, completed, failed, stuck, running, pending, other, on_time, late)

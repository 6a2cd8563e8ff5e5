"""The JSON shapes the dashboard serves: a task as `GET /api/tasks/{id}` returns it.

The polling shape of docs/runtime.md (`status`, `progress`, `log`, `result`) plus the
task's identity, params and times. Timestamps are ISO 8601 UTC.
"""

from __future__ import annotations

from typing import Any

from runtime.state import TaskStatus
from runtime.summaries import iso


def task_data(status: TaskStatus, with_log: bool = True) -> dict[str, Any]:
    """One task as the API returns it (without the log when `with_log` is False)."""
    data: dict[str, Any] = {
        "id": status.id,
        "service": status.service_name,
        "task": status.task_name,
        "queue": status.queue_name,
        "execution_mode": status.execution_mode.value,
        "status": status.status.value,
        "progress": status.get("progress"),
        "result": status.result,
        "params": dict(status.params),
        "status_data": dict(status.status_data),
        "created_at": iso(status.created_at),
        "started_at": iso(status.started_at),
        "completed_at": iso(status.completed_at),
        "attempts": status.attempts,
        "next_run_at": iso(status.next_run_at),
        "cancel_requested_at": iso(status.cancel_requested_at),
    }
    if with_log:
        data["log"] = status.log
    return data

"""A task row as the application sees it: `TaskStatus`, frozen, built from a `_tasks` row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

from runtime.clock import from_db


class Status(StrEnum):
    """The six states of a task row; a `str`, so `status == "completed"` holds."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STUCK = "stuck"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the task has ended (it will not change state on its own any more)."""
        return self in (Status.COMPLETED, Status.FAILED, Status.STUCK, Status.CANCELLED)

    @classmethod
    def ended_values(cls) -> tuple[str, ...]:
        """The values of every ended status, for `status IN (...)`."""
        return tuple(status.value for status in cls if status.finished)


class ExecutionMode(StrEnum):
    """How a task row came to be: dispatched (`queued`) or started by its schedule."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"


def loads(text: str | None, default: Any = None) -> Any:
    """A JSON column's value, `default` when NULL."""
    if text is None:
        return default
    return json.loads(text)


@dataclass(frozen=True)
class TaskStatus:
    """A snapshot of one task: its state, status data, log and result.

    Timestamps are timezone-aware UTC (None until set). `get(key)` reads one status value,
    e.g. `status.get("progress", 0)`.
    """

    id: int
    status: Status
    service_name: str
    task_name: str
    queue_name: str
    execution_mode: ExecutionMode
    params: Mapping[str, Any] = field(default_factory=dict)
    status_data: Mapping[str, Any] = field(default_factory=dict)
    log: str = ""
    result: Any = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    next_run_at: datetime | None = None
    timeout_seconds: int = 0
    worker_pid: int | None = None
    server_id: int = 1
    attempts: int = 0
    cancel_requested_at: datetime | None = None
    """When a cancel was asked of the task while it ran (None: never)."""

    @classmethod
    def from_row(cls, row: Any) -> TaskStatus:
        """Build from a `_tasks` row: a SQLAlchemy Row, a mapping of its columns, or any
        object with its columns as attributes."""
        if isinstance(row, Mapping):
            row = SimpleNamespace(**row)
        return cls(
            id=int(row.id),
            status=Status(row.status),
            service_name=row.service_name,
            task_name=row.task_name,
            queue_name=row.queue_name,
            execution_mode=ExecutionMode(row.execution_mode),
            params=loads(row.params, {}),
            status_data=loads(row.status_data, {}) or {},
            log=row.status_log or "",
            result=loads(row.result),
            created_at=from_db(row.created_at),
            started_at=from_db(row.started_at),
            completed_at=from_db(row.completed_at),
            next_run_at=from_db(row.next_run_at),
            timeout_seconds=int(row.timeout_seconds),
            worker_pid=row.worker_pid,
            server_id=int(row.server_id),
            attempts=int(getattr(row, "attempts", 0) or 0),
            cancel_requested_at=from_db(getattr(row, "cancel_requested_at", None)),
        )

    def get(self, key: str, default: Any = None) -> Any:
        """One value of the status data, or `default`."""
        return self.status_data.get(key, default)

    @property
    def finished(self) -> bool:
        """Whether the task has completed, failed, been marked stuck or been cancelled."""
        return self.status.finished

    def to_dict(self) -> dict[str, Any]:
        """Every attribute as JSON-ready data (timestamps ISO 8601 UTC)."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            data[name] = value
        return data

"""The values the operator views show: plain frozen records the store's view queries return.

`TaskSummary` is a task row without its log, params and result (a listing's line);
`QueueCounts`, `TaskStats`, `EndedCounts` and `ScheduledRun` are aggregates. Each turns
into JSON-ready data with `to_dict()` (timestamps ISO 8601 UTC).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from runtime.state import Status


def iso(moment: datetime | None) -> str | None:
    """A timestamp as ISO 8601 text, None kept."""
    return None if moment is None else moment.isoformat()


def progress_of(status_data: str | None) -> Any:
    """`status_data.progress` of a stored row, or None (also for unreadable data)."""
    if not status_data:
        return None
    try:
        data = json.loads(status_data)
    except ValueError:
        return None
    return data.get("progress") if isinstance(data, dict) else None


@dataclass(frozen=True)
class TaskSummary:
    """One task as a listing shows it."""

    id: int
    service_name: str
    task_name: str
    queue_name: str
    status: Status
    execution_mode: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    progress: Any = None
    attempts: int = 0
    next_run_at: datetime | None = None

    def took(self, now: datetime) -> timedelta | None:
        """How long it ran: to its end, or until `now` while running; None if never started."""
        if self.started_at is None:
            return None
        end = self.completed_at or (now if self.status == Status.RUNNING else None)
        return None if end is None else max(end - self.started_at, timedelta(0))

    def to_dict(self, now: datetime) -> dict[str, Any]:
        took = self.took(now)
        return {
            "id": self.id,
            "service": self.service_name,
            "task": self.task_name,
            "queue": self.queue_name,
            "status": self.status.value,
            "execution_mode": self.execution_mode,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "took_seconds": None if took is None else round(took.total_seconds(), 3),
            "progress": self.progress if self.status == Status.RUNNING else None,
            "attempts": self.attempts,
            "next_run_at": iso(self.next_run_at),
        }


@dataclass(frozen=True)
class QueueCounts:
    """One queue's tasks now: claimable pending, running, and the oldest pending's id and
    creation time."""

    pending: int = 0
    running: int = 0
    oldest_pending_id: int | None = None
    oldest_pending_at: datetime | None = None


@dataclass(frozen=True)
class TaskStats:
    """One task's runs that ended in a window, and its latest run.

    `runs` counts completed, failed, stuck and cancelled runs; `p50`/`p95` are nearest-rank
    percentiles of the duration (start to end, in seconds) of the completed and failed
    ones. `last_*` describe the run that started last among those and the running ones.
    """

    service_name: str
    task_name: str
    runs: int = 0
    completed: int = 0
    failed: int = 0
    stuck: int = 0
    cancelled: int = 0
    p50: float | None = None
    p95: float | None = None
    last_id: int | None = None
    last_status: Status | None = None
    last_started_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.service_name}.{self.task_name}"

    @property
    def failed_share(self) -> float | None:
        """Failed runs as a percentage of the runs (None without runs)."""
        return None if self.runs == 0 else 100.0 * self.failed / self.runs

    def to_dict(self) -> dict[str, Any]:
        share = self.failed_share
        return {
            "task": self.key,
            "runs": self.runs,
            "completed": self.completed,
            "failed": self.failed,
            "failed_percent": None if share is None else round(share, 2),
            "stuck": self.stuck,
            "cancelled": self.cancelled,
            "p50_seconds": self.p50,
            "p95_seconds": self.p95,
            "last_run": None
            if self.last_id is None
            else {
                "id": self.last_id,
                "status": None if self.last_status is None else self.last_status.value,
                "started_at": iso(self.last_started_at),
            },
        }


@dataclass(frozen=True)
class EndedCounts:
    """Runs of one task that ended in one status within a time span, with the durations
    of those that ran (seconds): their sum, and how many took at most each bound."""

    count: int
    duration_count: int
    duration_sum: float
    buckets: Mapping[float, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduledRun:
    """A run that a schedule released: its slot and when it started."""

    id: int
    status: Status
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None

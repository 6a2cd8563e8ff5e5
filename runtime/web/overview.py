"""What the dashboard's overview shows: queue load, recent failures, stuck tasks and
schedules, read with the store methods `python -m runtime.stats` uses.

Every query is an index read (see `runtime.store.views`), so the overview stays quick on
a table of millions of rows; `/overview.json` serves the same data for the live refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.config import Config
from runtime.punctuality import ScheduleState, schedules_or_reason
from runtime.queues import QueuesView, collect_queues
from runtime.state import Status
from runtime.store import Store
from runtime.summaries import TaskSummary, iso

LISTED = 10
"""How many recent failures and stuck tasks the overview lists."""
COUNT_CAP = 10_000
"""The failed and stuck rows are counted up to this many (shown as `10000+`)."""


@dataclass(frozen=True)
class Overview:
    """The overview at `now`."""

    now: datetime
    queues: QueuesView
    failed: tuple[TaskSummary, ...]
    stuck: tuple[TaskSummary, ...]
    counts: dict[Status, int]
    schedules: tuple[ScheduleState, ...]
    schedules_error: str | None

    @property
    def busiest(self) -> int:
        """The largest pending count of any queue (the scale of the pending bars)."""
        return max([queue.pending for queue in self.queues.queues] + [1])

    def count(self, status: str) -> str:
        """How many rows the table holds in `status` (failed or stuck), as shown."""
        found = self.counts.get(Status(status), 0)
        return f"{found}+" if found >= COUNT_CAP else str(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": iso(self.now),
            **self.queues.to_dict(self.now),
            "counts": {status.value: count for status, count in self.counts.items()},
            "counts_cap": COUNT_CAP,
            "failed": [task.to_dict(self.now) for task in self.failed],
            "stuck": [task.to_dict(self.now) for task in self.stuck],
            "schedules": [state.to_dict(self.now) for state in self.schedules],
            "schedules_error": self.schedules_error,
        }


def collect_overview(store: Store, config: Config, now: datetime) -> Overview:
    """Read the overview from the database."""
    schedules, reason = schedules_or_reason(store, config, now)
    return Overview(
        now=now,
        queues=collect_queues(store, config, now),
        failed=tuple(store.recently_ended(Status.FAILED, LISTED)),
        stuck=tuple(store.recently_ended(Status.STUCK, LISTED)),
        counts=store.status_counts((Status.FAILED, Status.STUCK), COUNT_CAP),
        schedules=tuple(schedules),
        schedules_error=reason,
    )

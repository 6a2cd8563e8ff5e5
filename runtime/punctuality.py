"""Schedules as the operator views show them: the next run, and whether the last run of
each started on time.

A released run is **on time** when it started within `ON_TIME_S` (120 s) of its slot
(`scheduled_at`): cron starts the processor once a minute, so a due run is released up
to 60 s after its slot, and a worker is allowed another 60 s to take it. A run that
started later is *late*; one not started when that allowance has passed is *late* and
still waiting. The next run is the upcoming row's `next_run_at`, or, for a schedule the
processor has not seen yet, the slot computed from its cron (marked `computed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runtime.config import Config
from runtime.display import duration
from runtime.errors import ConfigError
from runtime.registry import ScheduleEntry, load_schedules
from runtime.scheduler import next_run, schedule_key
from runtime.store import Store
from runtime.summaries import ScheduledRun, iso

ON_TIME_S = 120
"""How long after its slot a scheduled run may start and still be on time."""


@dataclass(frozen=True)
class ScheduleState:
    """One schedule: its cron, next run and last released run."""

    key: str
    cron: str
    queue: str
    next_run_at: datetime | None
    computed: bool
    last: ScheduledRun | None
    error: str | None = None

    def delay(self, now: datetime) -> timedelta | None:
        """How long after its slot the last run started (so far, if it has not)."""
        last = self.last
        if last is None or last.scheduled_at is None:
            return None
        return max((last.started_at or now) - last.scheduled_at, timedelta(0))

    def on_time(self, now: datetime) -> bool | None:
        """Whether the last run started within `ON_TIME_S` of its slot; None when there is
        no run yet, or it is not started and still within the allowance."""
        delay = self.delay(now)
        if delay is None or self.last is None:
            return None
        late = delay > timedelta(seconds=ON_TIME_S)
        if self.last.started_at is None and not late:
            return None
        return not late

    def punctuality(self, now: datetime) -> str:
        """`on time (+4.1s)`, `late (+3m12s)`, `late, not started (+5m00s)`, `due` or
        `never ran`."""
        delay, on_time = self.delay(now), self.on_time(now)
        if self.last is None or delay is None:
            return "never ran"
        if on_time is None:
            return "due"
        started = self.last.started_at is not None
        if on_time:
            return f"on time (+{duration(delay)})"
        return (
            f"late (+{duration(delay)})" if started else f"late, not started (+{duration(delay)})"
        )

    def to_dict(self, now: datetime) -> dict[str, Any]:
        last, delay = self.last, self.delay(now)
        return {
            "task": self.key,
            "cron": self.cron,
            "queue": self.queue,
            "next_run_at": iso(self.next_run_at),
            "next_run_computed": self.computed,
            "error": self.error,
            "last_run": None
            if last is None
            else {
                "id": last.id,
                "status": last.status.value,
                "scheduled_at": iso(last.scheduled_at),
                "started_at": iso(last.started_at),
                "completed_at": iso(last.completed_at),
                "delay_seconds": None if delay is None else round(delay.total_seconds(), 3),
                "on_time": self.on_time(now),
            },
        }


def collect_schedules(
    store: Store, config: Config, now: datetime, schedules: Sequence[ScheduleEntry] | None = None
) -> list[ScheduleState]:
    """Every schedule of the app's generated table (or `schedules`), by key."""
    entries = sorted(
        load_schedules(config) if schedules is None else schedules,
        key=lambda e: (e.service, e.task),
    )
    upcoming = store.upcoming_rows()
    last_runs = store.last_scheduled_runs([(e.service, e.task) for e in entries])
    states = []
    for entry in entries:
        key = schedule_key(entry.service, entry.task)
        row = upcoming.get(key)
        next_run_at, error = next_run(entry.cron, config.timezone, row, now)
        states.append(
            ScheduleState(
                key=key,
                cron=entry.cron,
                queue=entry.queue,
                next_run_at=next_run_at,
                computed=row is None,
                last=last_runs.get((entry.service, entry.task)),
                error=error,
            )
        )
    return states


def schedules_or_reason(
    store: Store, config: Config, now: datetime
) -> tuple[list[ScheduleState], str | None]:
    """`collect_schedules`, or no schedules and the reason the generated table could not
    be read (the other views do not need it)."""
    try:
        return collect_schedules(store, config, now), None
    except ConfigError as exc:
        return [], exc.message

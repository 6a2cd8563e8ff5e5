"""`python -m runtime.schedules`: each scheduled task, its next run and its last run.

Reads the app's generated schedule table and the `_tasks` rows; changes nothing except
creating the tables if the database has none yet. A schedule the processor has not seen
yet has no upcoming row; its next run is computed and marked `*`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from runtime.cli import Parser, run_command
from runtime.clock import from_db, utcnow
from runtime.config import Config, load_config
from runtime.registry import ScheduleEntry, load_schedules
from runtime.scheduler import next_run, schedule_key
from runtime.store import Store

PROG = "python -m runtime.schedules"


@dataclass(frozen=True)
class LastRun:
    """The most recent run of a task that is not its upcoming row."""

    id: int
    status: str
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class ScheduleView:
    """One line of the listing."""

    key: str
    cron: str
    queue: str
    timezone: str
    next_run_at: datetime | None
    upcoming_id: int | None
    last_run: LastRun | None
    error: str | None = None

    @property
    def local(self) -> datetime | None:
        if self.next_run_at is None:
            return None
        return self.next_run_at.astimezone(ZoneInfo(self.timezone))

    def to_data(self) -> dict[str, Any]:
        last = self.last_run
        return {
            "task": self.key,
            "cron": self.cron,
            "queue": self.queue,
            "timezone": self.timezone,
            "next_run_at": _iso(self.next_run_at),
            "next_run_at_local": self.local.isoformat() if self.local else None,
            "upcoming_id": self.upcoming_id,
            "last_run": None
            if last is None
            else {
                "id": last.id,
                "status": last.status,
                "started_at": _iso(last.started_at),
                "completed_at": _iso(last.completed_at),
            },
            "error": self.error,
        }


def collect(
    store: Store, config: Config, schedules: Sequence[ScheduleEntry], now: datetime
) -> tuple[list[ScheduleView], list[str]]:
    """The view of every schedule, and the keys of upcoming rows whose schedule is gone."""
    ordered = sorted(schedules, key=lambda e: (e.service, e.task))
    upcoming = store.upcoming_rows()
    last_runs = store.last_runs([(e.service, e.task) for e in ordered])
    views = []
    for entry in ordered:
        key = schedule_key(entry.service, entry.task)
        last = last_runs.get((entry.service, entry.task))
        row = upcoming.get(key)
        next_run_at, error = next_run(entry.cron, config.timezone, row, now)
        views.append(
            ScheduleView(
                key=key,
                cron=entry.cron,
                queue=entry.queue,
                timezone=config.timezone,
                next_run_at=next_run_at,
                upcoming_id=None if row is None else row.id,
                last_run=None
                if last is None
                else LastRun(
                    last.id, last.status, from_db(last.started_at), from_db(last.completed_at)
                ),
                error=error,
            )
        )
    known = {view.key for view in views}
    return views, sorted(set(upcoming) - known)


def render(views: Sequence[ScheduleView], orphans: Sequence[str]) -> str:
    """The listing as an aligned text table, with notes below it."""
    header = (
        "TASK",
        "CRON",
        "TIMEZONE",
        "NEXT RUN (LOCAL)",
        "NEXT RUN (UTC)",
        "LAST RUN (UTC)",
        "STATUS",
    )
    lines = [header]
    for view in views:
        mark = "" if view.upcoming_id is not None else " *"
        if view.next_run_at is None:
            local = utc = f"(cron error: {view.error})"
        else:
            assert view.local is not None
            local = view.local.strftime("%Y-%m-%d %H:%M %Z") + mark
            utc = view.next_run_at.strftime("%Y-%m-%d %H:%M") + mark
        last = view.last_run
        if last is None:
            when, status = "never", "-"
        else:
            moment = last.started_at or last.completed_at
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "not started"
            when, status = f"{stamp} (#{last.id})", last.status
        lines.append((view.key, view.cron, view.timezone, local, utc, when, status))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    if not views:
        text.append("(no scheduled tasks)")
    if any(view.upcoming_id is None and view.next_run_at is not None for view in views):
        text.append("* not in the database yet: the next `python -m runtime.process` creates it")
    if orphans:
        text.append(
            "upcoming rows of schedules no longer in the code (the next processor run "
            f"removes them): {', '.join(orphans)}"
        )
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog=PROG, description="List each scheduled task with its next run and its last run."
    )
    parser.add_argument("--config", metavar="PATH", help="path of rsx.toml (default: found upward)")
    parser.add_argument("--json", action="store_true", help="print one JSON array instead")
    args = parser.parse_args(argv)

    def body() -> int:
        config = load_config(args.config)
        schedules = load_schedules(config)
        store = Store(config)
        try:
            views, orphans = collect(store, config, schedules, utcnow())
        finally:
            store.dispose()
        if args.json:
            print(json.dumps([view.to_data() for view in views], indent=2))
        else:
            print(render(views, orphans))
        return 0

    return run_command(PROG, body)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


if __name__ == "__main__":
    sys.exit(main())

"""`python -m runtime.stats [--window 24h] [--json] [--config PATH]`: how the app is doing.

Three sections. Queues: claimable pending and running tasks, this server's live workers
against `max_workers` (and those of other servers), how long the oldest pending task has
waited, and the server's `global_max_workers`. Tasks: per task, the runs that ended within
the window (completed, failed, stuck, cancelled), the failed share, the p50/p95 duration of the
completed and failed ones, and the latest run with its status. Schedules: the next run and
whether the last run started on time (`runtime.punctuality`). `--json` prints the same as
one object. The numbers come from the store methods the dashboard and `/metrics` use.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runtime import arguments
from runtime.cli import run_command
from runtime.clock import utcnow
from runtime.config import Config, load_config
from runtime.display import duration, moment, percent, span, table
from runtime.punctuality import ON_TIME_S, ScheduleState, schedules_or_reason
from runtime.queues import QueuesView, collect_queues
from runtime.store import Store
from runtime.summaries import TaskStats, iso

PROG = "python -m runtime.stats"
DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Stats:
    """Everything the command shows, collected at `now`."""

    now: datetime
    window: timedelta
    queues: QueuesView
    tasks: tuple[TaskStats, ...]
    schedules: tuple[ScheduleState, ...]
    schedules_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": iso(self.now),
            "window_seconds": int(self.window.total_seconds()),
            **self.queues.to_dict(self.now),
            "tasks": [stats.to_dict() for stats in self.tasks],
            "schedules": [state.to_dict(self.now) for state in self.schedules],
            "schedules_error": self.schedules_error,
            "on_time_seconds": ON_TIME_S,
        }


def collect(store: Store, config: Config, now: datetime, window: timedelta) -> Stats:
    """Read every section from the database."""
    schedules, reason = schedules_or_reason(store, config, now)
    return Stats(
        now=now,
        window=window,
        queues=collect_queues(store, config, now),
        tasks=tuple(store.task_stats(now - window)),
        schedules=tuple(schedules),
        schedules_error=reason,
    )


def render(stats: Stats) -> str:
    """The three sections as aligned text tables."""
    now, view = stats.now, stats.queues
    queue_rows = [
        [
            queue.name + ("" if queue.max_workers is not None else " (not in config)"),
            str(queue.pending),
            str(queue.running),
            f"{queue.workers}/{'-' if queue.max_workers is None else queue.max_workers}"
            + (f" (+{queue.workers_elsewhere} elsewhere)" if queue.workers_elsewhere else ""),
            duration(queue.oldest_age(now)),
        ]
        for queue in view.queues
    ]
    task_rows = [
        [
            stats.key,
            str(stats.runs),
            percent(stats.failed_share),
            str(stats.stuck),
            str(stats.cancelled),
            duration(stats.p50),
            duration(stats.p95),
            "-"
            if stats.last_id is None or stats.last_status is None
            else f"#{stats.last_id} {stats.last_status.value} {moment(stats.last_started_at)}",
        ]
        for stats in stats.tasks
    ]
    schedule_rows = [
        [
            state.key,
            state.cron,
            (moment(state.next_run_at) + (" *" if state.computed else ""))
            if state.next_run_at is not None
            else f"(cron error: {state.error})",
            "never" if state.last is None else f"#{state.last.id} {state.last.status.value}",
            state.punctuality(now),
        ]
        for state in stats.schedules
    ]
    sections = [
        f"Queues (server {view.server_id}: {view.workers} of {view.global_max_workers} "
        "workers in use)",
        table(
            ("QUEUE", "PENDING", "RUNNING", "WORKERS", "OLDEST PENDING"),
            queue_rows,
            empty="(no queues)",
        ),
        "",
        f"Tasks ended in the last {span(stats.window)}",
        table(
            ("TASK", "RUNS", "FAILED", "STUCK", "CANCELLED", "P50", "P95", "LAST RUN (UTC)"),
            task_rows,
            empty="(no runs in the window)",
        ),
        "",
        f"Schedules (on time: started within {ON_TIME_S} s of the slot)",
    ]
    if stats.schedules_error is not None:
        sections.append(f"(schedules unavailable: {stats.schedules_error})")
    else:
        sections.append(
            table(
                ("TASK", "CRON", "NEXT RUN (UTC)", "LAST RUN", "ON TIME"),
                schedule_rows,
                empty="(no scheduled tasks)",
            )
        )
        if any(state.computed and state.next_run_at for state in stats.schedules):
            sections.append("* computed: the next `python -m runtime.process` creates the row")
    return "\n".join(sections)


def parser() -> arguments.Parser:
    parser = arguments.Parser(prog=PROG, description="Queues, task statistics and schedules.")
    parser.add_argument(
        "--window",
        type=arguments.duration,
        default=DEFAULT_WINDOW,
        metavar="AGE",
        help="the span of the task statistics: 30s, 15m, 1h, 2d (default 24h)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments.add_config(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        config = load_config(args.config)
        store = Store(config)
        try:
            stats = collect(store, config, utcnow(), args.window)
        finally:
            store.dispose()
        if args.json:
            print(json.dumps(stats.to_dict(), ensure_ascii=False))
        else:
            print(render(stats))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

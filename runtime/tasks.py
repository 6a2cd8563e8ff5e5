"""`python -m runtime.tasks`: the tasks an operator asks for, newest first.

Filters: `--status` (repeatable), `--queue`, `--service`, `--task`, `--since 1h` (created
within), `--limit N` (default 50). Prints a table of id, service.task, queue, status,
creation time (UTC), how long it ran (so far, while running) and the progress of running
tasks; the status of a task with retries, or one that ran more than once, is followed by
its attempts (`pending (1 of 3)`). `--json` prints one JSON object per task and line
instead. The rows come from `Store.list_tasks`, the query the dashboard's task list uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from runtime import arguments
from runtime.cli import run_command
from runtime.clock import utcnow
from runtime.config import load_config
from runtime.display import attempts, duration, moment, table
from runtime.filters import DEFAULT_LIMIT, TaskFilter
from runtime.registry import load_retries
from runtime.state import Status
from runtime.store import Store
from runtime.summaries import TaskSummary

PROG = "python -m runtime.tasks"
HEADER = ("ID", "TASK", "QUEUE", "STATUS", "CREATED (UTC)", "TOOK", "PROGRESS")


def progress_text(value: Any) -> str:
    """A progress value as the table shows it: `40%` for a number, the value otherwise."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}%"
    return json.dumps(value, ensure_ascii=False)


def status_text(task: TaskSummary, retries: Mapping[tuple[str, str], int]) -> str:
    """The status cell: the status, and the attempts of a task that has retries or ran
    more than once (`pending (1 of 3)`)."""
    tried = attempts(task.attempts, retries.get((task.service_name, task.task_name)))
    return task.status.value if tried is None else f"{task.status.value} ({tried})"


def row(task: TaskSummary, now: Any, retries: Mapping[tuple[str, str], int]) -> list[str]:
    """One line of the table."""
    return [
        str(task.id),
        f"{task.service_name}.{task.task_name}",
        task.queue_name,
        status_text(task, retries),
        moment(task.created_at),
        duration(task.took(now)),
        progress_text(task.progress) if task.status == Status.RUNNING else "",
    ]


def parser() -> arguments.Parser:
    parser = arguments.Parser(prog=PROG, description="List tasks, newest first.")
    parser.add_argument(
        "--status",
        type=arguments.status,
        action="append",
        default=[],
        metavar="S",
        help="only tasks in this status (repeatable: any of them)",
    )
    parser.add_argument("--queue", metavar="Q", type=arguments.name("queue"))
    parser.add_argument("--service", metavar="X", type=arguments.name("service"))
    parser.add_argument("--task", metavar="T", type=arguments.name("task"))
    parser.add_argument(
        "--since", type=arguments.duration, metavar="AGE", help="created within: 30s, 15m, 1h, 2d"
    )
    parser.add_argument(
        "--limit",
        type=arguments.limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N tasks (default {DEFAULT_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    arguments.add_config(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        config = load_config(args.config)
        store = Store(config)
        now = utcnow()
        selection = TaskFilter(
            statuses=tuple(dict.fromkeys(args.status)),
            queue=args.queue,
            service=args.service,
            task=args.task,
            since=None if args.since is None else now - args.since,
            limit=args.limit,
        )
        try:
            found = store.list_tasks(selection)
        finally:
            store.dispose()
        if args.json:
            for task in found:
                print(json.dumps(task.to_dict(now), ensure_ascii=False))
        else:
            retries = load_retries(config)
            rows = [row(task, now, retries) for task in found]
            print(table(HEADER, rows, empty="(no tasks)"))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

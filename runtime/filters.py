"""Which tasks an operator asks for: `TaskFilter`, and reading its values from text.

`python -m runtime.tasks`, the dashboard's task list and `GET /api/tasks` take the same
filters (statuses, queue, service, task, created since, how many) and read them with the
same functions, which raise `UsageError` with a one-line message for a bad value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from runtime.cli import UsageError
from runtime.limits import MAX_DURATION_SECONDS, is_task_id
from runtime.state import Status
from runtime.text import escape_controls, shorten

MAX_LIMIT = 10_000
"""The most rows one listing returns; a larger `--limit` is refused, not cut."""

DEFAULT_LIMIT = 50

_DURATION = re.compile(r"([0-9]{1,12})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _shown(text: str) -> str:
    """An echoed value: quoted, cut, control characters escaped."""
    return f"'{escape_controls(shorten(text, 40))}'"


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `1h` or `2d` as a `timedelta`, from one second up to ten years."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"invalid duration {_shown(text)}: use a whole number and s, m, h or d (15m, 1h, 2d)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise UsageError(f"duration {_shown(text)} is outside 1s to 3650d")
    return timedelta(seconds=seconds)


def parse_status(text: str) -> Status:
    """A task status by its name (`pending`, `running`, `completed`, `failed`, `stuck`)."""
    try:
        return Status(text.strip().lower())
    except ValueError:
        names = ", ".join(status.value for status in Status)
        raise UsageError(f"invalid status {_shown(text)} (statuses: {names})") from None


def parse_limit(text: str, maximum: int = MAX_LIMIT) -> int:
    """A row count from 1 to `maximum`."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        raise UsageError(f"invalid limit {_shown(text)}: use a whole number from 1 to {maximum}")
    return int(value)


def parse_task_id(text: str) -> int:
    """A task id as written in a URL or a form (a 64-bit integer)."""
    value = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,20}", value) or not is_task_id(int(value)):
        raise UsageError(f"invalid task id {_shown(text)}")
    return int(value)


def parse_name(text: str, what: str) -> str:
    """A queue, service or task name as given: non-empty, no control characters."""
    value = text.strip()
    if not value or len(value) > 191 or escape_controls(value) != value:
        raise UsageError(f"invalid {what} {_shown(text)}")
    return value


@dataclass(frozen=True)
class TaskFilter:
    """A selection of task rows, newest first.

    Empty `statuses` means any status. `since` keeps tasks created at or after that
    moment. `before` continues a listing below that id (the next page). Upcoming runs of
    schedules are never listed (`python -m runtime.schedules` shows them).
    """

    statuses: tuple[Status, ...] = ()
    queue: str | None = None
    service: str | None = None
    task: str | None = None
    since: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before: int | None = None


def parse_filter(
    values: Mapping[str, Sequence[str]], now: datetime, maximum: int = MAX_LIMIT
) -> TaskFilter:
    """A `TaskFilter` from query-string values (`status` repeatable, `queue`, `service`,
    `task`, `since` as `1h`, `limit`, `before`); empty values are ignored."""

    def one(key: str) -> str | None:
        given = [value for value in values.get(key, ()) if value.strip()]
        if len(given) > 1:
            raise UsageError(f"{key} is given {len(given)} times")
        return given[0] if given else None

    since, limit, before = one("since"), one("limit"), one("before")
    names = {key: one(key) for key in ("queue", "service", "task")}
    return TaskFilter(
        statuses=tuple(
            dict.fromkeys(parse_status(v) for v in values.get("status", ()) if v.strip())
        ),
        queue=None if names["queue"] is None else parse_name(names["queue"], "queue"),
        service=None if names["service"] is None else parse_name(names["service"], "service"),
        task=None if names["task"] is None else parse_name(names["task"], "task"),
        since=None if since is None else now - parse_duration(since),
        limit=DEFAULT_LIMIT if limit is None else parse_limit(limit, maximum),
        before=None if before is None else parse_task_id(before),
    )

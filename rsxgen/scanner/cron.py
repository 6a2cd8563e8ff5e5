"""Checking a five-field cron expression, with messages that name the faulty field.

Accepted, per field: `*`, a number or name, a range `a-b`, a step `*/n`, `a-b/n` or
`a/n`, and comma lists of those. Day-of-week is 0-7 (0 and 7 are Sunday) or `sun`..`sat`;
month is 1-12 or `jan`..`dec`. Every accepted expression is one croniter (used by the
runtime) reads the same way. Not accepted: six fields (seconds), `@daily`-style macros,
and croniter's extensions (`L`, `#`, `?`, `H`), so that a schedule reads like crontab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name_value: int = 0


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day-of-week", 0, 7, DAYS, 0),
)

_PART = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


class CronError(ValueError):
    """The expression is not a valid five-field cron expression; the message says why."""


def check_cron(expression: str) -> None:
    """Raise `CronError` naming the field at fault unless `expression` is valid."""
    text = expression.strip()
    if text.startswith("@"):
        raise CronError(
            f"macros like '{text.split()[0]}' are not supported; write the 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 0 * * *'"
        )
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_field_values(field, part.lower()) for field, part in zip(FIELDS, parts, strict=True)]
    days, months, weekdays = values[2], values[3], parts[4]
    if weekdays == "*" and not any(
        day <= DAYS_IN_MONTH[month - 1] for day in days for month in months
    ):
        raise CronError(
            f"day-of-month '{parts[2]}' never occurs in month '{parts[3]}', so it would never run"
        )


def _field_values(field: _Field, text: str) -> set[int]:
    if not text:
        raise CronError(f"{field.name} is empty")
    selected: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise CronError(f"{field.name} '{part}' is not a number, range, step or list")
        step = 1
        if match["step"] is not None:
            step = int(match["step"])
            if step < 1:
                raise CronError(f"{field.name} step in '{part}' must be at least 1")
        spec = match["range"]
        if spec == "*":
            low, high = field.low, field.high
        elif "-" in spec:
            start, end = spec.split("-")
            low, high = _value(field, start), _value(field, end)
            if low > high:
                raise CronError(f"{field.name} range '{spec}' goes backwards")
        else:
            low = _value(field, spec)
            high = field.high if match["step"] is not None else low
        selected.update(range(low, high + 1, step))
    if field.name == "day-of-week" and 7 in selected:
        selected.add(0)
    return selected


def _value(field: _Field, text: str) -> int:
    if text.isdigit():
        number = int(text)
    elif text in field.names:
        number = field.names.index(text) + field.first_name_value
    else:
        kind = f"a number {field.low}-{field.high}"
        if field.names:
            kind += f" or a name ({field.names[0]}..{field.names[-1]})"
        raise CronError(f"{field.name} '{text}' is not {kind}")
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name} {number} is out of range {field.low}-{field.high}")
    return number

"""How the text views show values: aligned tables, durations, times and ages.

Every cell goes through `escape_controls`, so a name or a value stored by a task can
never move the cursor or clear the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from runtime.text import escape_controls


def table(header: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "") -> str:
    """The rows under the header, each column as wide as its widest cell; `empty`
    instead of the rows when there are none."""
    lines = [list(header)] + [[escape_controls(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    if not rows and empty:
        text.append(empty)
    return "\n".join(text)


def duration(span: timedelta | float | None) -> str:
    """`850ms`, `4.2s`, `3m12s`, `2h05m`, `3d04h`; `-` for None."""
    if span is None:
        return "-"
    seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def span(window: timedelta) -> str:
    """A window as it was given: `90s`, `15m`, `24h`, `2d` (the largest whole unit)."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def moment(value: datetime | None) -> str:
    """A UTC time as `YYYY-MM-DD HH:MM:SS`; `-` for None."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def percent(value: float | None) -> str:
    """`12.5%`; `-` for None."""
    return "-" if value is None else f"{value:.1f}%"


def attempts(count: int, retries: int | None) -> str | None:
    """A task's attempts as the views show them: `2 of 4` for a task with retries, `2`
    for one that ran more than once without (its retries unknown, or since removed); None
    for one that has nothing to show (no retries, at most one attempt)."""
    if retries:
        return f"{count} of {retries + 1}"
    return str(count) if count > 1 else None

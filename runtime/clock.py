"""UTC time as the database stores it: naive UTC in columns, aware UTC in Python."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_db(moment: datetime | None) -> datetime | None:
    """An aware datetime as the naive UTC value stored in a DateTime column."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime given where an aware one is required")
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(value: datetime | None) -> datetime | None:
    """A stored naive UTC value as an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def log_line(message: str, now: datetime) -> str:
    """One line of a task's log: `[YYYY-MM-DD HH:MM:SS] message` in UTC, with its newline."""
    return f"[{now.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}] {message}\n"

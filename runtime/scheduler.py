"""Scheduled tasks: cron slots in the configured timezone, and the processor's tick.

Each schedule owns exactly one *upcoming* row in `_tasks`: pending, execution mode
`scheduled` and `schedule_key = "service.task"` (a UNIQUE column, so a schedule can never
have two). Workers never claim a row that carries a key. When the row falls due, `tick`
releases it with one guarded UPDATE that clears the key (only one processor can win it)
and, in the same transaction, inserts the next upcoming row (`Store.release`). The
released row is then an ordinary pending task. The cron and timezone a row was computed
from are kept in its `status_data` (`{"schedule": {...}}`), so a changed cron is noticed
and moves the row; releasing clears it. See docs/scheduling.md.

Nothing here reads the system clock: `now` is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runtime.clock import from_db, to_db
from runtime.config import Config
from runtime.registry import ScheduleEntry
from runtime.state import ExecutionMode, Status, TaskStatus
from runtime.store import Store

# How far a wall-clock time and the instant it names can be apart beyond the zone's usual
# offset: the largest DST shift of any zone in use today is two hours.
_DST_MARGIN = timedelta(hours=3)


def schedule_key(service: str, task: str) -> str:
    """The `schedule_key` of a schedule's upcoming row."""
    return f"{service}.{task}"


def next_slot(cron: str, timezone: str, after: datetime) -> datetime:
    """The first instant strictly after `after` at which `cron`, read in `timezone`, fires.

    Returned in UTC. Around DST changes (docs/scheduling.md): a slot whose wall-clock time
    does not exist runs at the first instant after the gap, and a wall-clock time that
    occurs twice runs once, at its first occurrence; a cron whose hour field is `*` or
    `*/n` instead follows real time (a nonexistent slot is dropped, a repeated one runs at
    both instants), so an hourly job runs every real hour. Raises `ValueError` for a cron
    that is malformed or never fires.
    """
    if after.tzinfo is None:
        raise ValueError("next_slot needs a timezone-aware datetime")
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression {cron!r} must have 5 fields")
    # Imported here: a processor run with nothing to create or release never needs it.
    from croniter import croniter  # type: ignore[import-untyped]

    zone = ZoneInfo(timezone)
    follows_real_time = fields[1].startswith("*")
    after = after.astimezone(UTC)
    # Wall-clock times are generated naively (pure calendar arithmetic) and mapped to
    # instants here. A repeated wall time can name an instant later than `after` although
    # the wall time itself is earlier, hence the look-back and look-ahead margins.
    wall = croniter(cron, _wall(after, zone) - _DST_MARGIN)
    best: datetime | None = None
    while True:
        candidate: datetime = wall.get_next(datetime)
        if best is not None and candidate > _wall(best, zone) + _DST_MARGIN:
            return best
        for instant in _instants(candidate, zone, follows_real_time):
            if instant > after and (best is None or instant < best):
                best = instant


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time of an instant in `zone`."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _instants(wall: datetime, zone: ZoneInfo, follows_real_time: bool) -> Iterable[datetime]:
    """The UTC instants at which a cron slot at wall-clock time `wall` runs."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if _wall(first, zone) == wall:  # the wall time occurs twice (clocks went back)
        return (first, second) if follows_real_time else (first,)
    # The wall time falls in a gap (clocks went forward): `second` lies before the gap
    # and `first` after it, both by the same amount.
    return () if follows_real_time else (_gap_end(second, first, zone),)


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks jumped forward, between `before` and `after` (to the second)."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def next_run(
    cron: str, timezone: str, upcoming: Any, now: datetime
) -> tuple[datetime | None, str | None]:
    """A schedule's next run as listings show it: its upcoming row's `next_run_at` when the
    processor has made that row, else the slot computed now; and the cron's error, if any."""
    if upcoming is not None:
        return from_db(upcoming.next_run_at), None
    try:
        return next_slot(cron, timezone, now), None
    except ValueError as exc:
        return None, str(exc)


@dataclass(frozen=True)
class ReleasedRun:
    """A due scheduled run this tick turned into an ordinary pending task."""

    key: str
    task_id: int
    queue_name: str


@dataclass(frozen=True)
class TickResult:
    """What one `tick` did, by schedule key.

    `created`: upcoming rows inserted; `moved`: rows whose cron or timezone changed;
    `updated`: rows whose queue, timeout or params changed; `removed`: rows of schedules
    no longer in the code; `released`: runs started; `skipped`: due runs debounced
    because an earlier run of the task is still waiting or running; `errors`: one
    message per schedule that could not be handled (e.g. a cron that never fires).
    """

    created: tuple[str, ...] = ()
    moved: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    released: tuple[ReleasedRun, ...] = ()
    skipped: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def tick(
    store: Store, config: Config, schedules: Sequence[ScheduleEntry], now: datetime
) -> TickResult:
    """Bring the upcoming rows in line with `schedules`, then release those due at `now`.

    Safe to run from any number of processors at once: every write is guarded by the
    row's `schedule_key` (see `runtime.store.schedules`).
    """
    if now.tzinfo is None:
        raise ValueError("tick needs a timezone-aware `now`")
    entries = {schedule_key(e.service, e.task): e for e in schedules}
    run = _Tick(store, config, entries, now)
    run.sync()
    run.release_due()
    return run.result()


class _Tick:
    """The state of one tick: the schedules by key, `now`, and what was done."""

    def __init__(
        self, store: Store, config: Config, entries: Mapping[str, ScheduleEntry], now: datetime
    ) -> None:
        self.store = store
        self.config = config
        self.entries = entries
        self.now = now
        self.created: list[str] = []
        self.moved: list[str] = []
        self.updated: list[str] = []
        self.removed: list[str] = []
        self.released: list[ReleasedRun] = []
        self.skipped: list[str] = []
        self.errors: list[str] = []

    def result(self) -> TickResult:
        return TickResult(
            created=tuple(self.created),
            moved=tuple(self.moved),
            updated=tuple(self.updated),
            removed=tuple(self.removed),
            released=tuple(self.released),
            skipped=tuple(self.skipped),
            errors=tuple(self.errors),
        )

    def spec(self, entry: ScheduleEntry) -> dict[str, str]:
        """What an upcoming row's slot was computed from."""
        return _spec(self.config, entry)

    def slot(self, key: str) -> datetime | None:
        """The next slot of schedule `key` after now, or None (recorded as an error)."""
        entry = self.entries[key]
        try:
            return next_slot(entry.cron, self.config.timezone, self.now)
        except ValueError as exc:
            self.errors.append(f"{key}: cron {entry.cron!r}: {exc}")
            return None

    def upcoming_values(self, entry: ScheduleEntry, slot: datetime) -> dict[str, Any]:
        """The column values of a new upcoming row at `slot`."""
        return upcoming_values(self.config, entry, slot, self.now)

    def sync(self) -> None:
        """Create missing upcoming rows, update changed ones, delete those of removed schedules."""
        existing = self.store.upcoming_rows()
        gone = sorted(set(existing) - set(self.entries))
        if gone:
            self.store.delete_upcoming(gone)
            self.removed.extend(gone)

        for key in sorted(self.entries):
            entry = self.entries[key]
            row = existing.get(key)
            if row is None:
                self.create(key, entry)
                continue
            changes: dict[str, Any] = {}
            if (
                row.queue_name != entry.queue
                or row.timeout_seconds != entry.timeout
                or _loads(row.params) != dict(entry.params)
            ):
                changes.update(
                    queue_name=entry.queue,
                    timeout_seconds=entry.timeout,
                    params=_json(entry.params),
                )
            spec = self.spec(entry)
            stored = _loads(row.status_data)
            moved = row.next_run_at is None or (
                not isinstance(stored, dict) or stored.get("schedule") != spec
            )
            if moved:
                slot = self.slot(key)
                if slot is None:
                    continue
                changes.update(
                    status_data=_json({"schedule": spec}),
                    next_run_at=to_db(slot),
                    scheduled_at=to_db(slot),
                )
            if not changes:
                continue
            self.store.update_upcoming(row.id, key, {"updated_at": to_db(self.now), **changes})
            (self.moved if moved else self.updated).append(key)

    def create(self, key: str, entry: ScheduleEntry) -> None:
        """Insert the upcoming row of a schedule first seen now; losing the race is fine."""
        slot = self.slot(key)
        if slot is None:
            return
        if self.store.insert_upcoming(self.upcoming_values(entry, slot)):
            self.created.append(key)

    def release_due(self) -> None:
        """Start every upcoming run whose `next_run_at` has come, or debounce it."""
        for row in self.store.due_upcoming(self.now):
            key = row.schedule_key
            if key not in self.entries:
                continue
            slot = self.slot(key)
            if slot is None:
                continue
            if self.store.run_in_progress(row.service_name, row.task_name):
                if self.store.postpone(row.id, key, self.now, slot):
                    self.skipped.append(key)
            elif self.store.release(
                row.id, key, self.now, self.upcoming_values(self.entries[key], slot)
            ):
                self.released.append(ReleasedRun(key, row.id, row.queue_name))


def upcoming_values(
    config: Config, entry: ScheduleEntry, slot: datetime, now: datetime
) -> dict[str, Any]:
    """The column values of a new upcoming row of `entry` at `slot`, made at `now`."""
    at, moment = to_db(slot), to_db(now)
    return {
        "server_id": config.server_id,
        "service_name": entry.service,
        "task_name": entry.task,
        "queue_name": entry.queue,
        "execution_mode": ExecutionMode.SCHEDULED.value,
        "status": Status.PENDING.value,
        "params": _json(entry.params),
        "status_data": _json({"schedule": _spec(config, entry)}),
        "scheduled_at": at,
        "next_run_at": at,
        "timeout_seconds": entry.timeout,
        "has_temp_directory": False,
        "created_at": moment,
        "updated_at": moment,
        "schedule_key": schedule_key(entry.service, entry.task),
    }


def skip_upcoming(
    store: Store, config: Config, schedules: Sequence[ScheduleEntry], row: TaskStatus,
    now: datetime,
) -> bool:
    """Cancel the upcoming run `row` of a schedule: its slot is skipped and the schedule's
    upcoming row moves to the slot after it (or after `now`, if that slot has passed);
    False if a processor released the run meanwhile (it is then an ordinary task)."""
    key = schedule_key(row.service_name, row.task_name)
    entry = next((e for e in schedules if schedule_key(e.service, e.task) == key), None)
    following = None
    if entry is not None:
        after = max(row.next_run_at or now, now)
        try:
            slot = next_slot(entry.cron, config.timezone, after)
            following = upcoming_values(config, entry, slot, now)
        except ValueError:
            following = None  # a cron that never fires: the next tick reports it
    return store.cancel_upcoming(row.id, key, now, following)


def _spec(config: Config, entry: ScheduleEntry) -> dict[str, str]:
    """What an upcoming row's slot is computed from."""
    return {"cron": entry.cron, "timezone": config.timezone}


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None

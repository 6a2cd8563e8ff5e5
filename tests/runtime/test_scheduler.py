"""The scheduler: one upcoming row per schedule, released exactly once when due.

Every test passes `now` explicitly; nothing sleeps or patches the clock. The database
tests run on each backend of the `db_url` fixture (SQLite always; PostgreSQL and MariaDB
when their URLs are set, see tests/databases.py).
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, update

from runtime.clock import from_db, to_db
from runtime.config import Config
from runtime.registry import ScheduleEntry
from runtime.scheduler import next_slot, tick
from runtime.schema import tasks
from tests.runtime.schedhelp import (
    next_run,
    open_engine,
    racing_tick,
    rows,
    store_of,
    upcoming_row,
    write_config,
)

NY = "America/New_York"
LONDON = "Europe/London"

REPORT = ScheduleEntry(
    service="reports",
    task="daily",
    cron="0 3 * * *",
    queue="scheduled",
    timeout=600,
    params={"fmt": "pdf"},
)
HOURLY = ScheduleEntry(
    service="maintenance", task="sweep", cron="0 * * * *", queue="scheduled", timeout=60
)


def at(text: str) -> datetime:
    """An aware UTC datetime from `YYYY-MM-DD HH:MM[:SS]`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def app(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Config, Engine]]:
    monkeypatch.delenv("RSX_DATABASE_URL", raising=False)
    monkeypatch.delenv("RSX_SERVER_ID", raising=False)
    config = write_config(tmp_path / "app", db_url, server_id=3)
    engine = open_engine(config)
    yield config, engine
    engine.dispose()


def released_rows(engine: Engine, service: str, task: str) -> list:
    return [r for r in rows(engine, service, task) if r.schedule_key is None]


# ---------------------------------------------------------------- the upcoming row


def test_first_tick_creates_the_upcoming_row(app: tuple[Config, Engine]) -> None:
    config, engine = app
    result = tick(store_of(engine), config, [REPORT], at("2024-05-01 10:15:30"))

    assert result.created == ("reports.daily",)
    row = upcoming_row(engine, "reports.daily")
    assert (row.service_name, row.task_name) == ("reports", "daily")
    assert row.status == "pending"
    assert row.execution_mode == "scheduled"
    assert row.queue_name == "scheduled"
    assert row.timeout_seconds == 600
    assert json.loads(row.params) == {"fmt": "pdf"}
    assert row.server_id == 3
    assert from_db(row.next_run_at) == at("2024-05-02 03:00")
    assert row.scheduled_at == row.next_run_at
    assert row.started_at is None and row.worker_pid is None

    again = tick(store_of(engine), config, [REPORT], at("2024-05-01 10:16:30"))
    assert again.created == () and again.released == ()
    assert len(rows(engine)) == 1


def test_not_started_before_next_run_at(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))

    result = tick(store_of(engine), config, [REPORT], at("2024-05-02 02:59:59"))

    assert result.released == ()
    assert released_rows(engine, "reports", "daily") == []


def test_due_run_is_released_once_and_the_next_slot_created(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))
    first_id = upcoming_row(engine, "reports.daily").id

    result = tick(store_of(engine), config, [REPORT], at("2024-05-02 03:00:20"))

    assert [(r.key, r.task_id, r.queue_name) for r in result.released] == [
        ("reports.daily", first_id, "scheduled")
    ]
    [released] = released_rows(engine, "reports", "daily")
    assert released.id == first_id
    assert released.status == "pending"
    assert released.execution_mode == "scheduled"
    assert released.status_data is None
    assert from_db(released.scheduled_at) == at("2024-05-02 03:00")
    upcoming = upcoming_row(engine, "reports.daily")
    assert upcoming.id != first_id
    assert from_db(upcoming.next_run_at) == at("2024-05-03 03:00")

    # A second processor in the same minute finds nothing due.
    assert tick(store_of(engine), config, [REPORT], at("2024-05-02 03:00:40")).released == ()
    assert len(released_rows(engine, "reports", "daily")) == 1


def test_next_run_at_set_into_the_past_is_due_at_the_next_tick(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))
    row_id = upcoming_row(engine, "reports.daily").id
    with engine.begin() as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == row_id)
            .values(next_run_at=to_db(at("2024-05-01 09:00")))
        )

    result = tick(store_of(engine), config, [REPORT], at("2024-05-01 10:01"))

    assert [r.task_id for r in result.released] == [row_id]
    assert next_run(engine, "reports.daily") == at("2024-05-02 03:00")


def test_missed_slots_give_one_catch_up_run(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [HOURLY], at("2024-05-01 09:30"))
    assert next_run(engine, "maintenance.sweep") == at("2024-05-01 10:00")

    # Down from 09:30 to 13:05: the 10:00, 11:00, 12:00 and 13:00 slots were missed.
    result = tick(store_of(engine), config, [HOURLY], at("2024-05-01 13:05"))

    assert len(result.released) == 1
    assert len(released_rows(engine, "maintenance", "sweep")) == 1
    assert next_run(engine, "maintenance.sweep") == at("2024-05-01 14:00")


def test_scheduled_task_on_a_custom_queue(app: tuple[Config, Engine]) -> None:
    config, engine = app
    entry = ScheduleEntry(
        service="reports", task="weekly", cron="0 6 * * 1", queue="reports", timeout=900
    )
    tick(store_of(engine), config, [entry], at("2024-05-01 10:00"))  # a Wednesday
    assert upcoming_row(engine, "reports.weekly").queue_name == "reports"
    assert next_run(engine, "reports.weekly") == at("2024-05-06 06:00")

    result = tick(store_of(engine), config, [entry], at("2024-05-06 06:00"))

    assert [r.queue_name for r in result.released] == ["reports"]
    [released] = released_rows(engine, "reports", "weekly")
    assert released.queue_name == "reports"
    assert upcoming_row(engine, "reports.weekly").queue_name == "reports"


# ---------------------------------------------------------------- debounce


def _insert_run(
    engine: Engine, entry: ScheduleEntry, status: str, mode: str, moment: datetime
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(tasks).values(
                server_id=1,
                service_name=entry.service,
                task_name=entry.task,
                queue_name=entry.queue,
                execution_mode=mode,
                status=status,
                params="{}",
                timeout_seconds=entry.timeout,
                has_temp_directory=False,
                created_at=to_db(moment),
                updated_at=to_db(moment),
                started_at=to_db(moment) if status == "running" else None,
            )
        ).inserted_primary_key[0]


@pytest.mark.parametrize(
    ("status", "mode"),
    [("running", "scheduled"), ("running", "queued"), ("pending", "scheduled")],
    ids=["running-scheduled-run", "running-dispatched-run", "released-run-still-waiting"],
)
def test_due_run_skipped_while_an_earlier_run_is_busy(
    app: tuple[Config, Engine], status: str, mode: str
) -> None:
    config, engine = app
    tick(store_of(engine), config, [HOURLY], at("2024-05-01 09:30"))
    busy_id = _insert_run(engine, HOURLY, status, mode, at("2024-05-01 09:40"))

    result = tick(store_of(engine), config, [HOURLY], at("2024-05-01 10:00:30"))

    assert result.released == ()
    assert result.skipped == ("maintenance.sweep",)
    assert [r.id for r in released_rows(engine, "maintenance", "sweep")] == [busy_id]
    row = upcoming_row(engine, "maintenance.sweep")
    assert from_db(row.next_run_at) == from_db(row.scheduled_at) == at("2024-05-01 11:00")

    # Once the earlier run has ended, the next slot runs.
    with engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == busy_id).values(status="completed"))
    assert len(tick(store_of(engine), config, [HOURLY], at("2024-05-01 11:00:10")).released) == 1


def test_finished_runs_do_not_debounce(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [HOURLY], at("2024-05-01 09:30"))
    for status in ("completed", "failed", "stuck"):
        _insert_run(engine, HOURLY, status, "scheduled", at("2024-05-01 09:00"))

    assert len(tick(store_of(engine), config, [HOURLY], at("2024-05-01 10:00")).released) == 1


# ---------------------------------------------------------------- the schedule table changes


def test_schedules_added_changed_and_removed_across_ticks(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))
    original_id = upcoming_row(engine, "reports.daily").id

    # Added: a second schedule appears in the table.
    result = tick(store_of(engine), config, [REPORT, HOURLY], at("2024-05-01 10:05"))
    assert result.created == ("maintenance.sweep",)
    assert next_run(engine, "maintenance.sweep") == at("2024-05-01 11:00")

    # Changed cron: the upcoming row moves to the new cron's next slot.
    moved = ScheduleEntry(**{**REPORT.__dict__, "cron": "30 12 * * *"})
    result = tick(store_of(engine), config, [moved, HOURLY], at("2024-05-01 10:10"))
    assert result.moved == ("reports.daily",) and result.created == ()
    assert upcoming_row(engine, "reports.daily").id == original_id
    assert next_run(engine, "reports.daily") == at("2024-05-01 12:30")

    # Changed queue, timeout and params: updated in place, slot kept.
    changed = ScheduleEntry(
        **{**moved.__dict__, "queue": "reports", "timeout": 30, "params": {"fmt": "csv"}}
    )
    result = tick(store_of(engine), config, [changed, HOURLY], at("2024-05-01 10:15"))
    assert result.updated == ("reports.daily",) and result.moved == ()
    row = upcoming_row(engine, "reports.daily")
    assert (row.queue_name, row.timeout_seconds, json.loads(row.params)) == (
        "reports",
        30,
        {"fmt": "csv"},
    )
    assert from_db(row.next_run_at) == at("2024-05-01 12:30")

    # Removed: its upcoming row goes; the other schedule is untouched.
    result = tick(store_of(engine), config, [HOURLY], at("2024-05-01 10:20"))
    assert result.removed == ("reports.daily",)
    assert rows(engine, "reports", "daily") == []
    assert next_run(engine, "maintenance.sweep") == at("2024-05-01 11:00")

    # Nothing scheduled any more: no upcoming rows at all.
    tick(store_of(engine), config, [], at("2024-05-01 10:25"))
    assert rows(engine) == []


def test_removing_a_schedule_keeps_its_released_runs(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [HOURLY], at("2024-05-01 09:30"))
    [run] = tick(store_of(engine), config, [HOURLY], at("2024-05-01 10:00")).released

    tick(store_of(engine), config, [], at("2024-05-01 10:01"))

    assert [r.id for r in rows(engine)] == [run.task_id]


def test_timezone_change_moves_the_upcoming_row(app: tuple[Config, Engine], tmp_path: Path) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))
    assert next_run(engine, "reports.daily") == at("2024-05-02 03:00")

    in_new_york = write_config(tmp_path / "app", config.database_url, timezone=NY, server_id=3)
    result = tick(store_of(engine), in_new_york, [REPORT], at("2024-05-01 10:01"))

    assert result.moved == ("reports.daily",)
    assert next_run(engine, "reports.daily") == at("2024-05-02 07:00")  # 03:00 EDT


def test_a_cron_that_never_fires_is_reported_and_others_go_on(app: tuple[Config, Engine]) -> None:
    config, engine = app
    never = ScheduleEntry(
        service="reports", task="never", cron="0 0 31 2 *", queue="scheduled", timeout=60
    )

    result = tick(store_of(engine), config, [never, HOURLY], at("2024-05-01 09:30"))

    assert result.created == ("maintenance.sweep",)
    assert len(result.errors) == 1 and result.errors[0].startswith(
        "reports.never: cron '0 0 31 2 *'"
    )
    assert rows(engine, "reports", "never") == []


# ---------------------------------------------------------------- racing processors


@pytest.mark.slow
def test_four_racing_processors_release_each_due_slot_exactly_once(
    app: tuple[Config, Engine],
) -> None:
    config, engine = app
    schedules = [HOURLY, REPORT]
    # All four first see the schedules at the same instant, then meet on three due slots
    # of the hourly task (and one of the daily one), each processor at the same `now`.
    moments = [
        at("2024-05-01 23:30"),
        at("2024-05-02 00:00"),
        at("2024-05-02 01:00"),
        at("2024-05-02 02:00"),
        at("2024-05-02 03:00:05"),
    ]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(
            target=racing_tick, args=(str(config.path), schedules, moments, barrier, results)
        )
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in range(4 * len(moments))]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    created = Counter(key for _, _, keys in reports for key in keys)
    assert created == {"maintenance.sweep": 1, "reports.daily": 1}
    released_per_moment = Counter()
    for moment, task_ids, _ in reports:
        released_per_moment[moment] += len(task_ids)
    assert released_per_moment == {
        moments[0].isoformat(): 0,
        moments[1].isoformat(): 1,
        moments[2].isoformat(): 1,
        moments[3].isoformat(): 1,
        moments[4].isoformat(): 2,  # the 03:00 hourly slot and the daily one
    }
    released = [r for r in rows(engine) if r.schedule_key is None]
    slots = sorted((r.task_name, from_db(r.scheduled_at)) for r in released)
    assert slots == [
        ("daily", at("2024-05-02 03:00")),
        ("sweep", at("2024-05-02 00:00")),
        ("sweep", at("2024-05-02 01:00")),
        ("sweep", at("2024-05-02 02:00")),
        ("sweep", at("2024-05-02 03:00")),
    ]
    assert next_run(engine, "maintenance.sweep") == at("2024-05-02 04:00")
    assert next_run(engine, "reports.daily") == at("2024-05-03 03:00")


# ---------------------------------------------------------------- DST


def _runs(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every run of `cron` in (start, end], by repeated `next_slot`."""
    found = []
    moment = next_slot(cron, zone, start)
    while moment <= end:
        found.append(moment)
        moment = next_slot(cron, zone, moment)
    return found


# (zone, date of the change, clocks went forward)
TRANSITIONS = [
    (NY, "2024-03-10", True),
    (NY, "2024-11-03", False),
    (LONDON, "2024-03-31", True),
    (LONDON, "2024-10-27", False),
]


@pytest.mark.parametrize(("zone", "day", "forward"), TRANSITIONS)
@pytest.mark.parametrize("hour", [0, 1, 2, 3])
@pytest.mark.parametrize("minute", [0, 30, 59])
def test_a_daily_job_runs_once_a_day_across_dst(
    zone: str, day: str, forward: bool, hour: int, minute: int
) -> None:
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(f"{day} 12:00").replace(tzinfo=tz) - timedelta(days=3)
    end = start + timedelta(days=6)

    runs = _runs(f"{minute} {hour} * * *", zone, start, end)

    days = Counter(run.astimezone(tz).date() for run in runs)
    assert sorted(days.values()) == [1] * 6, days
    assert len(days) == 6


@pytest.mark.parametrize(
    ("zone", "cron", "after", "expected_utc", "expected_local"),
    [
        # Spring forward: 02:30 does not exist in New York; it runs at 03:00 EDT.
        (NY, "30 2 * * *", "2024-03-09 12:00", "2024-03-10 07:00", "03:00 EDT"),
        (NY, "0 2 * * *", "2024-03-09 12:00", "2024-03-10 07:00", "03:00 EDT"),
        # Fall back: 01:30 happens twice in New York; it runs at the first (EDT).
        (NY, "30 1 * * *", "2024-11-02 12:00", "2024-11-03 05:30", "01:30 EDT"),
        (LONDON, "30 1 * * *", "2024-03-30 12:00", "2024-03-31 01:00", "02:00 BST"),
        (LONDON, "30 1 * * *", "2024-10-26 12:00", "2024-10-27 00:30", "01:30 BST"),
    ],
)
def test_dst_slots(
    zone: str, cron: str, after: str, expected_utc: str, expected_local: str
) -> None:
    slot = next_slot(cron, zone, at(after))
    assert slot == at(expected_utc)
    assert slot.astimezone(ZoneInfo(zone)).strftime("%H:%M %Z") == expected_local


def test_the_second_1_30_is_not_a_slot_even_when_reached() -> None:
    # 01:45 EDT, just after the first 01:30: the next run is the next day's, not 01:30 EST.
    assert next_slot("30 1 * * *", NY, at("2024-11-03 05:45")) == at("2024-11-04 06:30")


@pytest.mark.parametrize(("zone", "day", "forward"), TRANSITIONS)
@pytest.mark.parametrize("cron", ["0 * * * *", "30 * * * *"])
def test_an_hourly_job_follows_real_hours_across_dst(
    zone: str, day: str, forward: bool, cron: str
) -> None:
    tz = ZoneInfo(zone)
    midnight = datetime.fromisoformat(day).replace(tzinfo=tz)
    next_midnight = (datetime.fromisoformat(day) + timedelta(days=1)).replace(tzinfo=tz)

    runs = _runs(cron, zone, midnight - timedelta(seconds=1), next_midnight - timedelta(seconds=1))

    assert len(runs) == (23 if forward else 25)
    gaps = {b - a for a, b in zip(runs, runs[1:], strict=False)}
    assert gaps == {timedelta(hours=1)}


@pytest.mark.parametrize(
    ("after", "until"),
    [("2024-11-03 04:50", "2024-11-03 07:10"), ("2024-03-10 04:50", "2024-03-10 07:10")],
    ids=["fall-back", "spring-forward"],
)
def test_every_20_minutes_keeps_its_rhythm_across_dst(after: str, until: str) -> None:
    runs = _runs("*/20 * * * *", NY, at(after), at(until))
    assert [r.strftime("%H:%M") for r in runs] == [
        "05:00", "05:20", "05:40", "06:00", "06:20", "06:40", "07:00",
    ]  # fmt: skip


def test_two_slots_moved_onto_the_same_instant_run_once() -> None:
    # 02:00 does not exist on 2024-03-10 in New York and moves to 03:00, where 03:00 is.
    runs = _runs("0 2,3 * * *", NY, at("2024-03-10 05:00"), at("2024-03-11 12:00"))
    assert runs == [at("2024-03-10 07:00"), at("2024-03-11 06:00"), at("2024-03-11 07:00")]


@pytest.mark.parametrize(("zone", "day", "forward"), TRANSITIONS)
def test_tick_releases_a_daily_run_once_over_a_dst_night(
    tmp_path: Path, db_url: str, zone: str, day: str, forward: bool
) -> None:
    """Ticks every five minutes through the night release the 01:30 and 02:30 jobs once each."""
    config = write_config(tmp_path / "app", db_url, timezone=zone)
    engine = open_engine(config)
    entries = [
        ScheduleEntry(
            service="night", task=f"at_{h}", cron=f"30 {h} * * *", queue="scheduled", timeout=60
        )
        for h in (1, 2)
    ]
    tz = ZoneInfo(zone)
    moment = datetime.fromisoformat(f"{day} 00:00").replace(tzinfo=tz).astimezone(UTC)
    end = moment + timedelta(hours=5)
    released: Counter[str] = Counter()
    try:
        while moment <= end:
            for run in tick(store_of(engine), config, entries, moment).released:
                released[run.key] += 1
            moment += timedelta(minutes=5)
    finally:
        engine.dispose()
    assert released == {"night.at_1": 1, "night.at_2": 1}


# ---------------------------------------------------------------- cost and robustness

IDLE_TICK = """
import sys
from datetime import datetime
from pathlib import Path
from runtime.config import parse_config
from runtime.registry import ScheduleEntry
from runtime.scheduler import tick
from runtime.store import Store

config = parse_config(Path(sys.argv[1]))
entry = ScheduleEntry(service="reports", task="daily", cron="0 3 * * *", queue="scheduled",
                      timeout=600, params={"fmt": "pdf"})
result = tick(Store(config), config, [entry], datetime.fromisoformat(sys.argv[2]))
print(result.created, result.released, "croniter" in sys.modules)
"""


def test_a_tick_with_nothing_to_do_does_not_import_croniter(app: tuple[Config, Engine]) -> None:
    config, engine = app
    tick(store_of(engine), config, [REPORT], at("2024-05-01 10:00"))

    idle = subprocess.run(
        [sys.executable, "-c", IDLE_TICK, str(config.path), "2024-05-01T10:01:00+00:00"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    due = subprocess.run(
        [sys.executable, "-c", IDLE_TICK, str(config.path), "2024-05-02T03:00:00+00:00"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert idle.stdout.split() == ["()", "()", "False"], idle.stderr
    assert due.stdout.split()[-1] == "True", due.stderr
    assert len(released_rows(engine, "reports", "daily")) == 1


def test_a_deadlock_victim_is_recognised_as_worth_running_again(db_url: str) -> None:
    """Two transactions locking two rows in opposite orders: the server aborts one."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers; it has no deadlock victims")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from runtime.backends import Failure, backend_for

    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER)"))
        conn.execute(text("INSERT INTO pair (id, n) VALUES (1, 0), (2, 0)"))
    both_hold_one = threading.Barrier(2)
    victims: list[DBAPIError] = []

    def lock(first: int, second: int) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": first})
                both_hold_one.wait(timeout=30)
                conn.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": second})
        except DBAPIError as exc:
            victims.append(exc)

    threads = [threading.Thread(target=lock, args=pair) for pair in ((1, 2), (2, 1))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        engine.dispose()

    assert len(victims) == 1
    assert backend_for(db_url).classify(victims[0]) is Failure.DEADLOCK
    assert Failure.DEADLOCK.worth_retrying

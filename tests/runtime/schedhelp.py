"""Helpers for the scheduling tests: an app config, a database with the runtime's tables,
and a child-process entry point that runs one tick (for the racing-processor tests)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from runtime.clock import from_db
from runtime.config import Config, parse_config
from runtime.registry import ScheduleEntry
from runtime.schema import tasks
from runtime.store import Store


def write_config(root: Path, db_url: str, timezone: str = "UTC", server_id: int = 1) -> Config:
    """An rsx.toml in `root` using `db_url`, with an extra `reports` queue; parsed."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "rsx.toml").write_text(
        "[tasks]\n"
        f"database_url = {json.dumps(db_url)}\n"
        f"timezone = {json.dumps(timezone)}\n"
        f"server_id = {server_id}\n"
        "\n[tasks.queues]\nreports = { max_workers = 2 }\n",
        encoding="utf-8",
    )
    return parse_config(root / "rsx.toml")


_STORES: dict[Engine, Store] = {}


def open_engine(config: Config) -> Engine:
    """The runtime's own engine for the app's database (WAL and busy timeout on SQLite,
    READ COMMITTED on MySQL/MariaDB), with the tables created."""
    store = Store(config)
    store.ensure_schema()
    _STORES[store.engine] = store
    return store.engine


def store_of(engine: Engine) -> Store:
    """The store whose engine `open_engine` returned."""
    return _STORES[engine]


def rows(engine: Engine, service: str | None = None, task: str | None = None) -> list[Any]:
    """Every `_tasks` row (optionally of one task), by id."""
    query = select(tasks).order_by(tasks.c.id)
    if service is not None:
        query = query.where(tasks.c.service_name == service)
    if task is not None:
        query = query.where(tasks.c.task_name == task)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def upcoming_row(engine: Engine, key: str) -> Any:
    """The single upcoming row of schedule `key` (fails if there is not exactly one)."""
    with engine.connect() as conn:
        found = conn.execute(select(tasks).where(tasks.c.schedule_key == key)).all()
    assert len(found) == 1, f"expected one upcoming row for {key}, found {len(found)}"
    return found[0]


def next_run(engine: Engine, key: str) -> datetime:
    value = from_db(upcoming_row(engine, key).next_run_at)
    assert value is not None
    return value


def racing_tick(
    config_path: str,
    schedules: Sequence[ScheduleEntry],
    moments: Sequence[datetime],
    barrier: Any,
    results: Any,
) -> None:
    """Child process: for each moment, wait for the others, tick, report what was released.

    Once all four ticks of a moment are over, the winner of a release marks that run
    completed, as a worker would, so the next slot is not debounced by it.
    """
    from sqlalchemy import update

    from runtime.scheduler import tick

    config = parse_config(Path(config_path))
    engine = open_engine(config)
    try:
        for moment in moments:
            barrier.wait(timeout=60)
            result = tick(store_of(engine), config, schedules, moment)
            barrier.wait(timeout=60)  # every tick of this moment is over
            # The store's own write transaction: on SQLite it waits for the write lock the
            # way the runtime does (its connections have no busy timeout of their own).
            with store_of(engine).write() as conn:
                for run in result.released:
                    conn.execute(
                        update(tasks).where(tasks.c.id == run.task_id).values(status="completed")
                    )
            results.put(
                (
                    moment.isoformat(),
                    [run.task_id for run in result.released],
                    list(result.created),
                )
            )
    finally:
        engine.dispose()

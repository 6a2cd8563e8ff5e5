"""The runtime's tables on every backend: created once however many processes race,
versioned in `_tasks_alembic_version`, and holding what a task writes (long logs,
microsecond timestamps, any text)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, update

from runtime.clock import to_db, utcnow
from runtime.config import parse_config
from runtime.schema import SCHEMA_REVISION, metadata, tasks, version_table
from runtime.state import Status
from runtime.store import Claimer, Limits, Outcome, Store
from tests.runtime.backendhelp import write_config

SPAWN = multiprocessing.get_context("spawn")


def _first_use(config_path: str, barrier: Any, outcomes: Any) -> None:
    """Child: at the same moment as the others, use an empty database for the first time."""
    store = Store(parse_config(Path(config_path)))
    barrier.wait(timeout=60)
    try:
        task_id = store.insert_task(
            service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
        )
        outcomes.put(("ok", task_id))
    except Exception as exc:  # reported to the test, which shows it
        outcomes.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        store.dispose()


def test_processes_starting_at_once_on_an_empty_database_all_succeed(
    tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    starters = 6
    barrier = SPAWN.Barrier(starters)
    outcomes = SPAWN.Queue()
    children = [
        SPAWN.Process(target=_first_use, args=(str(config.path), barrier, outcomes))
        for _ in range(starters)
    ]
    for child in children:
        child.start()
    results = [outcomes.get(timeout=120) for _ in range(starters)]
    for child in children:
        child.join(timeout=60)
    errors = [detail for kind, detail in results if kind == "error"]
    assert errors == []
    assert len({task_id for _, task_id in results}) == starters

    store = Store(config)
    with store.read() as conn:
        versions = conn.execute(select(version_table.c.version_num)).scalars().all()
        tables = set(inspect(conn).get_table_names())
    assert tables == set(metadata.tables) | {version_table.name}
    assert versions == [SCHEMA_REVISION]
    store.dispose()


def test_a_database_of_a_newer_schema_revision_is_refused_in_one_line(
    tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    store = Store(config)
    task_id = store.insert_task(
        service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
    )
    with store.write() as conn:
        conn.execute(update(version_table).values(version_num="0099"))
    store.dispose()

    shown = subprocess.run(
        [sys.executable, "-m", "runtime.status", str(task_id), "--config", str(config.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 2
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1, shown.stderr
    assert "has task schema revision 0099" in lines[0]
    assert f"this runtime (revision {SCHEMA_REVISION}) does not know" in lines[0]
    assert "upgrade this one" in lines[0]


def test_a_log_longer_than_64_kb_is_kept_whole(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    now = utcnow()
    task_id = store.insert_task(
        service="svc", task="job", queue="default", params={}, timeout=60, now=now
    )
    worker = store.register_worker("default", 4242, 1.0, Limits(queue=1, server=1), now)
    assert worker is not None
    claimed = store.claim(Claimer("default", worker, 4242, 1.0), now)
    assert claimed is not None and claimed.id == task_id
    chunk = "".join(f"line {n:05d} " + "x" * 90 + "\n" for n in range(1000))  # 100 KB
    for _ in range(3):
        assert store.progress(task_id, 4242, lines=chunk, now=utcnow())
    outcome = Outcome(Status.COMPLETED, '"done"', "end\n", {"progress": 100}, 60)
    assert store.finish(task_id, 4242, outcome, utcnow()) == (True, None)
    status = store.get(task_id)
    assert status.status == "completed"
    assert status.log == chunk * 3 + "end\n"
    store.dispose()


def test_timestamps_keep_microseconds(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    moment = utcnow().replace(microsecond=123456)
    task_id = store.insert_task(
        service="svc", task="job", queue="default", params={}, timeout=60, now=moment
    )
    assert store.get(task_id).created_at == moment
    with store.read() as conn:
        before = conn.execute(
            select(tasks.c.id).where(tasks.c.created_at < to_db(moment + timedelta(microseconds=1)))
        ).scalars().all()
        after = conn.execute(
            select(tasks.c.id).where(tasks.c.created_at > to_db(moment - timedelta(microseconds=1)))
        ).scalars().all()
    assert before == after == [task_id]
    store.dispose()


def test_names_compare_case_sensitively_and_any_text_is_kept(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    now = utcnow()
    upper = store.insert_task(
        service="svc", task="Job", queue="Video", params={"title": "Été 🎬 動画"}, timeout=60,
        now=now,
    )
    lower = store.insert_task(
        service="svc", task="job", queue="video", params={}, timeout=60, now=now
    )
    assert store.pending_counts("video") == {"video": (1, lower)}
    with store.read() as conn:
        assert conn.execute(store.backend.claimable("video")).scalar() == lower
        named = conn.execute(select(tasks.c.id).where(tasks.c.task_name == "job")).scalars()
        assert list(named) == [lower]
    assert store.get(upper).params == {"title": "Été 🎬 動画"}
    store.dispose()

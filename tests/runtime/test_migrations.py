"""`python -m runtime.migrate` on every backend: a v1 database (made as commit 1bf1131 made
it) is upgraded in place with every value kept, runs tasks afterwards, and matches a
database created at the head; dry runs change nothing; racing and killed migrations end at
the head; a processor meeting an older schema names the command and touches nothing; the
processor's and workers' path never imports Alembic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from runtime.clock import utcnow
from runtime.errors import BackendError
from runtime.schema import (
    SCHEMA_REVISION,
    SCHEMA_REVISIONS,
    metadata,
    tasks,
    version_table,
    workers,
)
from runtime.state import TaskStatus
from runtime.store import Store
from runtime.store.base import check_revision
from runtime.urls import masked_url
from tests.databases import fresh_database
from tests.runtime import migratehelp, schema_v1
from tests.runtime.backendhelp import write_config
from tests.runtime.helpers import QUEUES, App, write_rsx_toml
from tests.runtime.migratehelp import backend_of, describe, engine_for, make_old_database

pytestmark = pytest.mark.slow

MakeApp = Callable[..., App]
APPLIED = (
    "0002 native JSON and timestamp types, worker_id, partial claim index\n"
    "0003 attempts, unique_key and cancel_requested_at for retries, unique tasks and "
    "cancellation\n"
)
UP_TO_DATE = f"database is up to date (revision {SCHEMA_REVISION})\n"
JSON_COLUMNS = ("params", "result", "status_data")
_HEADS: dict[str, dict[str, Any]] = {}


def head_schema(backend: str, tmp_path: Path) -> dict[str, Any]:
    """The description of a database whose tables the store created (at the head), made
    once per backend in a database of its own."""
    if backend not in _HEADS:
        with fresh_database(backend, tmp_path / f"head-{backend}") as url:
            store = Store(write_config(tmp_path / f"head-app-{backend}", url))
            store.ensure_schema()
            store.dispose()
            _HEADS[backend] = describe(url)
    return _HEADS[backend]


def stored_rows(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every `_tasks` and `_workers` row as the current tables read them, JSON parsed."""
    engine = engine_for(url)
    with engine.connect() as conn:
        task_rows = [dict(r._mapping) for r in conn.execute(select(tasks).order_by(tasks.c.id))]
        worker_rows = [
            dict(r._mapping) for r in conn.execute(select(workers).order_by(workers.c.id))
        ]
    engine.dispose()
    for row in task_rows:
        for name in JSON_COLUMNS:
            row[name] = None if row[name] is None else json.loads(row[name])
    return task_rows, worker_rows


def raw_rows(url: str) -> list[list[Any]]:
    """Every row of every table of the database, in whatever schema it has."""
    engine = engine_for(url)
    with engine.connect() as conn:
        found = [
            list(conn.execute(text(f"SELECT * FROM {name} ORDER BY 1")).all())
            for name in sorted(describe(url)["tables"])
        ]
    engine.dispose()
    return found


def expected_rows(
    rows: list[dict[str, Any]], workers_made: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What `stored_rows` must read after the upgrade, from the rows the old runtime wrote."""
    want_tasks = []
    for number, row in enumerate(rows, start=1):
        want = {
            **row,
            "id": number,
            "worker_id": None,
            "attempts": 0,
            "unique_key": None,
            "cancel_requested_at": None,
        }
        for name in JSON_COLUMNS:
            want[name] = None if row[name] is None else json.loads(row[name])
        want_tasks.append(want)
    want_workers = []
    for number, worker in enumerate(workers_made, start=1):
        want = {k: v for k, v in worker.items() if k != "current_task_id"}
        want_workers.append({**want, "id": number})
    return want_tasks, want_workers


def assert_kept(app: App, rows: list[dict[str, Any]], workers_made: list[dict[str, Any]]) -> None:
    """Every row and value the old runtime wrote reads back the same, raw and through the
    store (`Store.get` -> TaskStatus)."""
    url = app.config.database_url
    assert stored_rows(url) == expected_rows(rows, workers_made)
    store = Store(app.config)
    for number, row in enumerate(rows, start=1):
        assert store.get(number) == TaskStatus.from_row({**row, "id": number})
    store.dispose()


def assert_at_head(app: App, tmp_path: Path) -> None:
    """The database matches one created at the head, revision and all; `_meta` is gone."""
    url = app.config.database_url
    described = describe(url)
    assert "_meta" not in described["tables"]
    assert described == head_schema(backend_of(url), tmp_path)
    engine = engine_for(url)
    with engine.connect() as conn:
        assert conn.execute(select(version_table.c.version_num)).scalars().all() == [
            SCHEMA_REVISION
        ]
    engine.dispose()


def assert_native_types(url: str) -> None:
    """jsonb and timestamptz on PostgreSQL; JSON (LONGTEXT checked by JSON_VALID) on MariaDB."""
    backend = backend_of(url)
    engine = engine_for(url)
    with engine.connect() as conn:
        if backend == "postgresql":
            types = dict(
                conn.execute(
                    text(
                        "SELECT table_name || '.' || column_name, data_type "
                        "FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND table_name IN ('_tasks', '_workers')"
                    )
                ).all()
            )
            for name in JSON_COLUMNS:
                assert types[f"_tasks.{name}"] == "jsonb"
            stamps = [c.name for t in (tasks, workers) for c in t.c if c.name.endswith("_at")]
            assert len(stamps) == 10
            for table in (tasks, workers):
                for column in table.c:
                    if column.name.endswith("_at"):
                        assert types[f"{table.name}.{column.name}"] == "timestamp with time zone"
        elif backend == "mysql":
            checks = conn.execute(
                text(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = '_tasks'"
                )
            ).scalars().all()
            assert sorted(checks) == sorted(f"json_valid(`{name}`)" for name in JSON_COLUMNS)
    engine.dispose()


def operator_query(url: str) -> list[int]:
    """The ids of tasks whose `video_id` parameter is 5, queried the way an operator would."""
    backend = backend_of(url)
    query = {
        "postgresql": "SELECT id FROM _tasks WHERE params->>'video_id' = '5'",
        "mysql": "SELECT id FROM _tasks WHERE JSON_VALUE(params, '$.video_id') = '5'",
        "sqlite": "SELECT id FROM _tasks WHERE json_extract(params, '$.video_id') = 5",
    }[backend]
    engine = engine_for(url)
    with engine.connect() as conn:
        found = [int(i) for i in conn.execute(text(query)).scalars()]
    engine.dispose()
    return found


def test_a_v1_database_is_upgraded_in_place_keeps_every_value_and_runs_tasks(
    make_app: MakeApp, tmp_path: Path
) -> None:
    app = make_app()
    url = app.config.database_url
    rows, workers_made = make_old_database(url)

    migrated = app.command("migrate")
    assert (migrated.returncode, migrated.stdout, migrated.stderr) == (0, APPLIED, "")

    assert_kept(app, rows, workers_made)
    assert_native_types(url)
    assert_at_head(app, tmp_path)
    assert operator_query(url) == [1]

    again = app.command("migrate")
    assert (again.returncode, again.stdout, again.stderr) == (0, UP_TO_DATE, "")

    task_id = app.store.insert_task(
        service="demo", task="add", queue="default", params={"a": 2, "b": 3}, timeout=60,
        now=utcnow(),
    )
    processed = app.command("process")
    assert processed.returncode == 0, processed.stderr
    done = app.wait_status(task_id)
    assert (done.status, done.result) == ("completed", 5)
    # The v1 row left running by a worker that is gone is marked stuck by the same run.
    assert app.wait_status(2).status == "stuck"
    app.wait_idle()


def test_a_database_of_the_runtime_between_v1_and_alembic_is_upgraded_too(
    make_app: MakeApp, tmp_path: Path
) -> None:
    app = make_app()
    rows, workers_made = make_old_database(app.config.database_url, version=2)
    refused = app.command("status", "1")
    assert refused.returncode == 2
    assert "has an older task schema (v2); run: python -m runtime.migrate" in refused.stderr

    migrated = app.command("migrate")
    assert (migrated.returncode, migrated.stdout, migrated.stderr) == (0, APPLIED, "")
    assert_kept(app, rows, workers_made)
    assert_at_head(app, tmp_path)


def test_a_dry_run_lists_the_migrations_and_changes_nothing(make_app: MakeApp) -> None:
    app = make_app()
    url = app.config.database_url
    make_old_database(url)
    before = describe(url), raw_rows(url)

    dry = app.command("migrate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == APPLIED.replace("\n", " (dry run: not applied)\n")
    assert (describe(url), raw_rows(url)) == before


def test_a_dry_run_on_an_empty_database_creates_nothing_and_a_real_run_creates_the_head(
    make_app: MakeApp, tmp_path: Path
) -> None:
    app = make_app()
    dry = app.command("migrate", "--dry-run")
    assert (dry.returncode, dry.stdout) == (
        0,
        f"would create the task tables (revision {SCHEMA_REVISION})\n",
    )
    assert describe(app.config.database_url)["tables"] == []
    made = app.command("migrate")
    assert (made.returncode, made.stdout) == (
        0,
        f"created the task tables (revision {SCHEMA_REVISION})\n",
    )
    assert_at_head(app, tmp_path)


def test_two_migrations_started_at_once_both_succeed_and_upgrade_once(
    make_app: MakeApp, tmp_path: Path
) -> None:
    app = make_app()
    rows, workers_made = make_old_database(app.config.database_url)
    started = [app.start("migrate") for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in started]
    assert [process.returncode for process in started] == [0, 0], outputs
    assert sorted(out for out, _ in outputs) == sorted([APPLIED, UP_TO_DATE])
    assert [err for _, err in outputs] == ["", ""]
    assert_kept(app, rows, workers_made)
    assert_at_head(app, tmp_path)


@pytest.mark.parametrize("ddl_count", [2, 4, 5])
def test_a_migration_killed_halfway_is_completed_by_the_next_run(
    make_app: MakeApp, tmp_path: Path, ddl_count: int
) -> None:
    app = make_app()
    rows, workers_made = make_old_database(app.config.database_url)
    killed = subprocess.run(
        [sys.executable, migratehelp.__file__, "kill-after", str(ddl_count)],
        cwd=app.root, env=app.env, capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    rerun = app.command("migrate")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout in (APPLIED, UP_TO_DATE)
    assert_kept(app, rows, workers_made)
    assert_at_head(app, tmp_path)
    assert app.command("migrate").stdout == UP_TO_DATE


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_nul_character_that_jsonb_cannot_hold_stops_the_upgrade_naming_its_row(
    make_app: MakeApp,
) -> None:
    app = make_app()
    url = app.config.database_url
    rows, _ = make_old_database(url)
    engine = engine_for(url)
    with engine.begin() as conn:
        # Row 11 holds the escape of U+0000; row 12 an escaped backslash before "u0000".
        for params in ('{"x":"a\\u0000b"}', '{"x":"\\\\u0000"}'):
            conn.execute(insert(schema_v1.tasks).values({**rows[0], "params": params}))
    engine.dispose()
    before = describe(url), raw_rows(url)

    refused = app.command("migrate")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.splitlines() == [
        f"python -m runtime.migrate: error: database {masked_url(url)}: _tasks rows 11 hold "
        "\\u0000 in params, result or status_data, which jsonb cannot store: change or "
        "delete those rows, then migrate again"
    ]
    assert (describe(url), raw_rows(url)) == before

    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM _tasks WHERE id = 11"))
    engine.dispose()
    migrated = app.command("migrate")
    assert (migrated.returncode, migrated.stdout) == (0, APPLIED), migrated.stderr
    assert app.store.get(12).params == {"x": "\\u0000"}


@pytest.mark.parametrize("version", [1, 2])
def test_a_processor_meeting_an_older_schema_names_the_command_and_changes_nothing(
    make_app: MakeApp, version: int
) -> None:
    app = make_app()
    url = app.config.database_url
    make_old_database(url, version=version)
    before = describe(url), raw_rows(url)

    processed = app.command("process")
    assert processed.returncode == 2
    assert processed.stdout == ""
    lines = processed.stderr.splitlines()
    assert len(lines) == 1, processed.stderr
    assert lines[0].startswith("python -m runtime.process: error: database ")
    assert lines[0].endswith(
        f"has an older task schema (v{version}); run: python -m runtime.migrate"
    )
    assert (describe(url), raw_rows(url)) == before


def test_a_migration_from_revision_0001_gives_the_same_tables_as_creating_the_head(
    database_url: str, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from runtime.migrate import alembic_config

    engine = engine_for(database_url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": version_table.name}
        )
        assert compare_metadata(context, metadata) == []
    engine.dispose()
    assert describe(database_url) == head_schema(backend_of(database_url), tmp_path)


def test_the_revisions_are_the_ones_the_runtime_knows_and_head_is_its_revision() -> None:
    from alembic.script import ScriptDirectory

    from runtime.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == SCHEMA_REVISION
    ordered = [step.revision for step in reversed(list(script.walk_revisions()))]
    assert tuple(ordered) == SCHEMA_REVISIONS
    assert all(step.doc for step in script.walk_revisions())


def test_an_older_revision_is_refused_naming_the_command() -> None:
    url = "postgresql+psycopg://rsx:secret@db/app"
    with pytest.raises(BackendError) as older:
        check_revision(url, "0001")
    assert str(older.value) == (
        "database postgresql+psycopg://rsx:***@db/app has an older task schema (0001); "
        "run: python -m runtime.migrate"
    )
    check_revision(url, SCHEMA_REVISION)


def test_a_migrate_without_a_database_fails_in_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    (tmp_path / "rsx.toml").write_text(
        '[tasks]\ndatabase_url = "postgresql+psycopg://rsx:secret@127.0.0.1:1/app"\n'
    )
    failed = subprocess.run(
        [sys.executable, "-m", "runtime.migrate"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    lines = failed.stderr.splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("python -m runtime.migrate: error: database ")
    assert "secret" not in failed.stderr
    assert "rsx:***@127.0.0.1:1/app" in lines[0]


HOT_PATH = """\
import json, sys
from runtime import Task
import runtime.process

task_id = Task.dispatch("demo", "add", {"a": 20, "b": 22})
code = runtime.process.main([])
import runtime.worker, runtime.executor, runtime.spawn, runtime.api
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "alembic")
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "task_id": task_id, "alembic": loaded}, out)
"""


def test_processors_workers_and_dispatch_never_import_alembic(
    tmp_path: Path, app_package: Path
) -> None:
    root = tmp_path / "app"
    root.mkdir()
    config = write_rsx_toml(
        root, app_package, f"sqlite:///{tmp_path / 'tasks.db'}", QUEUES, worker_idle_seconds=0
    )
    # Any process of the run that imports Alembic fails: workers it spawns included.
    poison = tmp_path / "poison" / "alembic"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('alembic imported on the hot path')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSX_")}
    env["PYTHONPATH"] = str(poison.parent)
    report = tmp_path / "report.json"
    ran = subprocess.run(
        [sys.executable, "-c", HOT_PATH, str(report)],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = json.loads(report.read_text())
    assert found["code"] == 0 and found["alembic"] == []
    app = App(root, config)
    done = app.wait_status(found["task_id"])
    assert (done.status, done.result) == ("completed", 42)
    app.wait_idle()
    assert "alembic" not in "".join(
        app.worker_log(queue) for queue in ("default", *QUEUES)
    )
    app.store.dispose()

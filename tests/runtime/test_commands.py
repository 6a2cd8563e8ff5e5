"""The `python -m runtime.X` commands as a user runs them: output, exit status, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from runtime import BackendError, Task
from runtime.clock import to_db, utcnow
from runtime.config import parse_config
from runtime.schema import tasks
from runtime.store import Store
from tests.runtime.helpers import App, one_line_error, wait_until

# -- runtime.run (immediate mode) ----------------------------------------------------


def test_run_converts_each_value_by_its_parameter_type(app: App) -> None:
    done = app.command(
        "run", "demo", "echo",
        "--count", "3", "--flag", "--ratio=0.5", "--tags", '["a", "b"]',
        "--options={\"x\": 1}", "--maybe", "null", "--day=2024-02-29", "--mode", "slow",
        "--video-id", "7",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "echo count=3" in lines[0]
    assert json.loads(lines[-1]) == {
        "count": 3, "flag": True, "ratio": 0.5, "tags": ["a", "b"], "options": {"x": 1},
        "maybe": None, "day": "2024-02-29", "mode": "slow", "video_id": 7,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [("--flag=no", False), ("--flag=YES", True), ("--flag=0", False), ("--flag=true", True)],
)
def test_run_reads_booleans_as_words_or_digits(app: App, given: str, expected: bool) -> None:
    done = app.command("run", "demo", "echo", "--count=1", given)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["flag"] is expected


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["demo", "nope"], ["unknown task 'demo.nope'"]),
        (["nope", "add"], ["unknown service 'nope'"]),
        (["demo", "add", "--a=1", "--colour=red"], ["colour: unknown parameter"]),
        (["demo", "add"], ["a: missing"]),
        (["demo", "add", "--a=many"], ["a: ", "many"]),
        (["demo", "echo", "--count=1", "--flag=perhaps"], ["--flag", "perhaps"]),
        (["demo", "echo", "--count=1", "--flag", "--tags=[oops"], ["--tags", "not valid JSON"]),
        (["demo", "add", "--a"], ["--a needs a value"]),
        (["demo", "add", "stray"], ["unexpected argument 'stray'"]),
        (["demo"], ["SERVICE and TASK are required"]),
    ],
)
def test_run_reports_bad_tasks_and_parameters_in_one_line_with_exit_2(
    app: App, args: list[str], needles: list[str]
) -> None:
    one_line_error(app.command("run", *args), *needles)


def test_run_prints_the_traceback_and_exits_1_when_the_task_raises(app: App) -> None:
    done = app.command("run", "demo", "fail", "--message", "no disk")
    assert done.returncode == 1
    assert "about to fail" in done.stdout
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: no disk" in done.stderr


def test_run_exits_1_when_the_result_is_not_json(app: App) -> None:
    done = app.command("run", "demo", "bad_result")
    assert done.returncode == 1
    assert "not JSON-serialisable" in done.stderr


def test_run_uses_no_row_and_removes_its_temp_directory(app: App) -> None:
    done = app.command("run", "demo", "use_temp")
    assert done.returncode == 0, done.stderr
    folder = Path(json.loads(done.stdout.splitlines()[-1]))
    assert folder.parent == app.config.storage / "tasks"
    assert f"wrote {folder / 'out.txt'}" in done.stdout
    assert not folder.exists()
    with pytest.raises(Exception, match="no task with id 1"):
        app.status(1)


# -- runtime.status ------------------------------------------------------------------


def test_status_prints_text_or_one_json_object(app: App) -> None:
    task_id = Task.dispatch("demo", "add", {"a": 20, "b": 22})
    app.wait_status(task_id)

    text = app.command("status", str(task_id))
    assert text.returncode == 0, text.stderr
    assert f"task {task_id}: demo.add" in text.stdout
    assert "completed" in text.stdout and "42" in text.stdout

    done = app.command("status", str(task_id), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    for key in ("id", "status", "status_data", "log", "result", "started_at", "completed_at",
                "service_name", "task_name", "queue_name"):
        assert key in data
    assert (data["id"], data["status"], data["result"]) == (task_id, "completed", 42)
    started = datetime.fromisoformat(data["started_at"])
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0


def test_status_of_an_unknown_id_exits_2(app: App) -> None:
    one_line_error(app.command("status", "12345"), "no task with id 12345")


@pytest.mark.slow
def test_status_follow_shows_log_and_progress_as_they_arrive(app: App) -> None:
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "gated", {"gate": str(gate)})
    output = app.root / "follow.out"
    with output.open("w") as out:
        follower = app.start("status", str(task_id), "--follow", stdout=out)
        wait_until(
            lambda: "waiting for the gate" in output.read_text() and "50%" in output.read_text(),
            30, "the follower to show the first log line and 50% progress",
        )
        assert follower.poll() is None
        gate.touch()
        assert follower.wait(timeout=30) == 0
    shown = output.read_text()
    assert shown.index("waiting for the gate") < shown.index("gate opened")
    assert "100%" in shown
    assert shown.strip().endswith(f"task {task_id} completed")


@pytest.mark.slow
def test_status_follow_exits_1_when_the_task_fails(app: App) -> None:
    task_id = Task.dispatch("demo", "fail", {"message": "nope"})
    done = app.command("status", str(task_id), "--follow")
    assert done.returncode == 1
    assert "ValueError: nope" in done.stdout
    assert f"task {task_id} failed" in done.stdout


# -- runtime.redispatch --------------------------------------------------------------


def test_redispatch_prints_the_new_id_of_a_copy(app: App) -> None:
    stuck = app.insert_row("demo", "add", "default", {"a": 1, "b": 2}, status="stuck")
    done = app.command("redispatch", str(stuck))
    assert done.returncode == 0, done.stderr
    copy = int(done.stdout.strip())
    assert copy != stuck
    status = app.wait_status(copy)
    assert (status.status, status.result, status.params) == ("completed", 3, {"a": 1, "b": 2})
    assert app.status(stuck).status == "stuck"
    one_line_error(app.command("redispatch", "999"), "no task with id 999")


# -- the processor -------------------------------------------------------------------


def test_process_with_an_undefined_queue_exits_2(app: App) -> None:
    one_line_error(app.command("process", "--queue", "nope"), "queue 'nope' is not defined")


@pytest.mark.slow
def test_the_processor_runs_a_due_scheduled_task_once_and_leaves_upcoming_ones(app: App) -> None:
    first = app.command("process")
    assert first.returncode == 0, first.stderr
    with app.store.read() as conn:
        upcoming = dict(
            conn.execute(
                select(tasks.c.schedule_key, tasks.c.id).where(tasks.c.schedule_key.is_not(None))
            ).all()
        )
    hourly = upcoming["cleanup_service.cleanup_temp_directories"]
    daily = upcoming["cleanup_service.cleanup_old_tasks"]
    assert app.statuses([hourly, daily]) == {hourly: "pending", daily: "pending"}

    app.update_row(hourly, next_run_at=to_db(utcnow() - timedelta(minutes=1)))
    second = app.command("process")
    assert second.returncode == 0, second.stderr
    ran = app.status(hourly)
    assert (ran.status, ran.result) == ("completed", {"deleted": 0})
    assert ran.execution_mode == "scheduled"
    assert ran.queue_name == "scheduled"
    assert app.status(daily).status == "pending"


IMPORTS_PYDANTIC = (
    "import sys, runtime.process as p; code = p.main(sys.argv[1:]); "
    "print('pydantic' in sys.modules); sys.exit(code)"
)


def test_an_idle_processor_run_does_not_import_pydantic(app: App) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", IMPORTS_PYDANTIC], cwd=app.root, env=app.env,
            capture_output=True, text=True, timeout=60,
        )

    idle = run()
    assert idle.returncode == 0, idle.stderr
    assert idle.stdout.strip() == "False"

    task_id = app.insert_row("demo", "add", "default", {"a": 1})
    busy = run()
    assert busy.returncode == 0, busy.stderr
    assert app.status(task_id).result == 1


# -- config and database problems ----------------------------------------------------


def test_commands_without_a_config_exit_2_in_one_line(tmp_path: Path, app: App) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["status", "1"], ["process"], ["redispatch", "1"], ["run", "demo", "add"]):
        done = subprocess.run(
            [sys.executable, "-m", f"runtime.{args[0]}", *args[1:]],
            cwd=empty, env=app.env, capture_output=True, text=True, timeout=60,
        )
        one_line_error(done, "no rsx.toml")


def test_a_bad_config_key_is_one_line_naming_file_line_and_key(app: App) -> None:
    (app.root / "rsx.toml").write_text("[tasks]\nstorage = 'storage'\nbogus = 1\n")
    one_line_error(app.command("process"), "rsx.toml:3", "unknown key 'tasks.bogus'")


UNREACHABLE = [
    "postgresql+psycopg://rsx:s3cret-pw@127.0.0.1:1/rsx",
    "mysql+pymysql://rsx:s3cret-pw@127.0.0.1:1/rsx",
    "sqlite:////proc/no-such-dir/tasks.db",
]


@pytest.mark.parametrize(
    ("url", "args"),
    [(UNREACHABLE[0], ["status", "1"]), (UNREACHABLE[0], ["process"])]
    + [(url, ["redispatch", "1"]) for url in UNREACHABLE],
)
def test_an_unreachable_database_is_one_line_without_the_password(
    make_app: Callable[..., App], url: str, args: list[str]
) -> None:
    app = make_app()
    config = app.config.path.read_text().replace(app.config.database_url, url)
    app.config.path.write_text(config)
    line = one_line_error(app.command(*args))
    assert "s3cret-pw" not in line
    assert url.split("://")[0] in line


def test_dispatch_to_an_unreachable_database_raises_backend_error_without_password(
    app: App,
) -> None:
    import runtime.api

    text = app.config.path.read_text().replace(app.config.database_url, UNREACHABLE[0])
    app.config.path.write_text(text)
    config = parse_config(app.config.path)
    runtime.api.use_config(config, Store(config))
    with pytest.raises(BackendError) as failed:
        Task.dispatch("demo", "add", {"a": 1})
    assert "s3cret-pw" not in str(failed.value)
    assert "postgresql+psycopg://rsx:***@127.0.0.1:1/rsx" in str(failed.value)


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("status", "abc"),
        ("redispatch",),
        ("process", "--bogus"),
        ("schedules", "--bogus"),
        ("migrate", "--bogus"),
        ("worker",),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(app: App, command: tuple[str, ...]) -> None:
    line = one_line_error(app.command(*command))
    assert line.startswith(f"python -m runtime.{command[0]}: error: "), line

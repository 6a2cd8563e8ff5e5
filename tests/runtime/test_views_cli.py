"""`python -m runtime.tasks` and `python -m runtime.stats` as an operator runs them, on every
backend: rows in every status, each filter, `--json`, and bad input as one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.clock import utcnow
from tests.runtime.helpers import App, one_line_error
from tests.runtime.viewshelp import Seeded, insert, seed


@pytest.fixture
def seeded(app: App) -> Seeded:
    return seed(app, utcnow())


def _json_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _ids(app: App, *args: str) -> list[int]:
    return [int(str(row["id"])) for row in _json_lines(app.command("tasks", "--json", *args))]


# -- runtime.tasks --------------------------------------------------------------------


def test_tasks_prints_a_table_newest_first_with_progress_of_running_tasks(
    app: App, seeded: Seeded
) -> None:
    done = app.command("tasks")

    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == [
        "ID", "TASK", "QUEUE", "STATUS", "CREATED", "(UTC)", "TOOK", "PROGRESS",
    ]  # fmt: skip
    ids = [int(line.split()[0]) for line in lines]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 18
    by_id = {int(line.split()[0]): line for line in lines}
    assert by_id[seeded.running].split()[1:4] == ["demo.gated", "video", "running"]
    assert by_id[seeded.running].endswith("40%")
    assert "%" not in by_id[seeded.completed[0]]
    assert by_id[seeded.completed[2]].split()[-1] == "3.0s"
    assert by_id[seeded.pending].split()[-1] == "-"


def test_tasks_filters_by_status_queue_service_task_and_age(app: App, seeded: Seeded) -> None:
    assert _ids(app, "--status", "failed", "--status", "stuck") == [seeded.stuck, seeded.failed]
    assert _ids(app, "--status", "PENDING") == [seeded.other_pending, seeded.pending]
    assert _ids(app, "--queue", "video") == [seeded.other_pending, seeded.running]
    assert _ids(app, "--service", "demo", "--task", "fail") == [seeded.stuck, seeded.failed]
    assert _ids(app, "--service", "cleanup_service", "--status", "completed") == [
        seeded.scheduled_late, seeded.scheduled_on_time,
    ]  # fmt: skip
    recent = _ids(app, "--since", "15m")
    assert recent == [seeded.other_pending, seeded.pending, seeded.running]
    assert seeded.old_completed not in _ids(app, "--since", "2d", "--limit", "100")
    assert seeded.old_completed in _ids(app, "--since", "4d", "--limit", "100")
    assert _ids(app, "--limit", "2") == [seeded.other_pending, seeded.pending]
    assert _ids(app, "--queue", "nowhere") == []


def test_tasks_json_has_one_object_per_line(app: App, seeded: Seeded) -> None:
    rows = _json_lines(app.command("tasks", "--json", "--status", "running", "--status", "failed"))

    assert [row["id"] for row in rows] == [seeded.running, seeded.failed]
    running, failed = rows
    assert running["progress"] == 40
    assert running["service"] == "demo" and running["task"] == "gated"
    assert failed["status"] == "failed" and failed["progress"] is None
    assert failed["took_seconds"] == 2.0
    assert set(failed) == {
        "id", "service", "task", "queue", "status", "execution_mode", "created_at",
        "started_at", "completed_at", "took_seconds", "progress", "attempts", "next_run_at",
    }  # fmt: skip


def test_tasks_on_an_empty_database_says_so(app: App) -> None:
    done = app.command("tasks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "(no tasks)"
    assert app.command("tasks", "--json").stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--status", "done"], "invalid status 'done'"),
        (["--since", "1w"], "invalid duration '1w'"),
        (["--since", "0s"], "outside 1s to 3650d"),
        (["--since", "9999999d"], "outside"),
        (["--limit", "0"], "invalid limit '0'"),
        (["--limit", "many"], "invalid limit"),
        (["--limit", "10001"], "1 to 10000"),
        (["--queue", "a\x1b[2Jb"], "invalid queue 'a\\x1b[2Jb'"),
        (["--queue"], "expected one argument"),
        (["--wat"], "unrecognized arguments: --wat"),
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_tasks_refuses_bad_arguments_in_one_line(app: App, args: list[str], needle: str) -> None:
    line = one_line_error(app.command("tasks", *args), needle)
    assert line.startswith("python -m runtime.tasks: error: ")


# -- runtime.stats --------------------------------------------------------------------


def test_stats_reports_queues_tasks_and_schedules(app: App, seeded: Seeded) -> None:
    done = app.command("stats", "--window", "24h")

    assert done.returncode == 0, done.stderr
    text = done.stdout
    queues, tasks, schedules = text.split("\n\n")
    assert queues.splitlines()[0] == "Queues (server 1: 0 of 4 workers in use)"
    rows = {line.split()[0]: line.split() for line in queues.splitlines()[2:]}
    assert rows["default"][1:4] == ["1", "0", "0/1"]
    assert rows["video"][1:4] == ["1", "1", "0/2"]
    assert rows["slow"][1:5] == ["0", "0", "0/1", "-"]
    assert rows["default"][4].endswith("m") or rows["default"][4].endswith("s")

    assert tasks.splitlines()[0] == "Tasks ended in the last 24h"
    lines = {line.split()[0]: line.split() for line in tasks.splitlines()[2:]}
    add = lines["demo.add"]
    assert add[1:7] == ["10", "0.0%", "0", "0", "5.0s", "10.0s"]
    assert add[7:9] == [f"#{seeded.completed[-1]}", "completed"]
    fail = lines["demo.fail"]
    assert fail[1:5] == ["2", "50.0%", "1", "0"]
    assert fail[5:7] == ["2.0s", "2.0s"]
    assert lines["demo.gated"][1:5] == ["0", "-", "0", "0"]
    assert lines["demo.gated"][7:9] == [f"#{seeded.running}", "running"]

    schedule_lines = {line.split()[0]: line for line in schedules.splitlines()[2:]}
    assert "on time (+1.0s)" in schedule_lines["cleanup_service.cleanup_old_tasks"]
    assert "late (+5m01s)" in schedule_lines["cleanup_service.cleanup_temp_directories"]


def test_stats_json_window_excludes_older_runs(app: App, seeded: Seeded) -> None:
    insert(app, "demo", "fail", "default", "cancelled", utcnow() - timedelta(hours=1), ran=1.0)
    done = app.command("stats", "--json", "--window", "2d")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["window_seconds"] == 2 * 86400
    assert data["global_max_workers"] == 4
    tasks = {entry["task"]: entry for entry in data["tasks"]}
    assert tasks["demo.add"]["runs"] == 10
    assert tasks["demo.fail"]["runs"] == 3 and tasks["demo.fail"]["failed_percent"] == 33.33
    assert tasks["demo.fail"]["stuck"] == 1 and tasks["demo.fail"]["cancelled"] == 1
    queues = {entry["queue"]: entry for entry in data["queues"]}
    assert queues["video"]["pending"] == 1 and queues["video"]["running"] == 1
    assert queues["video"]["max_workers"] == 2
    assert queues["default"]["oldest_pending_id"] == seeded.pending
    assert 0 < queues["default"]["oldest_pending_age_seconds"] < timedelta(hours=1).seconds
    schedules = {entry["task"]: entry for entry in data["schedules"]}
    assert schedules["cleanup_service.cleanup_old_tasks"]["last_run"]["on_time"] is True
    assert schedules["cleanup_service.cleanup_temp_directories"]["last_run"]["on_time"] is False
    assert data["schedules_error"] is None

    wide = json.loads(app.command("stats", "--json", "--window", "4d").stdout)
    assert {entry["task"]: entry for entry in wide["tasks"]}["demo.add"]["runs"] == 11
    narrow = json.loads(app.command("stats", "--json", "--window", "30s").stdout)
    assert [entry["task"] for entry in narrow["tasks"]] == ["demo.gated"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--window", "yesterday"], "invalid duration 'yesterday'"),
        (["--window"], "expected one argument"),
        (["--json=yes"], "ignored explicit argument"),
        (["--config"], "expected one argument"),
    ],
)
def test_stats_refuses_bad_arguments_in_one_line(app: App, args: list[str], needle: str) -> None:
    line = one_line_error(app.command("stats", *args), needle)
    assert line.startswith("python -m runtime.stats: error: ")


# -- config and database problems -------------------------------------------------------


@pytest.mark.parametrize("command", ["tasks", "stats"])
def test_a_missing_config_or_unreachable_database_is_one_line(
    app: App, tmp_path: Path, command: str
) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    missing = subprocess.run(
        [sys.executable, "-m", f"runtime.{command}"],
        cwd=empty, env=app.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(missing, "no rsx.toml")

    config = tmp_path / "broken.toml"
    config.write_text(
        '[tasks]\ndatabase_url = "postgresql://rsx:s3cret@127.0.0.1:9/none"\n', encoding="utf-8"
    )
    line = one_line_error(app.command(command, "--config", str(config)), "database")
    assert "s3cret" not in line

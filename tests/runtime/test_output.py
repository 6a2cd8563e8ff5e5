"""What a task's row can hold: text every database stores, and bounded sizes.

A log line no database can store (a lone surrogate, NUL on PostgreSQL) is stored with the
character replaced; a status value or result that cannot be stored, or is over
`max_result_bytes`, fails the task saying so; a log over `max_log_bytes` keeps its
beginning and its last lines. In every case the lines written before are kept and the task
ends `completed` or `failed`, never `stuck`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from runtime import Task
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def test_log_lines_with_a_lone_surrogate_or_nul_are_kept_with_the_character_replaced(
    app: App,
) -> None:
    task_id = Task.dispatch("demo", "unstorable", {"what": "log"})

    status = app.wait_status(task_id)
    assert status.status == "completed", status.log
    assert status.result == "done"
    lines = [line.split("] ", 1)[1] for line in status.log.splitlines()]
    assert lines == ["before", "opened caf\ufffd.txt", "a nul \ufffd byte", "after"]


@pytest.mark.parametrize(
    ("what", "error"),
    [
        (
            "status",
            "status value 'file' cannot be stored: it holds the lone surrogate '\\udce9', "
            "which UTF-8 cannot encode",
        ),
        (
            "result",
            "result cannot be stored: it holds the lone surrogate '\\udce9', "
            "which UTF-8 cannot encode",
        ),
        ("big_status", "status data would be 5000010 bytes, over max_result_bytes (4000000)"),
    ],
)
def test_a_status_value_or_result_that_cannot_be_stored_fails_the_task_saying_so(
    app: App, what: str, error: str
) -> None:
    task_id = Task.dispatch("demo", "unstorable", {"what": what})

    status = app.wait_status(task_id)
    assert status.status == "failed", status.log
    assert status.result == {"error": error, "type": "ValueError"}
    assert "] before\n" in status.log
    assert f"Task failed: {'ValueError: ' if what != 'result' else ''}{error}" in status.log


def test_a_result_over_max_result_bytes_fails_the_task_saying_so(app: App) -> None:
    task_id = Task.dispatch("demo", "big_result", {"size": 20_000_000})

    status = app.wait_status(task_id, timeout=120)
    assert status.status == "failed", status.log
    error = "result is 20000002 bytes, over max_result_bytes (4000000)"
    assert status.result == {"error": error, "type": "ValueError"}
    assert "returning 20000000 characters" in status.log
    assert f"Task failed: {error}" in status.log


def test_a_log_over_max_log_bytes_keeps_its_beginning_a_marker_and_its_last_lines(
    app: App,
) -> None:
    task_id = Task.dispatch("demo", "chatty", {"lines": 700_000})

    status = app.wait_status(task_id, timeout=240)
    assert status.status == "completed", status.log[-2000:]
    log = status.log
    assert len(log.encode("utf-8")) <= app.config.max_log_bytes
    assert log.startswith("[") and log.splitlines()[0].endswith("] line 0")
    assert log.endswith("] line 699999\n")
    found = re.findall(r"^\[\.\.\. (\d+) lines truncated \.\.\.\]$", log, re.MULTILINE)
    assert len(found) == 1
    head, tail = log.split(f"[... {found[0]} lines truncated ...]\n")
    numbers = [int(line.rsplit(" ", 1)[1]) for line in (head + tail).splitlines()]
    assert numbers == list(range(len(head.splitlines()))) + list(
        range(700_000 - len(tail.splitlines()), 700_000)
    )
    assert len(numbers) + int(found[0]) == 700_000


def test_following_a_truncated_log_shows_no_line_twice_and_marks_every_gap(
    make_app: Callable[..., App],
) -> None:
    app = make_app(max_log_bytes=2000)
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "chatter", {"gate": str(gate), "pause": 0.01})
    output = app.root / "follow.out"
    with output.open("w") as out:
        follower = app.start("status", str(task_id), "--follow", stdout=out)
        counts: set[str] = set()

        def rewritten_twice() -> bool:
            counts.update(re.findall(r"\[\.\.\. (\d+) lines truncated", app.status(task_id).log))
            return len(counts) >= 3

        wait_until(rewritten_twice, 60, "the log to be rewritten twice while followed")
        gate.touch()
        assert follower.wait(timeout=60) == 0
    shown = output.read_text().splitlines()
    assert shown[-1] == f"task {task_id} completed"
    done = re.fullmatch(r"\[[^]]+\] done after (\d+) lines", shown[-2])
    assert done is not None, shown[-2]
    numbers: list[int] = []
    gap_allowed = False
    for line in shown[:-2]:
        if re.fullmatch(r"\[\.\.\. \d+ lines truncated \.\.\.\]", line):
            gap_allowed = True
            continue
        match = re.fullmatch(r"\[[^]]+\] line (\d+)", line)
        assert match is not None, line
        number = int(match.group(1))
        if numbers:
            assert number > numbers[-1], (numbers[-1], number)
            assert number == numbers[-1] + 1 or gap_allowed, (numbers[-1], number)
        numbers.append(number)
        gap_allowed = False
    assert numbers[0] == 0 and numbers[-1] == int(done.group(1)) - 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_dashboards_live_log_goes_on_after_a_rewrite_without_repeating_a_line(
    app: App,
) -> None:
    from runtime.tasklog import marker
    from runtime.web.events import TaskEvents

    lines = [f"[2026-01-01 00:00:00] line {number}\n" for number in range(40)]
    task_id = app.insert_row(
        "demo", "chatter", "other", {"gate": "never"}, status="running",
        status_log="".join(lines[:10]), worker_pid=1,
    )
    events = TaskEvents(app.store, task_id)

    def shown() -> str:
        found, _ = events.step()
        return "".join(data["text"] for name, data, _ in found if name == "log")

    assert shown() == "".join(lines[:10])
    # Rewritten with line 9, the last one shown, among the dropped: go on at the marker.
    app.update_row(task_id, status_log="".join(lines[:5]) + marker(20) + "".join(lines[25:30]))
    assert shown() == marker(20) + "".join(lines[25:30])
    # Rewritten again with line 29 kept: go on after it.
    app.update_row(task_id, status_log="".join(lines[:5]) + marker(22) + "".join(lines[27:32]))
    assert shown() == "".join(lines[30:32])

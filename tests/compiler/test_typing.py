"""The generated package passes `ruff check` and `mypy --strict`, and mypy checks callers:
their arguments, and the types of the results they read.

mypy runs are slow; they carry the `mypy` marker (`pytest -m mypy` selects them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compiler.apps import BIN, GOOD_FIXTURES, copy_fixture, mypy_errors, rsxgen

GOOD_CALLS = """\
from collections.abc import Sequence

from generated import tasks
from runtime import TaskStatus

task_id: int = tasks.video_service.transcode.dispatch(video_id=1)
task_id = tasks.video_service.transcode.dispatch(video_id=1, quality="low")
task_id = tasks.billing.invoice.charge.dispatch(invoice_id=3, amount_cents=995)
task_id = tasks.export_service.generate_export.dispatch(limit=None)
task_id = tasks.report_service.generate_report.dispatch(period="weekly")
result = tasks.report_service.generate_report.run()
state: TaskStatus = tasks.status(task_id)
ids: Sequence[int] = tasks.video_service.transcode.dispatch_many(
    [{"video_id": 1}, {"video_id": 2, "quality": "low"}]
)
cancelled: bool = tasks.cancel(task_id)
"""

BAD_CALLS = """\
from generated import tasks

tasks.video_service.transcode.dispatch(video_idd=1)
tasks.video_service.transcode.dispatch(video_id="x")
tasks.video_service.transcode.dispatch(1)
tasks.report_service.generate_report.dispatch(period="hourly")
name: str = tasks.video_service.transcode.dispatch(video_id=1)
tasks.video_service.transcode.dispatch_many([{"quality": "low"}])
tasks.video_service.transcode.dispatch_many([{"video_id": "x"}])
"""


def _build(fixture: str, tmp_path: Path) -> Path:
    """Build a copy of a fixture app; returns its output folder."""
    config = copy_fixture(fixture, tmp_path)
    result = rsxgen("build", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "generated" if fixture == "demo" else config.parent / "generated"
    assert (output / "tasks.py").is_file()
    return output


TYPED_GOOD = """\
import datetime
from collections.abc import Sequence

from generated import tasks
from runtime import TaskId, TaskStatus

handle = tasks.report_service.generate_report.dispatch(period="weekly", delay=30)
state = tasks.status(handle)
if state.result is not None:
    label: str = state.result["status"] + "!"
summary: dict[str, str] = tasks.report_service.generate_report.run()
typed: TaskId[dict[str, str]] = handle
plain: int = handle + 1
state_of_int: TaskStatus = tasks.status(int(handle))
at = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
handles: list[TaskId[dict[str, str]]] = tasks.report_service.generate_report.dispatch_many(
    [{}, {"period": "daily"}], run_at=at
)
numbers: Sequence[int] = handles
later: int = tasks.report_service.generate_report.dispatch(run_at=at)
"""

TYPED_BAD = """\
from generated import tasks

handle = tasks.report_service.generate_report.dispatch(period="weekly")
state = tasks.status(handle)
if state.result is not None:
    state.result["status"] + 1
count: int = tasks.report_service.generate_report.run()
tasks.report_service.generate_report.dispatch(delay="soon")
"""


def _mypy(cwd: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *targets],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("fixture", GOOD_FIXTURES)
def test_generated_package_passes_ruff(fixture: str, tmp_path: Path) -> None:
    output = _build(fixture, tmp_path)
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--isolated", "--extend-select", "E,W,B,UP,I", str(output)],
        cwd=output.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _errors_by_line(tmp_path: Path, good: str, bad: str) -> tuple[dict[int, str], str]:
    """mypy --strict on the built demo, `good.py` and `bad.py`: the messages of bad.py's
    errors by line (there must be no other), and mypy's whole output."""
    _build("demo", tmp_path)
    (tmp_path / "good.py").write_text(good)
    (tmp_path / "bad.py").write_text(bad)
    result = _mypy(tmp_path, "generated", "good.py", "bad.py")
    errors = mypy_errors(result)
    assert [e for e in errors if not e.startswith("bad.py:")] == [], result.stdout
    by_line: dict[int, str] = {}
    for error in errors:
        match = re.match(r"bad\.py:(\d+): error: (.*)", error)
        assert match, error
        by_line[int(match.group(1))] = by_line.get(int(match.group(1)), "") + match.group(2)
    return by_line, result.stdout


@pytest.mark.mypy
def test_mypy_strict_accepts_the_package_and_good_calls_and_names_bad_arguments(
    tmp_path: Path,
) -> None:
    by_line, output = _errors_by_line(tmp_path, GOOD_CALLS, BAD_CALLS)
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9], output
    assert 'Unexpected keyword argument "video_idd"' in by_line[3]
    assert re.search(r'Argument "video_id" .* incompatible type "str"; expected "int"', by_line[4])
    assert "Too many positional arguments" in by_line[5]
    assert re.search(r'Argument "period" .* incompatible type "Literal\[.hourly.\]"', by_line[6])
    assert 'expression has type "TaskId[dict[str, Any]]", variable has type "str"' in by_line[7]
    assert 'Missing key "video_id"' in by_line[8]
    assert 'TypedDict item "video_id" has type "int"' in by_line[9]


@pytest.mark.mypy
def test_mypy_checks_what_callers_do_with_typed_results(tmp_path: Path) -> None:
    """A dispatched task's handle carries its return type to `tasks.status(...).result`,
    `.run()` returns it, and the handle is still an int."""
    by_line, output = _errors_by_line(tmp_path, TYPED_GOOD, TYPED_BAD)
    assert sorted(by_line) == [6, 7, 8], output
    assert 'Unsupported operand types for + ("str" and "int")' in by_line[6]
    assert 'expression has type "dict[str, str]", variable has type "int"' in by_line[7]
    assert re.search(r'Argument "delay" .* incompatible type "str"', by_line[8])


@pytest.mark.mypy
def test_mypy_strict_accepts_every_parameter_type_of_the_nested_fixture(tmp_path: Path) -> None:
    output = _build("nested", tmp_path)
    app = output.parent
    (app / "calls.py").write_text(
        "import datetime\n\n"
        "from generated import tasks\n\n"
        "tasks.billing.invoice.charge.dispatch(\n"
        '    invoice_id=1, amount=2.5, currency="USD", note=None, due=datetime.date(2024, 5, 1)\n'
        ")\n"
        "tasks.billing.invoice.reconcile.dispatch(\n"
        '    since=datetime.datetime(2024, 5, 1, 12), batches={"a": [1]}, extra=object()\n'
        ")\n"
        "tasks.accounts.users.sync.sync_one.run(user_id=5, fields=['email'])\n"
        "tasks.payments.refund.dispatch(payment_id=9)\n"
    )
    result = _mypy(app, "generated", "calls.py")
    assert mypy_errors(result) == [], result.stdout + result.stderr

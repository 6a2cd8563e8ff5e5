"""The runtime on hostile input: parameters strict JSON cannot hold, task ids beyond the
id column, terminal escapes in logs, durations beyond their bound.

No database is needed: validation runs against the registry of a built fixture app, the
commands stop before opening the store, and the status views are pure functions.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ParamsError
from runtime.instance import TaskInstance
from runtime.registry import TaskEntry
from runtime.state import Status, TaskStatus
from runtime.status import Follower, progress_bar, render
from runtime.validation import validate
from tests.compiler.apps import built_registry, copy_fixture, rsxgen


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Mapping[tuple[str, str], TaskEntry]:
    return built_registry("typed", tmp_path_factory.mktemp("typed"))


def entry(kinds: Mapping[tuple[str, str], TaskEntry], task: str) -> TaskEntry:
    return kinds[("kinds", task)]


# Parameters: only strict JSON gets through, and every refusal is a ParamsError.


@pytest.mark.parametrize(
    ("task", "value", "message"),
    [
        ("ratio", float("nan"), "value: must be a finite number, not nan"),
        ("ratio", float("inf"), "value: must be a finite number, not inf"),
        ("ratio", float("-inf"), "value: must be a finite number, not -inf"),
        ("ratio", "NaN", "value: must be a finite number, not nan"),
        ("ratio", "-Infinity", "value: must be a finite number, not -inf"),
        ("scores", {"a": 1.0, "b": "nan"}, "value.b: must be a finite number, not nan"),
        ("anything", {"x": [1, float("nan")]}, "value.x.1: must be a finite number, not nan"),
        ("maybe_list", [0.5, float("inf")], "value.1: must be a finite number, not inf"),
        ("text", "a\ud800b", "value: is not valid Unicode text (lone surrogate '\\ud800' at 1)"),
        ("names", ["ok", "\udcff"], "value.1: is not valid Unicode text"),
        ("anything", {"\udc80": 1}, "value.\\udc80: the key is not valid Unicode text"),
        ("count", 2**20000, "value: is an integer of 20001 bits (more than 13000)"),
        ("anything", [2**20000], "value.0: is an integer of 20001 bits (more than 13000)"),
    ],
    ids=lambda value: "huge-int" if isinstance(value, int) and value.bit_length() > 64 else None,
)
def test_values_strict_json_cannot_hold_are_params_errors_naming_the_field(
    kinds: Mapping[tuple[str, str], TaskEntry], task: str, value: Any, message: str
) -> None:
    with pytest.raises(ParamsError) as raised:
        validate(entry(kinds, task), {"value": value})
    assert str(raised.value).startswith(f"invalid params for kinds.{task}: ")
    assert message in str(raised.value)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_nesting_deeper_than_a_hundred_levels_is_a_params_error(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    validate(entry(kinds, "anything"), {"value": _nested(100)})
    for depth in (101, 300, 100_000):
        with pytest.raises(ParamsError) as raised:
            validate(entry(kinds, "anything"), {"value": _nested(depth)})
        assert str(raised.value) == (
            "invalid params for kinds.anything: value: nested more than 100 levels deep"
        )


def test_a_list_that_holds_itself_is_a_params_error(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ParamsError, match="value: nested more than 100 levels deep"):
        validate(entry(kinds, "anything"), {"value": loop})


def test_a_huge_value_is_echoed_cut_short_with_its_length(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    with pytest.raises(ParamsError) as raised:
        validate(entry(kinds, "count"), {"value": "x" * 10_000_000})
    message = str(raised.value)
    assert len(message) < 400
    assert message.endswith("(got " + repr("x" * 200) + "… (10000000 characters))")


def test_many_bad_fields_are_counted_after_the_first_ten(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    params = {"value": 1, **{f"extra{i:02}": i for i in range(25)}}
    with pytest.raises(ParamsError) as raised:
        validate(entry(kinds, "count"), params)
    message = str(raised.value)
    assert message.count("unknown parameter") == 10
    assert message.endswith("; and 15 more")


def test_control_characters_in_a_field_name_are_escaped(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    with pytest.raises(ParamsError) as raised:
        validate(entry(kinds, "count"), {"value": 1, "\x1b[2J": 2})
    assert "\\x1b[2J: unknown parameter" in str(raised.value)
    assert "\x1b" not in str(raised.value)


@pytest.mark.parametrize(
    ("task", "value", "expected"),
    [
        ("ratio", "1.5", 1.5),
        ("ratio", 1e308, 1e308),
        ("anything", {"x": [1, 2.5, None, "ü"]}, {"x": [1, 2.5, None, "ü"]}),
        ("nested", {"a": [1, None]}, {"a": [1, None]}),
        ("count", 2**100, 2**100),
    ],
)
def test_strict_json_values_validate_unchanged(
    kinds: Mapping[tuple[str, str], TaskEntry], task: str, value: Any, expected: Any
) -> None:
    model = validate(entry(kinds, task), {"value": value})
    assert dict(model) == {"value": expected}
    json.dumps(model.model_dump(mode="json"), allow_nan=False, ensure_ascii=False).encode()


# Task ids: an id outside the BIGINT column names no task, checked before the database.


@pytest.mark.parametrize("command", ["runtime.status", "runtime.redispatch"])
@pytest.mark.parametrize(
    "task_id", ["99999999999999999999", "9223372036854775808", "-9223372036854775809"]
)
def test_an_id_beyond_64_bits_is_no_task_exit_2(tmp_path: Path, command: str, task_id: str) -> None:
    (tmp_path / "rsx.toml").write_text("[tasks]\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", command, task_id],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"python -m {command}: error: no task with id {task_id}\n"
    assert not (tmp_path / "storage").exists()


# The text view shows control characters escaped; --json keeps the exact text.

HOSTILE = "clear\x1b[2Jscreen\rover\x9b31mred\x07\tkept"


def _status(**fields: Any) -> TaskStatus:
    values: dict[str, Any] = {
        "id": 7,
        "status": Status.RUNNING,
        "service_name": "svc",
        "task_name": "t",
        "queue_name": "default",
        "execution_mode": "queued",
    }
    values.update(fields)
    return TaskStatus(**values)


def test_render_escapes_control_characters_but_keeps_newlines_and_tabs() -> None:
    status = _status(
        log=f"line one\n{HOSTILE}\n",
        status_data={"progress": "\x1b[31mhalf", "note": "\x9b2J"},
        result={"out": "\x1b]0;title\x07"},
    )
    shown = render(status)
    assert "    clear\\x1b[2Jscreen\\rover\\x9b31mred\\x07\tkept" in shown.splitlines()
    assert "progress   \\x1b[31mhalf" in shown
    assert '"note": "\\x9b2J"' in shown
    assert '{"out": "\\u001b]0;title\\u0007"}' in shown
    assert all(char in "\n\t" or char.isprintable() for char in shown)


def test_json_keeps_the_exact_text() -> None:
    status = _status(log=HOSTILE)
    assert json.loads(json.dumps(status.to_dict(), ensure_ascii=False))["log"] == HOSTILE


def test_follow_escapes_log_lines_and_a_textual_progress() -> None:
    out = io.StringIO()
    follower = Follower(None, 7, out)  # type: ignore[arg-type]
    follower.show(_status(log=f"{HOSTILE}\npartial\x1b", status_data={"progress": "\x1b[2J"}))
    assert (
        out.getvalue() == "clear\\x1b[2Jscreen\\rover\\x9b31mred\\x07\tkept\nprogress: \\x1b[2J\n"
    )
    assert progress_bar(50) == "[" + "#" * 15 + "." * 15 + "]  50%"


# Durations: set_temp_expiration refuses more than ten years, in the task's own call.


class _Sink:
    def __init__(self) -> None:
        self.expirations: list[int] = []

    def log(self, line: str) -> None: ...

    def set_status(self, key: str, value: Any) -> None: ...

    def temp_directory(self) -> Path:
        raise NotImplementedError

    def set_temp_expiration(self, seconds: int) -> None:
        self.expirations.append(seconds)

    def cancelled(self) -> bool:
        return False


def test_set_temp_expiration_refuses_more_than_ten_years_where_it_is_called() -> None:
    sink = _Sink()
    instance = TaskInstance(1, {}, sink)
    instance.set_temp_expiration(315_360_000)
    with pytest.raises(ValueError) as raised:
        instance.set_temp_expiration(315_360_001)
    assert str(raised.value) == (
        "set_temp_expiration takes at most 315360000 seconds (10 years), got 315360001"
    )
    assert raised.traceback[-1].name == "set_temp_expiration"
    with pytest.raises(ValueError, match="non-negative"):
        instance.set_temp_expiration(-1)
    assert sink.expirations == [315_360_000]


# python -m runtime.run: every value the CLI can express arrives; bad text is one line.


@pytest.fixture(scope="module")
def typed_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("typed_app")
    config = copy_fixture("typed", root)
    assert rsxgen("build", "--config", str(config), cwd=root).returncode == 0
    return config.parent


def _run(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.run", "kinds", *args],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_none_parameter_is_given_as_null(typed_app: Path) -> None:
    done = _run(typed_app, "nothing", "--value=null")
    assert (done.returncode, done.stdout, done.stderr) == (0, "null\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("names", "--value=" + "[" * 100_000), "--value: JSON nested too deeply: '[[[["),
        (("anything", "--value=" + "1" * 5000), "--value: Exceeds the limit (4300 digits)"),
        (("count", "--=3"), "option '--=3' has no parameter name"),
        (("ratio", "--value=nan"), "value: must be a finite number, not nan"),
    ],
    ids=["deep-json", "long-number", "empty-name", "nan"],
)
def test_bad_command_line_values_are_one_line_exit_2(
    typed_app: Path, args: tuple[str, ...], message: str
) -> None:
    done = _run(typed_app, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, done.stderr
    assert message in lines[0]

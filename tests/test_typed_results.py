"""Typed results without a database: `TaskEntry.check_result`/`load_result`, `load_status`
and `TaskId`, as the worker and the generated client use them."""

from __future__ import annotations

import datetime
import json
import pickle
import subprocess
import sys
import typing
from typing import Any, Literal

import pydantic
import pytest

import runtime
from runtime.errors import ResultError, TaskError
from runtime.registry import TaskEntry, load_status
from runtime.state import ExecutionMode, Status, TaskId, TaskStatus

MOMENT = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)


class _NoParams(pydantic.BaseModel):
    pass


def entry(result: Any = typing.Any, **fields: Any) -> TaskEntry:
    """A registry entry as generated code writes it, returning `result`."""
    return TaskEntry(
        service="video",
        task="transcode",
        module="services.video",
        function="transcode",
        queue="default",
        timeout=60,
        description="Transcode",
        params=_NoParams,
        result=result,
        **fields,
    )


def state(status: Status, result: Any, task: str = "transcode") -> TaskStatus[Any]:
    return TaskStatus(5, status, "video", task, "default", ExecutionMode.QUEUED, result=result)


def test_a_matching_result_comes_back_as_json_ready_data() -> None:
    assert entry(dict[str, int]).check_result({"a": 1}) == {"a": 1}
    assert entry(dict[str, datetime.datetime]).check_result({"at": MOMENT}) == {
        "at": "2024-05-01T12:30:00Z"
    }
    assert entry(list[float] | None).check_result([1, 2.5]) == [1.0, 2.5]
    assert entry(None).check_result(None) is None
    assert entry(Literal["a", "b"]).check_result("b") == "b"


def test_a_wrong_shape_is_a_result_error_in_one_line() -> None:
    with pytest.raises(ResultError) as wrong:
        entry(dict[str, int]).check_result({"a": "x"})
    assert str(wrong.value) == (
        "result does not match the return annotation dict[str, int]: 'x' at ['a']: "
        "input should be a valid integer, unable to parse string as an integer"
    )
    assert isinstance(wrong.value, TaskError)
    with pytest.raises(ResultError) as several:
        entry(list[int]).check_result(["a", 1, "b", "c"])
    assert str(several.value).endswith("unable to parse string as an integer (and 2 more)")
    assert "\n" not in str(several.value)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (float, float("nan"), "float: nan: input should be a finite number"),
        (None, 0, "None: 0: input should be None"),
        (int | None, [1], "int | None: [1]: input should be a valid integer"),
        (Literal["a", "b"], "c", "typing.Literal['a', 'b']: 'c': input should be 'a' or 'b'"),
        (
            datetime.date,
            "soon",
            "datetime.date: 'soon': input should be a valid date or datetime, input is too short",
        ),
        (
            int,
            "x" * 500,
            f"int: '{'x' * 79}… (502 characters): input should be a valid integer, "
            "unable to parse string as an integer",
        ),
    ],
)
def test_result_errors_name_the_annotation_and_the_value(
    kind: Any, value: Any, expected: str
) -> None:
    with pytest.raises(ResultError) as wrong:
        entry(kind).check_result(value)
    assert str(wrong.value) == f"result does not match the return annotation {expected}"


def test_a_value_inside_any_that_has_no_json_form_is_a_result_error() -> None:
    with pytest.raises(ResultError, match="result is not JSON-serialisable: .*object"):
        entry(dict[str, Any]).check_result({"a": object()})


def test_without_an_annotation_the_value_passes_unchanged() -> None:
    """The worker's own JSON check then applies, as before typed results existed."""
    loose = entry()
    value = {"numbers": {1, 2}}
    assert loose.check_result(value) is value
    assert loose.load_result(value) is value


def test_a_stored_result_loads_back_into_its_declared_type() -> None:
    typed = entry(dict[str, datetime.datetime])
    stored = json.loads(json.dumps(typed.check_result({"at": MOMENT})))
    assert typed.load_result(stored) == {"at": MOMENT}
    assert entry(datetime.date).load_result("2024-02-29") == datetime.date(2024, 2, 29)
    with pytest.raises(ResultError, match="stored result does not match .* datetime.date"):
        entry(datetime.date).load_result("someday")


def test_load_status_types_only_a_completed_tasks_result() -> None:
    tasks = {("video", "transcode"): entry(datetime.datetime)}
    done = load_status(tasks, state(Status.COMPLETED, "2024-05-01T12:30:00Z"))
    assert done.result == MOMENT and done.id == 5
    failed = state(Status.FAILED, {"error": "boom", "type": "ValueError"})
    assert load_status(tasks, failed) is failed
    running = state(Status.RUNNING, None)
    assert load_status(tasks, running) is running
    removed = state(Status.COMPLETED, "x", task="gone")
    assert load_status(tasks, removed) is removed


def test_an_entry_of_an_older_registry_has_every_new_field_by_default() -> None:
    old = TaskEntry("s", "t", "services.s", "t", "default", 60, "d", _NoParams)
    assert (old.retries, old.retry_backoff, old.retry_on) == (0, 10.0, ())
    assert (old.unique, old.unique_while, old.delay, old.result) == (None, "pending", 0.0, Any)


def test_the_registry_imports_and_checks_untyped_results_without_pydantic() -> None:
    code = (
        "import sys\n"
        "from runtime.registry import TaskEntry\n"
        "e = TaskEntry('s', 't', 'm', 'f', 'q', 1, 'd', object)\n"
        "assert e.check_result({1}) == {1}\n"
        "print('pydantic' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_a_task_id_is_an_int_in_every_respect() -> None:
    task_id = TaskId[dict[str, int]](5)
    assert task_id == 5 and isinstance(task_id, int) and type(task_id) is TaskId
    assert task_id + 1 == 6 and hash(task_id) == hash(5) and {5: "x"}[task_id] == "x"
    assert json.dumps({"id": task_id}) == '{"id": 5}'
    assert (str(task_id), repr(task_id), f"{task_id:03d}") == ("5", "5", "005")
    copied = pickle.loads(pickle.dumps(task_id))
    assert copied == 5 and type(copied) is TaskId


def test_runtime_exports_the_typed_result_names() -> None:
    assert runtime.TaskId is TaskId
    assert runtime.ResultError is ResultError
    assert TaskStatus[int] is not TaskStatus  # generic in its result
    assert {"TaskId", "ResultError"} <= set(runtime.__all__)

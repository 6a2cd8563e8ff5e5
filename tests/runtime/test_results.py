"""Typed results with real workers: a result is checked against its task's return
annotation when the task finishes, and the typed client reads it back in that type."""

from __future__ import annotations

import datetime
import importlib

import pytest

from runtime import Task
from tests.runtime.helpers import App

pytestmark = pytest.mark.slow


def test_a_result_of_the_wrong_shape_fails_the_task_in_one_line(app: App) -> None:
    task_id = Task.dispatch("demo", "wrong_shape")

    status = app.wait_status(task_id)
    message = (
        "result does not match the return annotation dict[str, int]: 'many' at ['count']: "
        "input should be a valid integer, unable to parse string as an integer"
    )
    assert status.status == "failed"
    assert status.result == {"error": message, "type": "ResultError"}
    assert f"Task failed: ResultError: {message}" in status.log
    assert "Traceback" not in status.log


def test_a_typed_result_is_stored_as_json_and_read_back_in_its_type(app: App) -> None:
    task_id = Task.dispatch("demo", "dated", {"year": 2024})

    status = app.wait_status(task_id)
    assert status.status == "completed", status.log
    assert status.result == {"at": "2024-05-01T12:00:00Z"}
    tasks = importlib.import_module("generated.tasks")
    typed = tasks.status(task_id)
    assert typed.result == {"at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)}
    assert (typed.id, typed.status, typed.log) == (status.id, status.status, status.log)

"""Scheduled tasks of the scheduler's end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runtime import TaskInstance, schedule, task


@task("Write the nightly report", queue="reports")
@schedule("0 3 * * *")
def report(task: TaskInstance, label: str = "nightly") -> dict[str, Any]:
    task.log(f"writing the {label} report")
    return {"label": label, "task_id": task.id}


@task("Hold until the gate file exists", queue="gated")
@schedule("*/5 * * * *")
def hold(task: TaskInstance, gate: str = "storage/gate", timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} not opened within {timeout} s")
        time.sleep(0.02)
    return {"held": task.id}

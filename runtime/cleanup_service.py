"""The built-in `cleanup_service`: always part of every app's registry and schedule table.

The compiler scans this file like an app's service module; the bodies delegate to
`runtime.maintenance`, which owns the store-side work.
"""

from __future__ import annotations

from typing import Any

from runtime import TaskInstance, schedule, task


@task("Delete completed/failed/cancelled tasks after task_retention_days")
@schedule("0 2 * * *")
def cleanup_old_tasks(task: TaskInstance) -> dict[str, Any]:
    from runtime.maintenance import cleanup_old_tasks as run

    return run(task)


@task("Delete task temp directories whose expiry has passed")
@schedule("0 * * * *")
def cleanup_temp_directories(task: TaskInstance) -> dict[str, Any]:
    from runtime.maintenance import cleanup_temp_directories as run

    return run(task)

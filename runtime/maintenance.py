"""The work of the built-in `cleanup_service` tasks: expired temp folders and old rows."""

from __future__ import annotations

import shutil
from datetime import timedelta
from typing import Any

from runtime.clock import utcnow
from runtime.instance import TaskInstance


def cleanup_temp_directories(task: TaskInstance) -> dict[str, Any]:
    """Delete the temp folders of ended tasks whose expiry has passed; how many."""
    from runtime.api import context

    ctx = context()
    now = utcnow()
    deleted = 0
    for task_id in ctx.store.expired_temp_directories(now):
        folder = ctx.config.storage / "tasks" / str(task_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            deleted += 1
        ctx.store.forget_temp_directory(task_id, now)
    task.log(f"Deleted {deleted} expired temp director{'y' if deleted == 1 else 'ies'}")
    return {"deleted": deleted}


def cleanup_old_tasks(task: TaskInstance) -> dict[str, Any]:
    """Delete completed and failed rows older than `task_retention_days`; how many."""
    from runtime.api import context

    ctx = context()
    cutoff = utcnow() - timedelta(days=ctx.config.task_retention_days)
    ids = ctx.store.delete_finished_before(cutoff)
    for task_id in ids:
        shutil.rmtree(ctx.config.storage / "tasks" / str(task_id), ignore_errors=True)
    task.log(
        f"Deleted {len(ids)} completed or failed task{'' if len(ids) == 1 else 's'} "
        f"older than {ctx.config.task_retention_days} days"
    )
    return {"deleted": len(ids)}

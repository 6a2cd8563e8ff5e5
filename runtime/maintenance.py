"""The work of the built-in `cleanup_service` tasks: expired temp folders and old rows."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.clock import utcnow
from runtime.instance import TaskInstance

if TYPE_CHECKING:
    from runtime.config import Config
    from runtime.store import Store

log = logging.getLogger(__name__)


def task_folder(config: Config, task_id: int) -> Path:
    """A queued task's temp directory: `{storage}/tasks/{id}/`."""
    return config.storage / "tasks" / str(task_id)


def delete_expired_temp_directories(config: Config, store: Store, now: datetime) -> int:
    """Delete this server's expired temp folders of ended tasks and mark them cleaned.

    Only rows whose `server_id` is this server's are touched: their folders are in this
    server's `storage/`. The processor calls this on every run (one indexed query when
    nothing has expired), so every server's folders go within a minute of expiring
    whichever server the hourly task runs on. Returns how many folders were removed.

    A folder that cannot be removed is logged and its row left as it is, so the next run
    tries again; the other folders are removed all the same.
    """
    deleted = 0
    for task_id in store.expired_temp_directories(now):
        folder = task_folder(config, task_id)
        try:
            if remove_temp_directory(folder):
                deleted += 1
            store.forget_temp_directory(task_id, now)
        except Exception as exc:
            log.warning(
                "task %s: could not delete its temp directory %s, left for the next run: %s",
                task_id,
                folder,
                exc,
                extra={"task_id": task_id},
            )
    return deleted


def remove_temp_directory(folder: Path) -> bool:
    """Remove a task's temp directory, raising OSError if it cannot; whether it was there.

    Something else in its place (a file, a symbolic link) is removed itself: a link is
    never followed.
    """
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        shutil.rmtree(folder)
    else:
        os.unlink(folder)
    return True


def cleanup_temp_directories(task: TaskInstance) -> dict[str, Any]:
    """The built-in task: delete this server's expired temp folders; how many."""
    from runtime.api import context

    ctx = context()
    deleted = delete_expired_temp_directories(ctx.config, ctx.store, utcnow())
    task.log(f"Deleted {deleted} expired temp director{'y' if deleted == 1 else 'ies'}")
    return {"deleted": deleted}


def cleanup_old_tasks(task: TaskInstance) -> dict[str, Any]:
    """Delete completed, failed and cancelled rows older than `task_retention_days`; how
    many."""
    from runtime.api import context

    ctx = context()
    cutoff = utcnow() - timedelta(days=ctx.config.task_retention_days)
    ids = ctx.store.delete_finished_before(cutoff)
    for task_id in ids:
        shutil.rmtree(task_folder(ctx.config, task_id), ignore_errors=True)
    task.log(
        f"Deleted {len(ids)} completed, failed or cancelled task{'' if len(ids) == 1 else 's'} "
        f"older than {ctx.config.task_retention_days} days"
    )
    return {"deleted": len(ids)}

"""The store: every read and state change of the runtime's tables, and nothing else does SQL.

One `Store` per database and server, made of one part per concern: `_tasks` rows
(`runtime.store.tasks`), worker registrations (`runtime.store.workers`) and schedules'
upcoming rows (`runtime.store.schedules`), on a common base that owns the engine, the
transactions, the retry policy and the error messages (`runtime.store.base`). What
differs between databases is in `runtime.backends`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runtime.clock import log_line
from runtime.store.base import ATTEMPTS, guarded
from runtime.store.schedules import ScheduleStore
from runtime.store.tasks import (
    Claimer,
    Outcome,
    TaskStore,
    dumps,
    queue_channel,
    task_channel,
)
from runtime.store.views import ViewStore
from runtime.store.workers import (
    STARTING_GRACE_S,
    Limits,
    WorkerStore,
    count_alive,
    worker_alive,
)
from runtime.urls import masked_url


class Store(TaskStore, WorkerStore, ScheduleStore, ViewStore):
    """Access to the task tables of one database, for one server."""

    def dispatch(
        self,
        *,
        service: str,
        task: str,
        queue: str,
        params: Sequence[Mapping[str, Any]],
        timeout: int,
        now: datetime,
        run_at: datetime | None = None,
        unique_keys: Sequence[str] | None = None,
    ) -> tuple[list[int], int]:
        """Insert pending tasks in one transaction (held back until `run_at` when given;
        with `unique_keys`, as `TaskStore.insert_tasks`); their ids, and how many live
        workers serve the queue as seen after the insert (what `runtime.spawn.ensure_worker`
        needs).

        Where the backend orders a dispatch against a worker retiring from the queue
        (`Backend.counts_workers_in_dispatch`) the count is read inside the insert's own
        transaction, as sure as a read after the commit and one round trip fewer.
        Elsewhere (MariaDB) it is read after the commit, through its own guard, so that a
        failed read cannot make the insert run twice; there a single task's INSERT commits
        as it runs (`Backend.autocommits_single_dispatch`), on the connection the read then
        uses: two round trips in all.
        """
        fields: dict[str, Any] = {
            "service": service,
            "task": task,
            "queue": queue,
            "params": params,
            "timeout": timeout,
            "now": now,
            "run_at": run_at,
            "unique_keys": unique_keys,
        }
        if self.backend.counts_workers_in_dispatch:
            # The rows are read under the insert's lock; whether their processes live is
            # judged after the commit, so the lock is not held for those checks.
            ids, rows = self.insert_tasks_then(
                lambda cursor: self.queue_worker_rows(cursor, queue), **fields
            )
            return ids, count_alive(rows or [], now)
        ids = self.insert_tasks(**fields)
        return ids, self.live_workers(now, queue)[queue] if ids else 0


__all__ = [
    "ATTEMPTS",
    "STARTING_GRACE_S",
    "Claimer",
    "Limits",
    "Outcome",
    "Store",
    "dumps",
    "guarded",
    "log_line",
    "masked_url",
    "queue_channel",
    "task_channel",
    "worker_alive",
]

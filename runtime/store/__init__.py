"""The store: every read and state change of the runtime's tables, and nothing else does SQL.

One `Store` per database and server, made of one part per concern: `_tasks` rows
(`runtime.store.tasks`), worker registrations (`runtime.store.workers`) and schedules'
upcoming rows (`runtime.store.schedules`), on a common base that owns the engine, the
transactions, the retry policy and the error messages (`runtime.store.base`). What
differs between databases is in `runtime.backends`.
"""

from __future__ import annotations

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
from runtime.store.workers import STARTING_GRACE_S, Limits, WorkerStore, worker_alive
from runtime.urls import masked_url


class Store(TaskStore, WorkerStore, ScheduleStore, ViewStore):
    """Access to the task tables of one database, for one server."""


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

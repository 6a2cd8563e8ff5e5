"""Each queue's load as the operator views show it: pending, running, workers and limits.

`collect_queues` joins the store's counts (`Store.queue_counts`, `Store.worker_counts`)
with the config's limits. The limits are per server, so the worker count set against
`max_workers` is this server's; live workers of other servers sharing the database are
counted apart. A queue with rows but no entry in the config is listed too (its tasks wait
for a config that defines it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runtime.config import Config
from runtime.store import Store
from runtime.summaries import iso


@dataclass(frozen=True)
class QueueView:
    """One queue now."""

    name: str
    pending: int
    running: int
    workers: int
    workers_elsewhere: int
    max_workers: int | None
    oldest_pending_id: int | None
    oldest_pending_at: datetime | None

    def oldest_age(self, now: datetime) -> timedelta | None:
        """How long the oldest pending task has waited."""
        if self.oldest_pending_at is None:
            return None
        return max(now - self.oldest_pending_at, timedelta(0))

    def to_dict(self, now: datetime) -> dict[str, Any]:
        age = self.oldest_age(now)
        return {
            "queue": self.name,
            "pending": self.pending,
            "running": self.running,
            "workers": self.workers,
            "workers_other_servers": self.workers_elsewhere,
            "max_workers": self.max_workers,
            "oldest_pending_id": self.oldest_pending_id,
            "oldest_pending_at": iso(self.oldest_pending_at),
            "oldest_pending_age_seconds": None if age is None else round(age.total_seconds(), 3),
        }


@dataclass(frozen=True)
class QueuesView:
    """Every queue, and this server's global limit and live workers."""

    queues: tuple[QueueView, ...]
    server_id: int
    global_max_workers: int
    workers: int

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "global_max_workers": self.global_max_workers,
            "workers": self.workers,
            "queues": [queue.to_dict(now) for queue in self.queues],
        }


def collect_queues(store: Store, config: Config, now: datetime) -> QueuesView:
    """The load of every configured queue and of every queue that has rows."""
    counts = store.queue_counts()
    live = store.worker_counts(now)
    names = sorted(set(config.queues) | set(counts) | {queue for _, queue in live})
    views = []
    for name in names:
        found = counts.get(name)
        limit = config.queue(name)
        views.append(
            QueueView(
                name=name,
                pending=found.pending if found else 0,
                running=found.running if found else 0,
                workers=live.get((config.server_id, name), 0),
                workers_elsewhere=sum(
                    n
                    for (server, queue), n in live.items()
                    if queue == name and server != config.server_id
                ),
                max_workers=None if limit is None else limit.max_workers,
                oldest_pending_id=found.oldest_pending_id if found else None,
                oldest_pending_at=found.oldest_pending_at if found else None,
            )
        )
    return QueuesView(
        queues=tuple(views),
        server_id=config.server_id,
        global_max_workers=config.global_max_workers,
        workers=sum(n for (server, _), n in live.items() if server == config.server_id),
    )

"""Reads and state changes of `_workers` rows: the gate of the worker limits.

A worker process counts against its queue's `max_workers` and the server's
`global_max_workers` from the moment a slot is reserved for it until its row is deleted.
Counting the live rows and adding one happen in one transaction serialised on the
server's workers lock, so racing starters can never both take the last slot.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from runtime.backends import queue_lock
from runtime.clock import from_db, to_db
from runtime.processes import is_alive
from runtime.schema import status_is, tasks, workers
from runtime.state import Status
from runtime.store.base import StoreBase, guarded

# How long a reserved worker slot waits for the process it was reserved for to adopt it.
STARTING_GRACE_S = 30

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """How many workers may run: for one queue, and on this server across queues."""

    queue: int
    server: int


def worker_alive(row: Any, now: datetime) -> bool:
    """Whether a `_workers` row stands for a live worker, or one still starting (pid 0).

    A reservation whose time is not a datetime (MySQL hands a zero date back as text) is
    not one: it could never be adopted.
    """
    return _alive(row.pid, row.process_started, row.heartbeat_at, now)


def _alive(pid: int, started: float | None, heartbeat_at: Any, now: datetime) -> bool:
    if pid == 0:
        if not isinstance(heartbeat_at, datetime):
            return False
        reserved = from_db(heartbeat_at)
        return reserved is not None and now - reserved < timedelta(seconds=STARTING_GRACE_S)
    return is_alive(pid, started)


_WORKER_COLUMNS = (
    workers.c.id,
    workers.c.pid,
    workers.c.process_started,
    workers.c.queue_name,
    workers.c.heartbeat_at,
)
"""A worker registration's identity and what judging it needs (`worker_alive`)."""

_ALIVE_COLUMNS = (workers.c.pid, workers.c.process_started, workers.c.heartbeat_at)
"""What `worker_alive` reads of a registration."""


def count_alive(rows: list[dict[str, Any]], now: datetime) -> int:
    """How many of the `_workers` rows stand for live or starting workers."""
    return sum(
        1
        for row in rows
        if _alive(row["pid"], row["process_started"], row["heartbeat_at"], now)
    )


class WorkerStore(StoreBase):
    """The `_workers` half of the store."""

    @property
    def _workers_lock(self) -> str:
        return f"rsx_workers_{self.server_id}"

    def _worker_rows(self) -> Any:
        return select(*_WORKER_COLUMNS).where(workers.c.server_id == self.server_id)

    def _queue_workers(self) -> Any:
        """This server's worker rows of the queue bound as `b_queue`: only what
        `worker_alive` judges, since a dispatch reads them each time and every column
        returned costs the driver a description to parse."""
        return select(*_ALIVE_COLUMNS).where(
            workers.c.server_id == bindparam("b_server"),
            workers.c.queue_name == bindparam("b_queue"),
        )

    @guarded
    def live_workers(self, now: datetime, queue: str | None = None) -> Counter[str]:
        """Live and starting workers of this server, by queue (an unlocked estimate)."""
        if queue is not None:
            with self.raw_read() as cursor:
                found = self.queue_worker_rows(cursor, queue)
            return Counter({queue: count_alive(found, now)})
        with self.read() as conn:
            rows = conn.execute(self._worker_rows()).all()
        return Counter(r.queue_name for r in rows if worker_alive(r, now))

    def queue_worker_rows(self, cursor: Any, queue: str) -> list[dict[str, Any]]:
        """This server's `_workers` rows of `queue`, read through a driver cursor (a
        dispatch's, inside its transaction or after it); `count_alive` judges them."""
        statement = self.compile("queue_workers", self._queue_workers)
        statement.execute(cursor, {"b_server": self.server_id, "b_queue": queue})
        return statement.all(cursor)

    def _free_slots(self, conn: Connection, queue: str, limits: Limits, now: datetime) -> int:
        """Inside the workers lock: delete dead registrations, count the slots left."""
        rows = conn.execute(self._worker_rows()).all()
        dead = [r.id for r in rows if not worker_alive(r, now)]
        if dead:
            conn.execute(delete(workers).where(workers.c.id.in_(dead)))
        live = [r for r in rows if r.id not in dead]
        on_queue = sum(1 for r in live if r.queue_name == queue)
        return max(0, min(limits.queue - on_queue, limits.server - len(live)))

    def _insert_worker(
        self, conn: Connection, queue: str, pid: int, started: float, now: datetime
    ) -> int:
        moment = to_db(now)
        result = conn.execute(
            insert(workers).values(
                server_id=self.server_id,
                pid=pid,
                process_started=started,
                queue_name=queue,
                heartbeat_at=moment,
                created_at=moment,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    @guarded
    def register_worker(
        self, queue: str, pid: int, started: float, limits: Limits, now: datetime
    ) -> int | None:
        """Register a worker if the queue's and the server's limits allow; its row id or None.

        Rows of dead processes are removed on the way.
        """
        with self.write(self._workers_lock) as conn:
            if self._free_slots(conn, queue, limits, now) < 1:
                return None
            return self._insert_worker(conn, queue, pid, started, now)

    @guarded
    def reserve_workers(self, queue: str, wanted: int, limits: Limits, now: datetime) -> list[int]:
        """Reserve up to `wanted` worker slots for processes about to be started; their ids.

        A reservation counts against the limits like a live worker until the started
        process adopts it (`adopt_worker`) or `STARTING_GRACE_S` passes, so racing
        dispatchers and processors start no more processes than there are slots.
        """
        with self.write(self._workers_lock) as conn:
            free = min(wanted, self._free_slots(conn, queue, limits, now))
            return [self._insert_worker(conn, queue, 0, 0.0, now) for _ in range(free)]

    @guarded
    def adopt_worker(self, slot: int, pid: int, started: float, now: datetime) -> int | None:
        """Take over a reservation as the worker process `pid`; its id, or None if expired."""
        with self.write() as conn:
            taken = conn.execute(
                update(workers)
                .where(
                    workers.c.id == slot,
                    workers.c.server_id == self.server_id,
                    workers.c.pid == 0,
                    workers.c.heartbeat_at > to_db(now - timedelta(seconds=STARTING_GRACE_S)),
                )
                .values(pid=pid, process_started=started, heartbeat_at=to_db(now))
            ).rowcount
        return slot if taken == 1 else None

    @guarded
    def heartbeat(
        self, worker_id: int, now: datetime, running: int | None = None
    ) -> datetime | None:
        """Record that the worker is alive (other servers judge its tasks by this).

        With `running`, the id of the task the worker runs, the same transaction reads
        whether a cancel of that task was requested: when (None: not requested, or the task
        is no longer running). A worker learns of a cancel this way, at no cost per task.
        """
        with self.write() as conn:
            conn.execute(
                update(workers).where(workers.c.id == worker_id).values(heartbeat_at=to_db(now))
            )
            if running is None:
                return None
            requested = conn.execute(
                select(tasks.c.cancel_requested_at).where(
                    tasks.c.id == running, status_is(Status.RUNNING)
                )
            ).scalar()
        return from_db(requested)

    @guarded
    def deregister(self, worker_id: int, queue: str | None = None) -> None:
        """Remove the worker's registration, freeing its slot.

        A worker retiring from `queue` holds the queue's dispatch lock (`queue_lock`) while
        it does, so that a dispatch counting the queue's workers inside its own transaction
        (`Store.dispatch`) sees either the worker still registered, and commits its task
        before the worker's hand-off looks for tasks, or the worker gone.
        """
        with self.write(None if queue is None else queue_lock(queue)) as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    @guarded
    def forget_dead_workers(self, now: datetime) -> int:
        """Delete the registrations of this server's workers whose process is gone; how many.

        A row that cannot be judged is logged and left as it is.
        """
        with self.read() as conn:
            rows = conn.execute(self._worker_rows()).all()
        dead = []
        for row in rows:
            try:
                if not worker_alive(row, now):
                    dead.append(row.id)
            except Exception as exc:
                log.warning(
                    "worker row %s: cannot tell whether its process is alive, left as it is: "
                    "%s: %s",
                    row.id,
                    type(exc).__name__,
                    exc,
                )
        if dead:
            with self.write(self._workers_lock) as conn:
                conn.execute(delete(workers).where(workers.c.id.in_(dead)))
        return len(dead)

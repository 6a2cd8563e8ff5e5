"""Reads and state changes of schedules' rows in `_tasks`, for the scheduler and its CLI.

Each schedule owns at most one *upcoming* row: pending, `execution_mode='scheduled'`, and
`schedule_key = "service.task"`, a UNIQUE column. Every write here is guarded by that key
and the row's status, so any number of processors may run them at once: the one whose
UPDATE changes the row wins, and inserting an upcoming row another processor already
inserted is refused by the key (`insert_upcoming` returns False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from runtime.clock import log_line, to_db
from runtime.schema import status_is, tasks
from runtime.state import ExecutionMode, Status
from runtime.store.base import StoreBase, guarded


class ScheduleStore(StoreBase):
    """The schedules' part of the store."""

    def _upcoming(self, key: str) -> Any:
        return and_(tasks.c.schedule_key == key, status_is(Status.PENDING))

    @guarded
    def upcoming_rows(self) -> dict[str, Any]:
        """Every upcoming row, by schedule key."""
        with self.read() as conn:
            rows = conn.execute(
                select(
                    tasks.c.id,
                    tasks.c.schedule_key,
                    tasks.c.queue_name,
                    tasks.c.timeout_seconds,
                    tasks.c.params,
                    tasks.c.status_data,
                    tasks.c.next_run_at,
                ).where(tasks.c.schedule_key.is_not(None))
            ).all()
        return {row.schedule_key: row for row in rows}

    @guarded
    def delete_upcoming(self, keys: Sequence[str]) -> None:
        """Delete the upcoming rows of schedules no longer in the code."""
        with self.write() as conn:
            conn.execute(
                delete(tasks).where(tasks.c.schedule_key.in_(keys), status_is(Status.PENDING))
            )

    @guarded
    def update_upcoming(self, row_id: int, key: str, values: Mapping[str, Any]) -> bool:
        """Change an upcoming row while it still is one; whether it changed."""
        with self.write() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == row_id, self._upcoming(key)).values(**values)
            ).rowcount
        return changed == 1

    @guarded
    def insert_upcoming(self, values: Mapping[str, Any]) -> bool:
        """Insert a schedule's upcoming row; False if another processor inserted it first."""
        try:
            with self.write() as conn:
                conn.execute(insert(tasks).values(**values))
        except IntegrityError:
            return False
        return True

    @guarded
    def due_upcoming(self, now: datetime) -> list[Any]:
        """The upcoming rows whose `next_run_at` has come, earliest first."""
        with self.read() as conn:
            return list(
                conn.execute(
                    select(
                        tasks.c.id,
                        tasks.c.schedule_key,
                        tasks.c.service_name,
                        tasks.c.task_name,
                        tasks.c.queue_name,
                    )
                    .where(
                        tasks.c.schedule_key.is_not(None),
                        status_is(Status.PENDING),
                        tasks.c.next_run_at <= to_db(now),
                    )
                    .order_by(tasks.c.next_run_at, tasks.c.id)
                ).all()
            )

    @guarded
    def run_in_progress(self, service: str, task: str) -> bool:
        """Whether an earlier run of the task is running, or released and still waiting."""
        with self.read() as conn:
            found = conn.execute(
                select(tasks.c.id)
                .where(
                    tasks.c.service_name == service,
                    tasks.c.task_name == task,
                    tasks.c.schedule_key.is_(None),
                    or_(
                        status_is(Status.RUNNING),
                        and_(
                            status_is(Status.PENDING),
                            tasks.c.execution_mode == ExecutionMode.SCHEDULED.value,
                        ),
                    ),
                )
                .limit(1)
            ).first()
        return found is not None

    @guarded
    def postpone(self, row_id: int, key: str, now: datetime, slot: datetime) -> bool:
        """Move a due upcoming row to `slot` (debounce); whether this call moved it."""
        with self.write() as conn:
            moved = conn.execute(
                update(tasks)
                .where(tasks.c.id == row_id, self._upcoming(key), tasks.c.next_run_at <= to_db(now))
                .values(next_run_at=to_db(slot), scheduled_at=to_db(slot), updated_at=to_db(now))
            ).rowcount
        return moved == 1

    @guarded
    def release(
        self, row_id: int, key: str, now: datetime, following: Mapping[str, Any]
    ) -> bool:
        """Turn a due upcoming row into an ordinary pending task and insert the next
        upcoming row (`following`) in the same transaction; whether this call released it.

        The guarded UPDATE is the exactly-once point: only the processor whose UPDATE
        changes the row goes on; the others find the key already cleared. A duplicate
        key on the insert rolls both back, leaving the row upcoming for the next tick.
        """
        moment = to_db(now)
        try:
            with self.write() as conn:
                won = conn.execute(
                    update(tasks)
                    .where(tasks.c.id == row_id, self._upcoming(key), tasks.c.next_run_at <= moment)
                    .values(
                        schedule_key=None,
                        status_data=None,
                        server_id=self.server_id,
                        updated_at=moment,
                    )
                ).rowcount
                if won != 1:
                    return False
                conn.execute(insert(tasks).values(**following))
        except IntegrityError:
            return False
        return True

    @guarded
    def cancel_upcoming(
        self, row_id: int, key: str, now: datetime, following: Mapping[str, Any] | None
    ) -> bool:
        """Cancel a schedule's upcoming run (its slot is skipped) and insert the upcoming row
        of the slot after it (`following`; None for a schedule no longer in the code) in
        the same transaction; False if the row is no longer upcoming (released meanwhile)."""
        moment = to_db(now)
        line = log_line("Cancelled before it started; the schedule's next slot is kept", now)
        try:
            with self.write() as conn:
                won = conn.execute(
                    update(tasks)
                    .where(tasks.c.id == row_id, self._upcoming(key))
                    .values(
                        status=Status.CANCELLED.value,
                        schedule_key=None,
                        status_data=None,
                        completed_at=moment,
                        updated_at=moment,
                        status_log=func.coalesce(tasks.c.status_log, "") + line,
                    )
                ).rowcount
                if won != 1:
                    return False
                if following is not None:
                    conn.execute(insert(tasks).values(**following))
        except IntegrityError:
            return False
        return True

    @guarded
    def last_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The most recent run (not the upcoming row) of each (service, task), if any."""
        found: dict[tuple[str, str], Any] = {}
        with self.read() as conn:
            for service, task in keys:
                row = conn.execute(
                    select(tasks.c.id, tasks.c.status, tasks.c.started_at, tasks.c.completed_at)
                    .where(
                        tasks.c.service_name == service,
                        tasks.c.task_name == task,
                        tasks.c.schedule_key.is_(None),
                    )
                    # `id + 0`: ordered by the bare id, SQLite walks the primary key from the
                    # newest row down, past every row of other tasks, instead of this
                    # task's index entries.
                    .order_by((tasks.c.id + 0).desc())
                    .limit(1)
                ).first()
                if row is not None:
                    found[(service, task)] = row
        return found

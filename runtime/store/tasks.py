"""Reads and state changes of `_tasks` rows: dispatch, claim, progress, finish, stuck, cleanup.

Each state change is one guarded UPDATE (`... WHERE id = :id AND status = 'running' AND
worker_pid = :pid`) whose rowcount says whether it happened, so a late writer can never
overwrite a decision made by someone else (a finished task marked stuck, a stuck task
finished). None of them takes a named lock: the row's own lock orders writers, and a
claim is made safe by the backend (`Backend.claim`).

The hot path costs one transaction per dispatch and one per task run: a worker finishes
its task and claims the next in the same transaction (`finish(..., claim_next=...)`); a
failed attempt that is to be retried goes back to pending in that same statement.

A task is *due* when it has no `next_run_at` (a delayed dispatch or a retry sets one) or
that time has come; a claim takes only due tasks. The reads that decide whether a queue
has work for a worker (`pending_counts`, `claimable_count`, `has_claimable`) count a task
due within `worker_idle_seconds` as work, since a worker waits that long for its queue's
next task anyway (`Executor.idle`): a worker started for it runs it when it falls due.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, case, delete, exists, func, select, update

from runtime.clock import from_db, log_line, to_db, utcnow
from runtime.errors import BackendError
from runtime.processes import is_alive, kill_orphaned_group
from runtime.schema import Timestamp, claimable, status_is, tasks, workers
from runtime.state import ExecutionMode, Status, TaskStatus
from runtime.store.base import StoreBase, guarded

# Rows deleted per transaction by the old-task cleanup: small enough that a dispatch waiting
# behind one batch is not held long, and far below every database's bound-parameter limit.
DELETE_BATCH = 1000

# The ended states the old-task cleanup deletes; stuck rows stay for review.
CLEANED_UP = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

# How many times a cancel tries when the task changes state between its statements (a
# pending task claimed meanwhile, say).
CANCEL_TRIES = 5

# How many times a unique dispatch tries to insert when each time the key's holder ended
# between the refused INSERT and the read of its id (PostgreSQL; a few at most in practice).
UNIQUE_TRIES = 10

# The most characters of log text one statement carries (at most 1 MB in UTF-8): a longer
# write is sent in pieces, in one transaction, so that no statement nears MariaDB's default
# max_allowed_packet (16 MB) whatever max_log_bytes is.
LOG_PIECE_CHARS = 250_000

log = logging.getLogger(__name__)
T = TypeVar("T")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """JSON text of a value as stored in a column (raises TypeError if not serialisable).

    One encoder serves every call: `json.dumps` with options builds a new one each time."""
    return _ENCODER.encode(value)


def _log_pieces(lines: str) -> tuple[list[str], str]:
    """Log text as the pieces all but the last of which go before the statement that
    carries the last (see `LOG_PIECE_CHARS`); no leading pieces for a short text."""
    if len(lines) <= LOG_PIECE_CHARS:
        return [], lines
    pieces = [lines[i : i + LOG_PIECE_CHARS] for i in range(0, len(lines), LOG_PIECE_CHARS)]
    return pieces[:-1], pieces[-1]


def task_channel(task_id: int) -> str:
    """The channel notified, in the same transaction, whenever a task's row changes in a way
    a follower shows (claimed, log or status flushed, finished, marked stuck)."""
    return f"task_{task_id}"


def queue_channel(queue: str) -> str:
    """The channel notified when a task is dispatched to `queue` (idle workers listen)."""
    return f"queue_{queue}"


class Cancel(StrEnum):
    """What `TaskStore.cancel` did."""

    CANCELLED = "cancelled"
    """The task was pending and is now cancelled."""
    REQUESTED = "requested"
    """The task is running; its worker is asked to stop it."""
    ENDED = "ended"
    """The task had already ended; nothing changed."""
    UPCOMING = "upcoming"
    """The task is a schedule's upcoming run, not changed yet."""


@dataclass(frozen=True)
class Outcome:
    """How a task run ended, as the worker records it with `TaskStore.finish`."""

    status: Status
    result: str | None
    lines: str = ""
    status_data: Mapping[str, Any] | None = None
    temp_ttl: int = 0
    replace_log: bool = False
    """Whether `lines` is the whole log, to write in place of the row's (a truncated log)."""
    retry_at: datetime | None = None
    """When set, the attempt failed and is to be retried: the task goes back to `pending`
    with this `next_run_at` instead of ending with `status`."""


@dataclass(frozen=True)
class Claimer:
    """Who claims: a registered worker, and the process that will execute the task."""

    queue: str
    worker_id: int
    pid: int
    started: float


class TaskStore(StoreBase):
    """The `_tasks` half of the store."""

    # -- reading ------------------------------------------------------------------------

    @guarded
    def get(self, task_id: int) -> TaskStatus:
        """The task's current status; `TaskNotFoundError` if there is no such row."""
        from runtime.errors import TaskNotFoundError

        task_id = int(task_id)  # a TaskId too: PyMySQL would send an int subclass as text
        if not -(2**63) <= task_id < 2**63:  # no column holds it; SQLite would overflow
            raise TaskNotFoundError(f"no task with id {task_id}")
        with self.read() as conn:
            row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        return TaskStatus.from_row(row)

    def work_horizon(self, now: datetime | None = None) -> datetime:
        """The latest `next_run_at` that counts as work for a worker at `now` (default: the
        current time): `worker_idle_seconds` later, naive UTC as stored."""
        moment = to_db((now or utcnow()) + timedelta(seconds=self.config.worker_idle_seconds))
        assert moment is not None
        return moment

    @guarded
    def pending_counts(
        self, queue: str | None = None, now: datetime | None = None
    ) -> dict[str, tuple[int, int]]:
        """Pending tasks that are work for a worker (see `work_horizon`) by queue:
        `{queue: (count, oldest id)}`."""
        query = (
            select(tasks.c.queue_name, func.count(), func.min(tasks.c.id))
            .where(claimable(queue, self.work_horizon(now)))
            .group_by(tasks.c.queue_name)
        )
        with self.read() as conn:
            rows = conn.execute(query).all()
        return {name: (int(count), int(oldest)) for name, count, oldest in rows}

    @guarded
    def claimable_count(self, queue: str, limit: int, now: datetime | None = None) -> int:
        """How many tasks of the queue are work for a worker (see `work_horizon`),
        counting at most `limit`."""
        first = self.backend.first_claimable(queue, self.work_horizon(now), limit).subquery()
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(first)).scalar_one())

    @guarded
    def has_claimable(self, queue: str, now: datetime | None = None) -> bool:
        """Whether the queue has work for a worker (see `work_horizon`): one index probe
        when it has a due task."""
        statement = self.backend.prepared(
            "has_claimable",
            lambda: self.backend.first_claimable(
                bindparam("b_queue"), bindparam("b_due", type_=Timestamp())
            ),
        )
        params = {"b_queue": queue, "b_due": self.work_horizon(now)}
        with self.read() as conn:
            return conn.execute(statement, params).first() is not None

    @guarded
    def next_due(self, queue: str, now: datetime) -> datetime | None:
        """When the queue's next task falls due: `now` when one is due already, the
        earliest `next_run_at` of its delayed or retrying tasks otherwise; None when it has
        no pending task (upcoming scheduled runs aside). An idle worker waits until then.

        One statement, which reads every claimable row of the queue: when a worker is idle
        those are the tasks not yet due."""
        statement = self.backend.prepared(
            "next_due",
            lambda: self.backend.on_claim_index(
                select(
                    func.min(tasks.c.next_run_at), func.count() - func.count(tasks.c.next_run_at)
                ).where(claimable(bindparam("b_queue")))
            ),
        )
        with self.read() as conn:
            earliest, undelayed = conn.execute(statement, {"b_queue": queue}).one()
        return now if undelayed else from_db(earliest)

    # -- dispatch -----------------------------------------------------------------------

    def _new_rows(
        self,
        service: str,
        task: str,
        queue: str,
        params: Sequence[Mapping[str, Any]],
        timeout: int,
        moment: datetime | None,
        run_at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The rows of new pending tasks: one per params mapping, alike in all else."""
        shared = {
            "server_id": self.server_id,
            "service_name": service,
            "task_name": task,
            "queue_name": queue,
            "execution_mode": ExecutionMode.QUEUED.value,
            "status": Status.PENDING.value,
            "timeout_seconds": timeout,
            "has_temp_directory": False,
            "next_run_at": run_at,
            "created_at": moment,
            "updated_at": moment,
        }
        return [
            {**shared, "params": dumps(item if type(item) is dict else dict(item))}
            for item in params
        ]

    def insert_task(
        self,
        *,
        service: str,
        task: str,
        queue: str,
        params: Mapping[str, Any],
        timeout: int,
        now: datetime,
    ) -> int:
        """Insert one pending task and return its id: one short transaction."""
        return self.insert_tasks(
            service=service, task=task, queue=queue, params=[params], timeout=timeout, now=now
        )[0]

    def insert_tasks(
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
    ) -> list[int]:
        """Insert pending tasks in one transaction; their ids, in the order given. With
        `run_at` (an aware datetime) no worker takes them before then (`next_run_at`).

        With `unique_keys` (one per item, `runtime.unique`), an item whose key another row
        holds, or an earlier item of the batch, is not inserted: its id is the holder's.
        """
        return self.insert_tasks_then(
            None,
            service=service,
            task=task,
            queue=queue,
            params=params,
            timeout=timeout,
            now=now,
            run_at=run_at,
            unique_keys=unique_keys,
        )[0]

    @guarded
    def insert_tasks_then(
        self,
        then: Callable[[Any], T] | None,
        *,
        service: str,
        task: str,
        queue: str,
        params: Sequence[Mapping[str, Any]],
        timeout: int,
        now: datetime,
        run_at: datetime | None = None,
        unique_keys: Sequence[str] | None = None,
    ) -> tuple[list[int], T | None]:
        """`insert_tasks`, and in the same transaction, after the insert, `then(cursor)` on
        a driver cursor of it (None without rows or `then`).

        One row without `then` is one statement where the backend autocommits it
        (`Backend.autocommits_single_dispatch`): it is sent without a transaction around it.
        """
        moment = to_db(now)
        due = to_db(run_at)
        rows = self._new_rows(service, task, queue, params, timeout, moment, due)
        if not rows:
            return [], None
        channel = queue_channel(queue)
        alone = len(rows) == 1 and then is None and self.backend.autocommits_single_dispatch
        with self.raw_autocommitted_write() if alone else self.raw_write() as cursor:
            if unique_keys is not None:
                ids = [
                    self._insert_unique(cursor, queue, {**row, "unique_key": key})
                    for row, key in zip(rows, unique_keys, strict=True)
                ]
            elif len(rows) == 1:
                ids = [self.backend.insert_one(cursor, self.compile, queue, rows[0], channel)]
            else:
                ids = self.backend.insert_many(cursor, self.compile, queue, rows, channel)
            return ids, None if then is None else then(cursor)

    def _insert_unique(self, cursor: Any, queue: str, row: Mapping[str, Any]) -> int:
        """Insert a row holding a unique key, or find the row that holds it; the id.

        The INSERT is refused by the key's UNIQUE index when the key is taken (no read
        before it, so two racing dispatches cannot both insert); the holder is then read in
        the same transaction. On PostgreSQL the holder may have been claimed or ended (its
        key released) between the two statements: the insert is tried again.
        """
        channel = queue_channel(queue)
        holder = self.compile("unique_holder", lambda: self.backend.holder_statement)
        for _ in range(UNIQUE_TRIES):
            inserted = self.backend.insert_unique(cursor, self.compile, queue, row, channel)
            if inserted is not None:
                return inserted
            found = holder.execute(cursor, {"b_key": row["unique_key"]}).fetchone()
            if found is not None:
                return int(found[0])
        raise BackendError(
            f"task {row['service_name']}.{row['task_name']}: its unique key was taken and "
            f"released {UNIQUE_TRIES} times while dispatching; try again"
        )

    # -- a worker's claims and writes ---------------------------------------------------

    def _claim(self, cursor: Any, claimer: Claimer, moment: datetime | None) -> TaskStatus | None:
        values = {
            "status": Status.RUNNING.value,
            "server_id": self.server_id,
            "worker_id": claimer.worker_id,
            "worker_pid": claimer.pid,
            "worker_started": claimer.started,
            "started_at": moment,
            "updated_at": moment,
        }
        row = self.backend.claim_one(cursor, self.compile, claimer.queue, values)
        return None if row is None else TaskStatus.claimed(row)

    @guarded
    def claim(self, claimer: Claimer, now: datetime) -> TaskStatus | None:
        """Claim the queue's oldest claimable task for the claimer; None if there is none."""
        with self.raw_write() as cursor:
            return self._claim(cursor, claimer, to_db(now))

    def _running_update(self, key: Hashable, values: Callable[[], Mapping[str, Any]]) -> Any:
        """A prepared UPDATE of a task only while it runs in the process bound as `b_pid`
        (its id bound as `b_id`), setting what `values()` gives; it notifies the task's
        channel. `values` is called only the first time a `key` is used."""

        def build() -> Any:
            statement = (
                update(tasks)
                .where(
                    tasks.c.id == bindparam("b_id"),
                    status_is(Status.RUNNING),
                    tasks.c.worker_pid == bindparam("b_pid"),
                )
                .values(**values())
            )
            return self.backend.returning_notify(statement)

        return self.backend.prepared(key, build)

    def _changed(self, conn: Any, statement: Any, params: Mapping[str, Any]) -> bool:
        """Run a prepared guarded UPDATE; whether it changed the row (notifying if it did)."""
        result = conn.execute(statement, params)
        if self.backend.row_notify is not None:
            return result.first() is not None
        changed = bool(result.rowcount)
        if changed:
            self.backend.notify(conn, task_channel(params["b_id"]))
        return changed

    def _changed_raw(self, cursor: Any, key: Hashable, statement: Any, params: Any) -> bool:
        """`_changed` through a driver cursor (where notifying needs no statement of its
        own: PostgreSQL's is in the UPDATE's RETURNING, the others have none)."""
        prepared = self.compile(key, lambda: statement)
        prepared.execute(cursor, params)
        if self.backend.row_notify is not None:
            return cursor.fetchone() is not None
        return bool(cursor.rowcount)

    def _appended(
        self, values: dict[str, Any], lines: str, status_data: bool, replace: bool = False
    ) -> dict[str, Any]:
        """`values` plus the log append (or, with `replace`, the whole log) and the status
        data, when there are any."""
        if lines and replace:
            values["status_log"] = bindparam("v_lines")
        elif lines:
            values["status_log"] = func.coalesce(tasks.c.status_log, "") + bindparam("v_lines")
        if status_data:
            values["status_data"] = bindparam("v_status_data")
        return values

    @guarded
    def finish(
        self,
        task_id: int,
        pid: int,
        outcome: Outcome,
        now: datetime,
        claim_next: Claimer | None = None,
    ) -> tuple[bool, TaskStatus | None]:
        """End a running task as completed, failed or cancelled (releasing a unique key it
        held while active), or with `outcome.retry_at` put it back to pending for its next
        attempt (keeping that key), and claim the next task in the same transaction when
        `claim_next` is given.

        Returns whether the end was recorded (False: the row was no longer ours, e.g.
        marked stuck meanwhile) and the next task claimed, if any.
        """
        moment = to_db(now)
        assert moment is not None
        leading, lines = _log_pieces(outcome.lines)
        replace = outcome.replace_log and not leading
        has_lines, has_status = bool(lines), outcome.status_data is not None
        retry = outcome.retry_at is not None
        key = ("retry" if retry else "finish", has_lines, has_status, replace)
        statement = self._running_update(
            key,
            lambda: self._appended(
                _requeued() if retry else _ended(), lines, has_status, replace
            ),
        )
        params: dict[str, Any] = {"b_id": task_id, "b_pid": pid, "v_moment": moment}
        if retry:
            params["v_next_run"] = to_db(outcome.retry_at)
        else:
            params["v_status"] = outcome.status.value
            params["v_result"] = outcome.result
            params["v_expires"] = moment + timedelta(seconds=outcome.temp_ttl)
        if has_lines:
            params["v_lines"] = lines
        if has_status:
            params["v_status_data"] = dumps(dict(outcome.status_data or {}))
        with self.raw_write() as cursor:
            done = (
                not leading or self._send_pieces(cursor, params, leading, outcome.replace_log, True)
            ) and self._changed_raw(cursor, key, statement, params)
            following = None if claim_next is None else self._claim(cursor, claim_next, moment)
        return done, following

    @guarded
    def progress(
        self,
        task_id: int,
        pid: int,
        *,
        lines: str = "",
        status_data: Mapping[str, Any] | None = None,
        temp_ttl: int | None = None,
        has_temp_directory: bool = False,
        now: datetime,
        replace_log: bool = False,
    ) -> bool:
        """Append log lines (with `replace_log`: write the whole log) and store status data
        of a running task; False if not ours."""
        leading, lines = _log_pieces(lines)
        replace = replace_log and not leading
        params: dict[str, Any] = {"b_id": task_id, "b_pid": pid, "v_moment": to_db(now)}
        if temp_ttl is not None:
            params["v_temp_ttl"] = temp_ttl
        if lines:
            params["v_lines"] = lines
        if status_data is not None:
            params["v_status_data"] = dumps(dict(status_data))
        has_status = status_data is not None
        has_ttl = temp_ttl is not None

        def values() -> dict[str, Any]:
            changes: dict[str, Any] = {"updated_at": bindparam("v_moment", type_=Timestamp())}
            if has_temp_directory:
                changes["has_temp_directory"] = True
            if has_ttl:
                changes["temp_ttl_seconds"] = bindparam("v_temp_ttl")
            return self._appended(changes, lines, has_status, replace)

        key = ("progress", bool(lines), has_status, has_temp_directory, has_ttl, replace)
        statement = self._running_update(key, values)
        with self.write() as conn:
            return self._send_pieces(conn, params, leading, replace_log) and (
                self._changed(conn, statement, params)
            )

    def _send_pieces(
        self,
        conn: Any,
        params: Mapping[str, Any],
        pieces: list[str],
        replace: bool,
        raw: bool = False,
    ) -> bool:
        """Write the leading pieces of a long log write, in the caller's transaction (a
        Connection, or with `raw` a driver cursor), the first in place of the row's log
        with `replace`; False if the row is not ours."""
        for index, piece in enumerate(pieces):
            first = replace and index == 0

            def values(first: bool = first) -> dict[str, Any]:
                moment = {"updated_at": bindparam("v_moment", type_=Timestamp())}
                return self._appended(moment, "x", False, first)

            key = ("log_piece", first)
            statement = self._running_update(key, values)
            step = {
                "b_id": params["b_id"],
                "b_pid": params["b_pid"],
                "v_lines": piece,
                "v_moment": params["v_moment"],
            }
            changed = (
                self._changed_raw(conn, key, statement, step)
                if raw
                else self._changed(conn, statement, step)
            )
            if not changed:
                return False
        return True

    def mark_stuck(self, task_id: int, pid: int | None, reason: str, now: datetime) -> bool:
        """Mark a running task stuck with a log line giving `reason`; False if it had ended.

        The time written is taken here, when the row is written, so that a task claimed
        after the caller looked at the clock never ends before it started.
        """
        return self._mark_ended(task_id, pid, reason, now, Status.STUCK)

    def mark_cancelled(self, task_id: int, pid: int | None, reason: str, now: datetime) -> bool:
        """Mark a running task cancelled (its process was killed after the cancel request's
        grace) with a log line giving `reason`; False if it had ended. As `mark_stuck`."""
        return self._mark_ended(task_id, pid, reason, now, Status.CANCELLED)

    @guarded
    def _mark_ended(
        self, task_id: int, pid: int | None, reason: str, now: datetime, status: Status
    ) -> bool:
        """End a running task of process `pid` in `status` (its process is gone), with a
        log line, its temp folder's expiry and its unique key released."""
        moment = to_db(max(now, utcnow()))
        assert moment is not None
        with self.write() as conn:
            row = conn.execute(
                select(tasks.c.has_temp_directory, tasks.c.temp_ttl_seconds).where(
                    tasks.c.id == task_id
                )
            ).first()
            if row is None:
                return False
            ttl = row.temp_ttl_seconds
            if ttl is None:
                ttl = self.config.temp_directory_default_ttl
            expires = moment + timedelta(seconds=ttl) if row.has_temp_directory else None
            marked = bool(
                conn.execute(
                    self._running(task_id, pid).values(
                        status=status.value,
                        unique_key=None,
                        completed_at=moment,
                        updated_at=moment,
                        temp_expires_at=expires,
                        status_log=func.coalesce(tasks.c.status_log, "") + log_line(reason, now),
                    )
                ).rowcount
            )
            if marked:
                self.backend.notify(conn, task_channel(task_id))
            return marked

    @guarded
    def requeue(
        self, task_id: int, pid: int, lines: str, retry_at: datetime, now: datetime
    ) -> bool:
        """Put a running task back to pending for another attempt at `retry_at`, appending
        `lines` to its log (a timed-out attempt, whose executor was killed); False if it
        had ended."""
        statement = self._running_update(
            ("requeue",), lambda: self._appended(_requeued(), "x", False)
        )
        params = {
            "b_id": task_id,
            "b_pid": pid,
            "v_moment": to_db(max(now, utcnow())),
            "v_next_run": to_db(retry_at),
            "v_lines": lines,
        }
        with self.write() as conn:
            return self._changed(conn, statement, params)

    # -- cancellation -------------------------------------------------------------------

    @guarded
    def cancel(self, task_id: int, now: datetime) -> tuple[Cancel, TaskStatus]:
        """Cancel a task: a pending one at once, a running one by asking its worker
        (`cancel_requested_at`, which the supervisor reads with its heartbeat); what was
        done and the task as it is now. `TaskNotFoundError` for an unknown id.

        A schedule's upcoming row is left to the caller (`Cancel.UPCOMING`), which knows
        the schedule's next slot (`ScheduleStore.cancel_upcoming`).
        """
        from runtime.errors import TaskNotFoundError

        if not -(2**63) <= task_id < 2**63:
            raise TaskNotFoundError(f"no task with id {task_id}")
        moment = to_db(now)
        line = log_line("Cancelled before it started", now)
        for _ in range(CANCEL_TRIES):
            with self.write() as conn:
                outcome: Cancel | None = None
                if conn.execute(
                    update(tasks)
                    .where(
                        tasks.c.id == task_id,
                        status_is(Status.PENDING),
                        tasks.c.schedule_key.is_(None),
                    )
                    .values(
                        status=Status.CANCELLED.value,
                        unique_key=None,
                        completed_at=moment,
                        updated_at=moment,
                        status_log=func.coalesce(tasks.c.status_log, "") + line,
                    )
                ).rowcount:
                    outcome = Cancel.CANCELLED
                    self.backend.notify(conn, task_channel(task_id))
                elif conn.execute(
                    update(tasks)
                    .where(tasks.c.id == task_id, status_is(Status.RUNNING))
                    .values(
                        cancel_requested_at=func.coalesce(tasks.c.cancel_requested_at, moment),
                        updated_at=moment,
                    )
                ).rowcount:
                    outcome = Cancel.REQUESTED
                row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
            if row is None:
                raise TaskNotFoundError(f"no task with id {task_id}")
            status = TaskStatus.from_row(row)
            if outcome is not None:
                return outcome, status
            if status.finished:
                return Cancel.ENDED, status
            if row.schedule_key is not None:
                return Cancel.UPCOMING, status
        raise BackendError(f"task {task_id} kept changing state while being cancelled; try again")

    def _running(self, task_id: int, pid: int | None) -> Any:
        """An UPDATE of the task only while it is running in process `pid`."""
        pid_guard = tasks.c.worker_pid.is_(None) if pid is None else tasks.c.worker_pid == pid
        return update(tasks).where(
            tasks.c.id == task_id, tasks.c.status == Status.RUNNING.value, pid_guard
        )

    # -- the processor's sweep ----------------------------------------------------------

    @guarded
    def sweep(self, now: datetime) -> list[int]:
        """Mark stuck the running tasks whose worker is gone; return their ids.

        A row that cannot be marked (a value no datetime can hold, say) is logged and left
        as it is, and the others are marked all the same.

        On this server a worker is gone when its PID is not alive or belongs to a process
        started at another time (what its task started, in the executor's process group, is
        killed too); on another server, when the worker row that claimed the task has sent
        no heartbeat within `cleanup_stuck_after`.
        """
        cutoff = to_db(now - timedelta(seconds=self.config.cleanup_stuck_after))
        running = status_is(Status.RUNNING)
        with self.read() as conn:
            local = conn.execute(
                select(tasks.c.id, tasks.c.worker_pid, tasks.c.worker_started).where(
                    running, tasks.c.server_id == self.server_id
                )
            ).all()
            holder = (
                select(workers.c.id)
                .where(workers.c.id == tasks.c.worker_id, workers.c.heartbeat_at >= cutoff)
                .correlate(tasks)
            )
            remote = conn.execute(
                select(tasks.c.id, tasks.c.worker_pid, tasks.c.server_id).where(
                    running,
                    tasks.c.server_id != self.server_id,
                    tasks.c.started_at < cutoff,
                    ~exists(holder),
                )
            ).all()
        stuck: list[int] = []
        for row in local:
            try:
                if is_alive(row.worker_pid, row.worker_started):
                    continue
                reason = f"Worker process {row.worker_pid} is gone; marked stuck by the processor"
                if self.mark_stuck(row.id, row.worker_pid, reason, now):
                    stuck.append(row.id)
                    kill_orphaned_group(row.worker_pid, row.worker_started)
            except Exception as exc:
                _skipped(row.id, exc)
        for row in remote:
            reason = (
                f"Worker on server {row.server_id} sent no heartbeat for "
                f"{self.config.cleanup_stuck_after} s; marked stuck by server {self.server_id}"
            )
            try:
                if self.mark_stuck(row.id, row.worker_pid, reason, now):
                    stuck.append(row.id)
            except Exception as exc:
                _skipped(row.id, exc)
        return stuck

    # -- maintenance --------------------------------------------------------------------

    @guarded
    def expired_temp_directories(self, now: datetime) -> list[int]:
        """Ids of ended tasks of this server whose temp directory has expired.

        A task's folder is in the `storage/` of the server whose worker ran it, which is
        the row's `server_id` from its claim on, so each server deletes only its own. The
        query is a range scan of `ix__tasks_temp_expiry`: `temp_expires_at` is set only
        on ended rows that still have a folder, so it stays cheap on a large table.
        """
        with self.read() as conn:
            return list(
                conn.execute(
                    select(tasks.c.id)
                    .where(
                        tasks.c.server_id == self.server_id,
                        tasks.c.temp_expires_at <= to_db(now),
                        tasks.c.has_temp_directory.is_(True),
                        tasks.c.status.in_(Status.ended_values()),
                    )
                    .order_by(tasks.c.id)
                ).scalars()
            )

    @guarded
    def forget_temp_directory(self, task_id: int, now: datetime) -> None:
        """Record that an ended task's temp directory on this server was deleted."""
        with self.write() as conn:
            conn.execute(
                update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.server_id == self.server_id,
                    tasks.c.status.in_(Status.ended_values()),
                )
                .values(has_temp_directory=False, temp_expires_at=None, updated_at=to_db(now))
            )

    @guarded
    def delete_finished_batch(self, cutoff: datetime, limit: int = DELETE_BATCH) -> list[int]:
        """Delete up to `limit` completed, failed and cancelled rows that ended before
        `cutoff`, oldest first, in one short transaction; their ids (fewer than `limit`:
        nothing is left).

        The rows are found by a read, outside the transaction (an ended row never changes
        its status or end time, so they are still to delete), so the write lock is held
        only for the DELETE by primary key: on SQLite, finding them in a large table took
        most of a second, during which every dispatch waited.
        """
        finished = and_(
            tasks.c.status.in_([status.value for status in CLEANED_UP]),
            tasks.c.completed_at < to_db(cutoff),
        )
        with self.read() as conn:
            ids = list(
                conn.execute(
                    select(tasks.c.id).where(finished).order_by(tasks.c.id).limit(limit)
                ).scalars()
            )
        if ids:
            with self.write() as conn:
                conn.execute(delete(tasks).where(finished, tasks.c.id.in_(ids)))
        return ids

    def delete_finished_before(self, cutoff: datetime) -> list[int]:
        """Delete every completed, failed and cancelled row that ended before `cutoff`,
        batch by batch, each batch its own transaction; their ids."""
        deleted: list[int] = []
        while True:
            batch = self.delete_finished_batch(cutoff)
            deleted.extend(batch)
            if len(batch) < DELETE_BATCH:
                return deleted


def _ended() -> dict[str, Any]:
    """What a finish sets on a task that ended (completed, failed or cancelled), its unique
    key released."""
    return {
        "status": bindparam("v_status"),
        "result": bindparam("v_result"),
        "unique_key": None,
        "completed_at": bindparam("v_moment", type_=Timestamp()),
        "updated_at": bindparam("v_moment", type_=Timestamp()),
        "temp_expires_at": case(
            (tasks.c.has_temp_directory.is_(True), bindparam("v_expires", type_=Timestamp())),
            else_=None,
        ),
    }


def _requeued() -> dict[str, Any]:
    """What putting a failed attempt back to pending sets: no worker, no start, no result,
    `next_run_at` bound as `v_next_run`. The row keeps its id, log, status data, attempts,
    temp directory (which does not expire while the task is pending) and unique key (held
    while it is active, it is held while the retry waits)."""
    return {
        "status": Status.PENDING.value,
        "result": None,
        "started_at": None,
        "worker_pid": None,
        "worker_id": None,
        "worker_started": None,
        "next_run_at": bindparam("v_next_run", type_=Timestamp()),
        "updated_at": bindparam("v_moment", type_=Timestamp()),
    }


def _skipped(task_id: int, exc: Exception) -> None:
    """Log that the sweep left a row it could not process."""
    log.warning(
        "task %s: could not be marked stuck, left as it is: %s: %s",
        task_id,
        type(exc).__name__,
        exc,
        extra={"task_id": task_id},
    )

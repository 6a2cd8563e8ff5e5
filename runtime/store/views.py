"""Read-only queries of the operator views: `python -m runtime.tasks`, `runtime.stats`, the
dashboard, its JSON API and `/metrics` all read `_tasks` and `_workers` through these.

Each query is shaped for an index, so the overview stays fast on a table of millions of
rows: pending counts read the partial claim index (`claimable`), running counts and the
failed and stuck lists `ix__tasks_status_completed`, a listing walks the primary key from the newest
id down, and a `since` bound becomes an id bound found by bisecting the primary key (ids
follow creation time). Aggregates over a time window select on `completed_at`, and
percentiles are computed by the database with window functions, so that only a few rows
per task come back. Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    and_,
    case,
    cast,
    extract,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from runtime.clock import from_db, to_db
from runtime.filters import TaskFilter
from runtime.schema import claimable, status_is, tasks, workers
from runtime.state import ExecutionMode, Status
from runtime.store.base import StoreBase, guarded
from runtime.store.workers import worker_alive
from runtime.summaries import (
    EndedCounts,
    QueueCounts,
    ScheduledRun,
    TaskStats,
    TaskSummary,
    progress_of,
)

REMOTE_WORKER_STALE_S = 30
"""A worker of another server counts as live while its last heartbeat (sent every 2 s)
is younger than this; this server's workers are judged by their process."""

_SUMMARY = (
    tasks.c.id,
    tasks.c.service_name,
    tasks.c.task_name,
    tasks.c.queue_name,
    tasks.c.status,
    tasks.c.execution_mode,
    tasks.c.created_at,
    tasks.c.started_at,
    tasks.c.completed_at,
    tasks.c.status_data,
    tasks.c.attempts,
    tasks.c.next_run_at,
)
_ENDED = (Status.COMPLETED, Status.FAILED, Status.STUCK, Status.CANCELLED)

# The grouping and the partition of the per-task statistics. Written as `name || ''` so that
# no index provides their order: given the plain columns, SQLite walks
# `ix__tasks_service_task` to avoid a sort and reads every row, instead of reading only the
# window's rows by their end time and sorting those.
_PER_TASK = (tasks.c.service_name.concat(""), tasks.c.task_name.concat(""))
_RAN = (Status.COMPLETED, Status.FAILED)


def _summary(row: Any) -> TaskSummary:
    return TaskSummary(
        id=int(row.id),
        service_name=row.service_name,
        task_name=row.task_name,
        queue_name=row.queue_name,
        status=Status(row.status),
        execution_mode=row.execution_mode,
        created_at=from_db(row.created_at),
        started_at=from_db(row.started_at),
        completed_at=from_db(row.completed_at),
        progress=progress_of(row.status_data),
        attempts=int(row.attempts or 0),
        next_run_at=from_db(row.next_run_at),
    )


def _seconds(value: Any) -> float:
    """A duration from the database, in seconds to the millisecond (SQLite's julianday
    arithmetic is off by microseconds), never negative (clocks of two servers)."""
    return max(0.0, round(float(value), 3))


def _any_status(statuses: Iterable[Status]) -> ColumnElement[bool]:
    """`status IN ('a', 'b')` with literal values (see `status_is`); one status is
    `status = 'a'`. PostgreSQL reads an IN list as one index condition, where it would
    filter a whole index scan by an OR of equalities."""
    values = [status.value for status in dict.fromkeys(statuses)]
    if len(values) == 1:
        return status_is(Status(values[0]))
    return tasks.c.status.in_([literal_column(f"'{value}'") for value in values])


class ViewStore(StoreBase):
    """The operator views' part of the store: reads only."""

    # -- task listings ------------------------------------------------------------------

    @guarded
    def list_tasks(self, selection: TaskFilter) -> list[TaskSummary]:
        """The tasks `selection` asks for, newest (highest id) first."""
        conditions: list[ColumnElement[bool]] = [tasks.c.schedule_key.is_(None)]
        if selection.statuses:
            conditions.append(_any_status(selection.statuses))
        for column, value in (
            (tasks.c.queue_name, selection.queue),
            (tasks.c.service_name, selection.service),
            (tasks.c.task_name, selection.task),
        ):
            if value is not None:
                conditions.append(column == value)
        if selection.before is not None:
            conditions.append(tasks.c.id < selection.before)
        with self.read() as conn:
            if selection.since is not None:
                first = self._first_id_from(conn, selection.since)
                if first is None:
                    return []
                conditions += [tasks.c.id >= first, tasks.c.created_at >= to_db(selection.since)]
            rows = conn.execute(
                select(*_SUMMARY)
                .where(*conditions)
                .order_by(tasks.c.id.desc())
                .limit(selection.limit)
            ).all()
        return [_summary(row) for row in rows]

    def _first_id_from(self, conn: Connection, moment: datetime) -> int | None:
        """The lowest id of a row created at or after `moment`, by bisecting the primary
        key (about 20 one-row probes for a million ids); None if there is none."""
        # Two queries: SQLite answers a lone min() or max() from the index, but scans the
        # whole table for both in one SELECT.
        low = conn.execute(select(func.min(tasks.c.id))).scalar()
        high = conn.execute(select(func.max(tasks.c.id))).scalar()
        if low is None or high is None:
            return None
        bound = to_db(moment)

        def first_at_or_above(candidate: int) -> Any:
            return conn.execute(
                select(tasks.c.id, tasks.c.created_at)
                .where(tasks.c.id >= candidate)
                .order_by(tasks.c.id)
                .limit(1)
            ).first()

        low, high = int(low), int(high) + 1
        while low < high:
            middle = (low + high) // 2
            row = first_at_or_above(middle)
            if row is not None and row.created_at >= bound:
                high = middle
            else:
                low = middle + 1
        row = first_at_or_above(low)
        return None if row is None else int(row.id)

    @guarded
    def recently_ended(self, status: Status, limit: int) -> list[TaskSummary]:
        """The last `limit` tasks that ended in `status`, latest end first."""
        with self.read() as conn:
            rows = conn.execute(
                select(*_SUMMARY)
                .where(status_is(status))
                .order_by(tasks.c.completed_at.desc())
                .limit(limit)
            ).all()
        return [_summary(row) for row in rows]

    @guarded
    def status_counts(self, statuses: Sequence[Status], cap: int) -> dict[Status, int]:
        """How many rows are in each of `statuses`, counting at most `cap` of each (so the
        cost is bounded however many rows a status has; `cap` means "at least")."""
        found: dict[Status, int] = {}
        with self.read() as conn:
            for status in statuses:
                first = select(tasks.c.id).where(status_is(status)).limit(cap).subquery()
                found[status] = int(
                    conn.execute(select(func.count()).select_from(first)).scalar_one()
                )
        return found

    # -- queues and workers ---------------------------------------------------------------

    @guarded
    def queue_counts(self) -> dict[str, QueueCounts]:
        """Claimable pending and running tasks by queue, with the oldest pending one."""
        with self.read() as conn:
            pending = conn.execute(
                select(tasks.c.queue_name, func.count(), func.min(tasks.c.id))
                .where(claimable())
                .group_by(tasks.c.queue_name)
            ).all()
            running = conn.execute(
                select(tasks.c.queue_name, func.count())
                .where(status_is(Status.RUNNING))
                .group_by(tasks.c.queue_name)
            ).all()
            oldest_ids = [int(oldest) for _, _, oldest in pending]
            created = dict(
                conn.execute(
                    select(tasks.c.id, tasks.c.created_at).where(tasks.c.id.in_(oldest_ids))
                ).all()
                if oldest_ids
                else []
            )
        counts: dict[str, QueueCounts] = {}
        for name, count, oldest in pending:
            counts[name] = QueueCounts(
                pending=int(count),
                oldest_pending_id=int(oldest),
                oldest_pending_at=from_db(created.get(int(oldest))),
            )
        for name, count in running:
            before = counts.get(name, QueueCounts())
            counts[name] = QueueCounts(
                before.pending, int(count), before.oldest_pending_id, before.oldest_pending_at
            )
        return counts

    @guarded
    def worker_counts(self, now: datetime) -> Counter[tuple[int, str]]:
        """Live (or starting) workers by (server id, queue), of every server."""
        stale = now - timedelta(seconds=REMOTE_WORKER_STALE_S)
        with self.read() as conn:
            rows = conn.execute(
                select(
                    workers.c.server_id,
                    workers.c.pid,
                    workers.c.process_started,
                    workers.c.queue_name,
                    workers.c.heartbeat_at,
                )
            ).all()
        live: Counter[tuple[int, str]] = Counter()
        for row in rows:
            if row.server_id == self.server_id:
                alive = worker_alive(row, now)
            else:
                beat = from_db(row.heartbeat_at)
                alive = beat is not None and beat >= stale
            if alive:
                live[(int(row.server_id), row.queue_name)] += 1
        return live

    # -- statistics over a window -----------------------------------------------------------

    def _duration(self) -> ColumnElement[Any]:
        """`completed_at - started_at` in seconds, as each database computes it (SQLite's
        julianday arithmetic is off by microseconds, so it is rounded to the millisecond
        there, and a run of exactly 5 s falls into the 5 s bucket)."""
        started, ended = tasks.c.started_at, tasks.c.completed_at
        name = self.backend.name
        if name == "postgresql":
            return cast(extract("epoch", ended - started), Float)
        if name == "mysql":
            micro = func.timestampdiff(literal_column("MICROSECOND"), started, ended)
            return cast(micro, Float) / 1_000_000.0
        return func.round((func.julianday(ended) - func.julianday(started)) * 86_400.0, 3)

    def _ended_between(self, after: datetime | None, upto: datetime | None) -> ColumnElement[bool]:
        condition = _any_status(_ENDED)
        if after is not None:
            condition = and_(condition, tasks.c.completed_at > to_db(after))
        if upto is not None:
            condition = and_(condition, tasks.c.completed_at <= to_db(upto))
        return condition

    @guarded
    def task_stats(self, since: datetime, percentiles: Sequence[int] = (50, 95)) -> list[TaskStats]:
        """Per task: the runs that ended at or after `since` by status, the nearest-rank
        percentiles of their durations, and the run that started last (running included)."""
        window = and_(_any_status(_ENDED), tasks.c.completed_at >= to_db(since))
        key = (_PER_TASK[0].label("service_name"), _PER_TASK[1].label("task_name"))
        with self.read() as conn:
            counts = conn.execute(
                select(
                    *key,
                    func.count(),
                    *(func.sum(case((status_is(status), 1), else_=0)) for status in _ENDED),
                )
                .where(window)
                .group_by(*_PER_TASK)
            ).all()
            ranks = self._percentile_rows(conn, since, percentiles)
            latest = self._latest_runs(conn, window)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for service, task, runs, completed, failed, stuck, cancelled in counts:
            found[(service, task)] = {
                "runs": int(runs),
                "completed": int(completed or 0),
                "failed": int(failed or 0),
                "stuck": int(stuck or 0),
                "cancelled": int(cancelled or 0),
            }
        for (service, task), values in ranks.items():
            found.setdefault((service, task), {}).update(values)
        for row in latest:
            found.setdefault((row.service_name, row.task_name), {}).update(
                last_id=int(row.id),
                last_status=Status(row.status),
                last_started_at=from_db(row.started_at),
            )
        return [
            TaskStats(service_name=service, task_name=task, **values)
            for (service, task), values in sorted(found.items())
        ]

    def _percentile_rows(
        self, conn: Connection, since: datetime, percentiles: Sequence[int]
    ) -> dict[tuple[str, str], dict[str, float]]:
        """`{(service, task): {"p50": seconds, ...}}` for the completed and failed runs that
        ended at or after `since`: the smallest duration whose rank r of n has r/n >= p."""
        duration = self._duration().label("duration")
        partition = _PER_TASK
        ranked = (
            select(
                tasks.c.service_name,
                tasks.c.task_name,
                duration,
                func.row_number().over(partition_by=partition, order_by=duration).label("rank"),
                func.count().over(partition_by=partition).label("total"),
            )
            .where(
                _any_status(_RAN),
                tasks.c.completed_at >= to_db(since),
                tasks.c.started_at.is_not(None),
            )
            .subquery()
        )
        rank, total = ranked.c.rank, ranked.c.total
        picks = [
            and_(rank * 100 >= share * total, (rank - 1) * 100 < share * total)
            for share in percentiles
        ]
        rows = conn.execute(
            select(ranked.c.service_name, ranked.c.task_name, ranked.c.duration, rank, total).where(
                or_(*picks)
            )
        ).all()
        found: dict[tuple[str, str], dict[str, float]] = {}
        for service, task, seconds, position, count in rows:
            for share in percentiles:
                if position * 100 >= share * count and (position - 1) * 100 < share * count:
                    found.setdefault((service, task), {})[f"p{share}"] = _seconds(seconds)
        return found

    def _latest_runs(self, conn: Connection, window: ColumnElement[bool]) -> list[Any]:
        """Per task, the run that started last among those in `window` and the running."""
        partition = _PER_TASK
        ranked = (
            select(
                tasks.c.id,
                tasks.c.service_name,
                tasks.c.task_name,
                tasks.c.status,
                tasks.c.started_at,
                func.row_number()
                .over(
                    partition_by=partition,
                    order_by=(tasks.c.started_at.desc(), tasks.c.id.desc()),
                )
                .label("rank"),
            )
            .where(or_(window, status_is(Status.RUNNING)), tasks.c.started_at.is_not(None))
            .subquery()
        )
        return list(conn.execute(select(ranked).where(ranked.c.rank == 1)).all())

    @guarded
    def ended_counts(
        self, after: datetime | None, upto: datetime, bounds: Sequence[float]
    ) -> dict[tuple[str, str, Status], EndedCounts]:
        """Runs that ended after `after` (None: ever) and at or before `upto`, by task and
        status, with their durations counted into the histogram `bounds` (seconds) by the
        database: one aggregate row per task and status comes back."""
        duration = self._duration()
        ran = tasks.c.started_at.is_not(None)
        key = (tasks.c.service_name, tasks.c.task_name, tasks.c.status)
        columns = [
            func.count(),
            func.sum(case((ran, 1), else_=0)),
            func.sum(case((ran, duration), else_=0.0)),
            *(func.sum(case((and_(ran, duration <= bound), 1), else_=0)) for bound in bounds),
        ]
        with self.read() as conn:
            rows = conn.execute(
                select(*key, *columns).where(self._ended_between(after, upto)).group_by(*key)
            ).all()
        found: dict[tuple[str, str, Status], EndedCounts] = {}
        for service, task, status, count, timed, total, *cumulative in rows:
            found[(service, task, Status(status))] = EndedCounts(
                count=int(count),
                duration_count=int(timed or 0),
                duration_sum=_seconds(total or 0.0),
                buckets={bound: int(n or 0) for bound, n in zip(bounds, cumulative, strict=True)},
            )
        return found

    # -- schedules ----------------------------------------------------------------------

    @guarded
    def last_scheduled_runs(
        self, keys: Sequence[tuple[str, str]]
    ) -> Mapping[tuple[str, str], ScheduledRun]:
        """The latest run each schedule released (not its upcoming row), by (service, task)."""
        found: dict[tuple[str, str], ScheduledRun] = {}
        with self.read() as conn:
            for service, task in keys:
                # Ordered by `id + 0`, which no index provides, so that every database reads
                # the task's rows from `ix__tasks_service_task` and sorts those few: ordered
                # by id (or asked for max(id)), SQLite walks the primary key backwards
                # instead, which for a schedule that never ran is the whole table.
                row = conn.execute(
                    select(
                        tasks.c.id,
                        tasks.c.status,
                        tasks.c.scheduled_at,
                        tasks.c.started_at,
                        tasks.c.completed_at,
                    )
                    .where(
                        tasks.c.service_name == service,
                        tasks.c.task_name == task,
                        tasks.c.execution_mode == ExecutionMode.SCHEDULED.value,
                        tasks.c.schedule_key.is_(None),
                    )
                    .order_by((tasks.c.id + 0).desc())
                    .limit(1)
                ).first()
                if row is not None:
                    found[(service, task)] = ScheduledRun(
                        id=int(row.id),
                        status=Status(row.status),
                        scheduled_at=from_db(row.scheduled_at),
                        started_at=from_db(row.started_at),
                        completed_at=from_db(row.completed_at),
                    )
        return found

"""The store: every read and state change of `_tasks` and `_workers`.

Each state change is one guarded UPDATE (`... WHERE id = :id AND status = 'running' AND
worker_pid = :pid`) whose rowcount says whether it happened, so a late writer can never
overwrite a decision made by someone else (a finished task marked stuck, a stuck task
finished). Database-specific SQL lives in `runtime.backends`; database failures leave
this module as `BackendError` naming the URL without its password.

Creating a `Store` does nothing; the engine is made and the tables created on first use.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import psutil  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine, and_, case, delete, exists, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from runtime.backends import Backend, backend_for
from runtime.clock import from_db, to_db
from runtime.config import Config
from runtime.errors import BackendError, TaskNotFoundError
from runtime.schema import SCHEMA_VERSION, meta, metadata, tasks, workers
from runtime.state import Status, TaskStatus

P = ParamSpec("P")
R = TypeVar("R")

# A recorded process start time and psutil's reading of it may differ by float rounding
# through the database; two processes with the same PID start further apart than this.
_START_TOLERANCE_S = 0.05
# How long a reserved worker slot waits for the process it was reserved for to adopt it.
STARTING_GRACE_S = 30
# How many times a store call is run again after losing its connection before committing.
DISCONNECT_RETRIES = 2


def dumps(value: Any) -> str:
    """JSON text of a value as stored in a column (raises TypeError if not serialisable)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def log_line(message: str, now: datetime) -> str:
    """One timestamped log line, the same shape `TaskInstance.log` writes."""
    return f"[{now.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n"


def task_channel(task_id: int) -> str:
    """The channel notified, in the same transaction, whenever a task's row changes in a way
    a follower shows (claimed, log or status flushed, finished, marked stuck)."""
    return f"task_{task_id}"


def masked_url(url: str) -> str:
    """The database URL with its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database_url>"


def start_time(pid: int) -> float | None:
    """The process's start time (psutil `create_time`), None if there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` and has not exited."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return started is None or abs(created - started) < _START_TOLERANCE_S


def worker_alive(row: Any, now: datetime) -> bool:
    """Whether a `_workers` row stands for a live worker, or one still starting (pid 0)."""
    if row.pid == 0:
        reserved = from_db(row.heartbeat_at)
        return reserved is not None and now - reserved < timedelta(seconds=STARTING_GRACE_S)
    return is_alive(row.pid, row.process_started)


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Run a store method again when its connection was lost before anything was committed,
    and turn other database failures into one `BackendError` line.

    A session killed mid-statement (`pg_terminate_backend`, MySQL `KILL`, a failover)
    leaves its transaction rolled back, so running the whole method again on a fresh
    connection is safe, whatever it writes; `DISCONNECT_RETRIES` bounds it. A connection
    lost during the COMMIT itself leaves the outcome unknown and is never retried
    (`Store.write` reports it): a retried INSERT could dispatch twice, a retried log append
    write its lines twice.
    """

    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, Store)
        for attempt in range(DISCONNECT_RETRIES + 1):
            try:
                return method(*args, **kwargs)
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt == DISCONNECT_RETRIES:
                    raise store.backend_error(exc) from None
            except SQLAlchemyError as exc:
                raise store.backend_error(exc) from None
        raise AssertionError("unreachable")

    return wrapper


@dataclass(frozen=True)
class Limits:
    """How many workers may run: for one queue, and on this server across queues."""

    queue: int
    server: int


class Store:
    """Access to the task tables of one database, for one server."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = config.database_url
        self.server_id = config.server_id
        self._engine: Engine | None = None
        self._backend: Backend | None = None
        self._schema_ready = False

    # -- connection -------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            try:
                self._backend = backend_for(self.url)
            except ArgumentError:
                raise BackendError("database_url is not a valid SQLAlchemy URL") from None
        return self._backend

    @property
    def engine(self) -> Engine:
        """The engine, made on first use (no connection is opened until a query)."""
        if self._engine is None:
            try:
                self._engine = self.backend.create_engine(self.url)
            except (ArgumentError, NoSuchModuleError, ImportError, OSError) as exc:
                raise BackendError(f"cannot use database {masked_url(self.url)}: {exc}") from None
        return self._engine

    def dispose(self, close: bool = True) -> None:
        """Drop pooled connections (before a fork, `close=True`; in the child, `False`)."""
        if self._engine is not None:
            self._engine.dispose(close=close)

    def backend_error(self, exc: BaseException) -> BackendError:
        """A one-line `BackendError` for a database failure, without the password."""
        original = getattr(exc, "orig", None) or exc
        text = str(original).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        password = _password(self.url)
        if password:
            reason = reason.replace(password, "***")
        return BackendError(f"database {masked_url(self.url)}: {reason}")

    @contextmanager
    def write(self, lock: str = "rsx_tasks") -> Iterator[Connection]:
        """A serialised write transaction (see `Backend.write`), tables ensured first.

        A connection lost while committing is a `BackendError` saying the write may or may
        not have been saved, so that no caller retries it blindly.
        """
        self.ensure_schema()
        committing = False
        try:
            with self.backend.write(self.engine, lock) as conn:
                yield conn
                committing = True
        except DBAPIError as exc:
            if committing and exc.connection_invalidated:
                raise BackendError(
                    f"{self.backend_error(exc)} (the connection was lost while committing; "
                    "the change may or may not have been saved)"
                ) from None
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection, tables ensured first."""
        self.ensure_schema()
        with self.backend.read(self.engine) as conn:
            yield conn

    @_guarded
    def ensure_schema(self) -> None:
        """Create the tables if missing (safe when processes race) and check the version."""
        if self._schema_ready:
            return
        version = self._schema_version()
        if version is None:
            try:
                with self.backend.write(self.engine, "rsx_schema") as conn:
                    metadata.create_all(conn, checkfirst=True)
                    found = conn.execute(
                        select(meta.c.value).where(meta.c.key == "schema_version")
                    ).scalar()
                    if found is None:
                        conn.execute(
                            insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION))
                        )
            except DBAPIError as exc:
                if not self.backend.is_already_exists(exc):
                    raise
            version = self._schema_version()
        if version != SCHEMA_VERSION:
            raise BackendError(
                f"database {masked_url(self.url)} has task schema version {version}, "
                f"this runtime uses {SCHEMA_VERSION}"
            )
        self._schema_ready = True

    def _schema_version(self) -> int | None:
        try:
            with self.backend.read(self.engine) as conn:
                value = conn.execute(
                    select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar()
        except DBAPIError as exc:
            if _is_missing_table(exc):
                return None
            raise
        return None if value is None else int(value)

    # -- reading ------------------------------------------------------------------------

    @_guarded
    def get(self, task_id: int) -> TaskStatus:
        """The task's current status; `TaskNotFoundError` if there is no such row."""
        with self.read() as conn:
            row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise TaskNotFoundError(f"no task with id {task_id}")
        return TaskStatus.from_row(row)

    @_guarded
    def pending_counts(self, queue: str | None = None) -> dict[str, tuple[int, int]]:
        """Claimable pending tasks by queue: `{queue: (count, oldest id)}`."""
        query = (
            select(tasks.c.queue_name, func.count(), func.min(tasks.c.id))
            .where(tasks.c.status == Status.PENDING.value, tasks.c.schedule_key.is_(None))
            .group_by(tasks.c.queue_name)
        )
        if queue is not None:
            query = query.where(tasks.c.queue_name == queue)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return {name: (int(count), int(oldest)) for name, count, oldest in rows}

    @_guarded
    def live_workers(self, now: datetime) -> Counter[str]:
        """Live and starting workers of this server, by queue (an unlocked estimate)."""
        with self.read() as conn:
            rows = conn.execute(self._worker_rows()).all()
        return Counter(r.queue_name for r in rows if worker_alive(r, now))

    def wait_for_change(self, conn: Connection, channel: str, timeout: float) -> None:
        """Block until the database may have changed, at most `timeout` seconds."""
        self.backend.wait(conn, channel, timeout)

    # -- dispatch -----------------------------------------------------------------------

    @_guarded
    def insert_task(
        self,
        *,
        service: str,
        task: str,
        queue: str,
        params: Mapping[str, Any],
        timeout: int,
        now: datetime,
        execution_mode: str = "queued",
    ) -> int:
        """Insert a pending task and return its id."""
        moment = to_db(now)
        with self.write(f"rsx_queue_{queue}") as conn:
            result = conn.execute(
                insert(tasks).values(
                    server_id=self.server_id,
                    service_name=service,
                    task_name=task,
                    queue_name=queue,
                    execution_mode=execution_mode,
                    status=Status.PENDING.value,
                    params=dumps(dict(params)),
                    timeout_seconds=timeout,
                    has_temp_directory=False,
                    created_at=moment,
                    updated_at=moment,
                )
            )
            task_id = _inserted_id(result)
            self.backend.notify(conn, queue)
        return task_id

    # -- workers ------------------------------------------------------------------------

    def _worker_rows(self) -> Any:
        return select(
            workers.c.id,
            workers.c.pid,
            workers.c.process_started,
            workers.c.queue_name,
            workers.c.heartbeat_at,
        ).where(workers.c.server_id == self.server_id)

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
        return _inserted_id(result)

    @_guarded
    def register_worker(
        self, queue: str, pid: int, started: float, limits: Limits, now: datetime
    ) -> int | None:
        """Register a worker if the queue's and the server's limits allow; its row id or None.

        This is the gate of the limit invariant: counting the live workers and inserting
        the new one happen in one serialised transaction, so racing starters cannot both
        take the last slot. Rows of dead processes are removed on the way.
        """
        with self.write(f"rsx_workers_{self.server_id}") as conn:
            if self._free_slots(conn, queue, limits, now) < 1:
                return None
            return self._insert_worker(conn, queue, pid, started, now)

    @_guarded
    def reserve_workers(self, queue: str, wanted: int, limits: Limits, now: datetime) -> list[int]:
        """Reserve up to `wanted` worker slots for processes about to be started; their ids.

        A reservation counts against the limits like a live worker until the started
        process adopts it (`adopt_worker`) or `STARTING_GRACE_S` passes, so racing
        dispatchers and processors start no more processes than there are slots.
        """
        with self.write(f"rsx_workers_{self.server_id}") as conn:
            free = min(wanted, self._free_slots(conn, queue, limits, now))
            return [self._insert_worker(conn, queue, 0, 0.0, now) for _ in range(free)]

    @_guarded
    def adopt_worker(self, slot: int, pid: int, started: float, now: datetime) -> int | None:
        """Take over a reservation as the worker process `pid`; its id, or None if expired."""
        with self.write(f"rsx_workers_{self.server_id}") as conn:
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

    @_guarded
    def heartbeat(self, worker_id: int, now: datetime) -> None:
        """Record that the worker is alive (other servers judge its tasks by this)."""
        with self.write(f"rsx_workers_{self.server_id}") as conn:
            conn.execute(
                update(workers).where(workers.c.id == worker_id).values(heartbeat_at=to_db(now))
            )

    @_guarded
    def deregister(self, worker_id: int) -> None:
        """Remove the worker's registration, freeing its slot."""
        with self.write(f"rsx_workers_{self.server_id}") as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    @_guarded
    def claim_or_retire(
        self, queue: str, worker_id: int, pid: int, started: float, now: datetime
    ) -> TaskStatus | None:
        """Claim the queue's oldest pending task for process `pid`, or retire the worker.

        When nothing is pending the worker's registration is deleted in the same
        transaction: a dispatch that commits before it is claimed here, and one that
        commits after it sees the freed slot and spawns a worker, so no task is left
        waiting for cron.
        """
        moment = to_db(now)
        with self.write(f"rsx_queue_{queue}") as conn:
            task_id = conn.execute(self.backend.claimable(queue)).scalar()
            if task_id is None:
                conn.execute(delete(workers).where(workers.c.id == worker_id))
                return None
            claimed = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status == Status.PENDING.value)
                .values(
                    status=Status.RUNNING.value,
                    server_id=self.server_id,
                    worker_pid=pid,
                    worker_started=started,
                    started_at=moment,
                    updated_at=moment,
                )
            ).rowcount
            if claimed != 1:
                raise BackendError(f"task {task_id} was claimed twice; the queue lock failed")
            conn.execute(
                update(workers).where(workers.c.id == worker_id).values(current_task_id=task_id)
            )
            row = conn.execute(select(tasks).where(tasks.c.id == task_id)).one()
            self.backend.notify(conn, task_channel(task_id))
        return TaskStatus.from_row(row)

    # -- a running task's writes --------------------------------------------------------

    @_guarded
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
    ) -> bool:
        """Append log lines and store status data of a running task; False if not ours."""
        values: dict[str, Any] = {"updated_at": to_db(now)}
        if lines:
            values["status_log"] = func.coalesce(tasks.c.status_log, "") + lines
        if status_data is not None:
            values["status_data"] = dumps(dict(status_data))
        if has_temp_directory:
            values["has_temp_directory"] = True
        if temp_ttl is not None:
            values["temp_ttl_seconds"] = temp_ttl
        with self.write() as conn:
            changed = bool(conn.execute(self._running(task_id, pid).values(**values)).rowcount)
            if changed:
                self.backend.notify(conn, task_channel(task_id))
            return changed

    @_guarded
    def finish(
        self,
        task_id: int,
        pid: int,
        worker_id: int | None,
        *,
        status: Status,
        result: str | None,
        lines: str,
        status_data: Mapping[str, Any] | None,
        temp_ttl: int,
        now: datetime,
    ) -> bool:
        """End a running task as completed or failed; False if it was no longer ours."""
        moment = to_db(now)
        assert moment is not None
        values: dict[str, Any] = {
            "status": status.value,
            "result": result,
            "completed_at": moment,
            "updated_at": moment,
            "temp_expires_at": case(
                (tasks.c.has_temp_directory.is_(True), moment + timedelta(seconds=temp_ttl)),
                else_=None,
            ),
        }
        if lines:
            values["status_log"] = func.coalesce(tasks.c.status_log, "") + lines
        if status_data is not None:
            values["status_data"] = dumps(dict(status_data))
        with self.write() as conn:
            done = bool(conn.execute(self._running(task_id, pid).values(**values)).rowcount)
            if done:
                self.backend.notify(conn, task_channel(task_id))
            if worker_id is not None:
                conn.execute(
                    update(workers).where(workers.c.id == worker_id).values(current_task_id=None)
                )
        return done

    @_guarded
    def mark_stuck(self, task_id: int, pid: int | None, reason: str, now: datetime) -> bool:
        """Mark a running task stuck with a log line giving `reason`; False if it had ended."""
        moment = to_db(now)
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
            guard = self._running(task_id, pid)
            marked = bool(
                conn.execute(
                    guard.values(
                        status=Status.STUCK.value,
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

    def _running(self, task_id: int, pid: int | None) -> Any:
        """An UPDATE of the task only while it is running in process `pid`."""
        pid_guard = tasks.c.worker_pid.is_(None) if pid is None else tasks.c.worker_pid == pid
        return update(tasks).where(
            tasks.c.id == task_id, tasks.c.status == Status.RUNNING.value, pid_guard
        )

    # -- the processor's sweep ----------------------------------------------------------

    @_guarded
    def sweep(self, now: datetime) -> list[int]:
        """Mark stuck the running tasks whose worker is gone; return their ids.

        On this server a worker is gone when its PID is not alive or belongs to a process
        started at another time; on another server, when no worker row holding the task
        has sent a heartbeat within `cleanup_stuck_after`. Registrations of dead local
        processes are deleted.
        """
        cutoff = to_db(now - timedelta(seconds=self.config.cleanup_stuck_after))
        with self.read() as conn:
            local = conn.execute(
                select(tasks.c.id, tasks.c.worker_pid, tasks.c.worker_started).where(
                    tasks.c.status == Status.RUNNING.value,
                    tasks.c.server_id == self.server_id,
                )
            ).all()
            holder = (
                select(workers.c.id)
                .where(
                    workers.c.server_id == tasks.c.server_id,
                    workers.c.current_task_id == tasks.c.id,
                    workers.c.heartbeat_at >= cutoff,
                )
                .correlate(tasks)
            )
            remote = conn.execute(
                select(tasks.c.id, tasks.c.worker_pid, tasks.c.server_id).where(
                    tasks.c.status == Status.RUNNING.value,
                    tasks.c.server_id != self.server_id,
                    tasks.c.started_at < cutoff,
                    ~exists(holder),
                )
            ).all()
            registered = conn.execute(self._worker_rows()).all()
        stuck: list[int] = []
        for row in local:
            if is_alive(row.worker_pid, row.worker_started):
                continue
            reason = f"Worker process {row.worker_pid} is gone; marked stuck by the processor"
            if self.mark_stuck(row.id, row.worker_pid, reason, now):
                stuck.append(row.id)
        for row in remote:
            reason = (
                f"Worker on server {row.server_id} sent no heartbeat for "
                f"{self.config.cleanup_stuck_after} s; marked stuck by server {self.server_id}"
            )
            if self.mark_stuck(row.id, row.worker_pid, reason, now):
                stuck.append(row.id)
        dead = [r.id for r in registered if not worker_alive(r, now)]
        if dead:
            with self.write(f"rsx_workers_{self.server_id}") as conn:
                conn.execute(delete(workers).where(workers.c.id.in_(dead)))
        return stuck

    # -- maintenance --------------------------------------------------------------------

    @_guarded
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
                        tasks.c.status.in_(_ENDED),
                    )
                    .order_by(tasks.c.id)
                ).scalars()
            )

    @_guarded
    def forget_temp_directory(self, task_id: int, now: datetime) -> None:
        """Record that an ended task's temp directory on this server was deleted."""
        with self.write() as conn:
            conn.execute(
                update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.server_id == self.server_id,
                    tasks.c.status.in_(_ENDED),
                )
                .values(has_temp_directory=False, temp_expires_at=None, updated_at=to_db(now))
            )

    @_guarded
    def delete_finished_before(self, cutoff: datetime) -> list[int]:
        """Delete completed and failed rows that ended before `cutoff`; their ids."""
        finished = and_(
            tasks.c.status.in_((Status.COMPLETED.value, Status.FAILED.value)),
            tasks.c.completed_at < to_db(cutoff),
        )
        with self.write() as conn:
            ids = list(conn.execute(select(tasks.c.id).where(finished)).scalars())
            if ids:
                conn.execute(delete(tasks).where(finished, tasks.c.id.in_(ids)))
        return ids


_ENDED = (Status.COMPLETED.value, Status.FAILED.value, Status.STUCK.value)


def _password(url: str) -> str | None:
    try:
        password = make_url(url).password
        return None if password is None else str(password)
    except ArgumentError:
        return None


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _is_missing_table(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or "does not exist" in text or "doesn't exist" in text

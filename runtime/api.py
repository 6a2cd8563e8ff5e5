"""`Task`: dispatch, status, redispatch and immediate runs, for application code.

The config is found the way every command finds it (`RSX_CONFIG`, else `rsx.toml` in the
current folder or a parent) and kept per process, with its store and registry; a worker
or command that was given `--config` installs its own with `use_config`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.clock import to_db, utcnow
from runtime.config import Config, load_config
from runtime.errors import BackendError, ConfigError, ParamsError, StorageError
from runtime.limits import MAX_DURATION_SECONDS, MAX_DURATION_TEXT
from runtime.registry import TaskEntry, load_tasks, lookup
from runtime.spawn import ensure_worker
from runtime.state import TaskId, TaskStatus
from runtime.store import Store
from runtime.store.tasks import CANCEL_TRIES, Cancel
from runtime.unique import unique_keys

log = logging.getLogger("runtime")


class Context:
    """One app's config, store and (loaded on first need) task registry."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config)
        self._tasks: Mapping[tuple[str, str], TaskEntry] | None = None

    @property
    def tasks(self) -> Mapping[tuple[str, str], TaskEntry]:
        """The generated registry (imports pydantic and the app's generated package)."""
        if self._tasks is None:
            self._tasks = load_tasks(self.config)
        return self._tasks


_installed: Context | None = None
_found: dict[tuple[str | None, ...], Context] = {}


def use_config(config: Config, store: Store | None = None) -> Context:
    """Make `config` the one this process uses (workers and commands given `--config`)."""
    global _installed
    _installed = Context(config, store)
    return _installed


def context() -> Context:
    """The current app's context, found from the environment and the working folder."""
    if _installed is not None:
        return _installed
    key = (
        os.getcwd(),
        os.environ.get("RSX_CONFIG"),
        os.environ.get("RSX_DATABASE_URL"),
        os.environ.get("RSX_SERVER_ID"),
    )
    found = _found.get(key)
    if found is None:
        found = _found[key] = Context(load_config())
    return found


def due_time(now: datetime, delay: float | None, run_at: datetime | None) -> datetime | None:
    """When a task dispatched at `now` may start: `run_at` (a naive one read as UTC), or
    `delay` seconds after `now`; None for at once (no delay, 0, or a `run_at` not after
    `now`). `ParamsError` in one line for both given, a delay that is not a number of
    seconds from 0 to ten years, or a `run_at` that is not a datetime."""
    if delay is not None and run_at is not None:
        raise ParamsError("give delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise ParamsError(f"run_at must be a datetime, not {type(run_at).__name__}")
        due = run_at.replace(tzinfo=UTC) if run_at.tzinfo is None else run_at.astimezone(UTC)
        return due if due > now else None
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise ParamsError(f"delay must be a number of seconds, not {type(delay).__name__}")
    if not 0 <= delay <= MAX_DURATION_SECONDS:  # also refuses nan
        small = isinstance(delay, float) or delay.bit_length() < 64
        shown = repr(delay) if small else "a larger integer"
        raise ParamsError(f"delay must be from 0 to {MAX_DURATION_TEXT}, not {shown}")
    return now + timedelta(seconds=delay) if delay > 0 else None


class Task:
    """The runtime's API: `Task.dispatch`, `Task.dispatch_many`, `Task.status`,
    `Task.redispatch`, `Task.cancel`, `Task.run`."""

    @staticmethod
    def dispatch(
        service: str,
        task: str,
        params: Mapping[str, Any] | None = None,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
    ) -> TaskId[Any]:
        """Queue a task and return its id; a worker is started if the queue's limits allow.

        With `delay` (seconds) or `run_at` (a datetime; naive means UTC) no worker starts
        it before then; without either, the task's own `@task(delay=...)` applies.

        For a unique task (`@task(unique=...)`) whose equal task holds the key (pending, or
        with `unique_while="active"` also running), nothing is inserted and that task's id
        is returned: compare it with ids you hold to tell the cases apart.

        Raises `UnknownTaskError`, `ParamsError` (naming each bad field, or a bad `delay` or
        `run_at`), `ConfigError` if the task's queue is not in the config, `BackendError` if
        the database fails.
        """
        return Task.dispatch_many(service, task, [params], delay=delay, run_at=run_at)[0]

    @staticmethod
    def dispatch_many(
        service: str,
        task: str,
        params: Iterable[Mapping[str, Any] | None],
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
    ) -> list[TaskId[Any]]:
        """Queue one task per params mapping, all in one transaction; their ids, in order.

        Every mapping is validated before anything is inserted, so a `ParamsError` (its
        message says which item) leaves no row behind. `delay` and `run_at` apply to every
        task of the batch. For a unique task each item has its own key: an item equal to an
        earlier one of the batch, or to a task that holds the key, gets that task's id.
        Raises like `dispatch`.
        """
        from runtime.validation import json_params

        ctx = context()
        entry = lookup(ctx.tasks, service, task)
        now = utcnow()
        due = due_time(now, entry.delay if delay is None and run_at is None else delay, run_at)
        batch = list(params)
        values = []
        for index, item in enumerate(batch):
            try:
                values.append(json_params(entry, item))
            except ParamsError as exc:
                if len(batch) == 1:
                    raise
                raise ParamsError(f"item {index}: {exc}") from None
        if ctx.config.queue(entry.queue) is None:
            raise ConfigError(
                f"queue '{entry.queue}' of task {service}.{task} is not defined in "
                f"{ctx.config.path.name} (queues: {', '.join(ctx.config.queues)})"
            )
        ids, live = ctx.store.dispatch(
            service=service,
            task=task,
            queue=entry.queue,
            params=values,
            timeout=entry.timeout,
            now=now,
            run_at=due,
            unique_keys=unique_keys(entry, values),
        )
        stored_due = to_db(due)
        if ids and (stored_due is None or stored_due <= ctx.store.work_horizon()):
            try:
                ensure_worker(ctx.config, ctx.store, entry.queue, live)
            except (OSError, StorageError) as exc:
                log.warning("tasks %s queued, but no worker could be started: %s", ids, exc)
        return [TaskId(task_id) for task_id in ids]

    @staticmethod
    def status(task_id: int) -> TaskStatus:
        """The task's status, log and result; `TaskNotFoundError` for an unknown id."""
        return context().store.get(task_id)

    @staticmethod
    def redispatch(task_id: int) -> int:
        """Queue a new pending copy (same service, task and params) of any task; its id."""
        old = context().store.get(task_id)
        return Task.dispatch(old.service_name, old.task_name, dict(old.params))

    @staticmethod
    def cancel(task_id: int) -> bool:
        """Cancel a task: True if it was pending (now `cancelled`) or running (its worker
        is asked to stop it: `task.cancelled()` turns True, and it is killed after
        `cancel_grace_seconds` if still running); False if it had already ended.
        `TaskNotFoundError` for an unknown id."""
        outcome, _ = cancel(task_id)
        return outcome is not Cancel.ENDED

    @staticmethod
    def run(service: str, task: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run a task now, in this process (immediate mode): no row, no timeout."""
        from runtime.immediate import run

        ctx = context()
        return run(ctx.config, ctx.tasks, service, task, params)


def cancel(task_id: int) -> tuple[Cancel, TaskStatus]:
    """What `Task.cancel` does, with the detail `python -m runtime.cancel` prints: whether the
    task was cancelled, asked to stop or had ended, and the task as it is now.

    A schedule's upcoming run is cancelled with its slot skipped; the schedule's next slot
    becomes its upcoming run.
    """
    from runtime.registry import load_schedules
    from runtime.scheduler import skip_upcoming

    ctx = context()
    for _ in range(CANCEL_TRIES):
        outcome, status = ctx.store.cancel(task_id, utcnow())
        if outcome is not Cancel.UPCOMING:
            return outcome, status
        if skip_upcoming(ctx.store, ctx.config, load_schedules(ctx.config), status, utcnow()):
            return Cancel.CANCELLED, ctx.store.get(task_id)
    raise BackendError(f"task {task_id} kept changing state while being cancelled; try again")

"""A task row as the application sees it: `TaskStatus`, frozen, built from a `_tasks` row,
and `TaskId`, a task's id typed with its result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, Generic

from typing_extensions import TypeVar

from runtime.clock import from_db

ResultT = TypeVar("ResultT", default=Any)
"""The type of a task's result; a bare `TaskId` or `TaskStatus` means `...[Any]`."""


class Status(StrEnum):
    """The six states of a task row; a `str`, so `status == "completed"` holds."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STUCK = "stuck"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the task has ended (it will not change state on its own any more)."""
        return self in (Status.COMPLETED, Status.FAILED, Status.STUCK, Status.CANCELLED)

    @classmethod
    def ended_values(cls) -> tuple[str, ...]:
        """The values of every ended status, for `status IN (...)`."""
        return tuple(status.value for status in cls if status.finished)


class ExecutionMode(StrEnum):
    """How a task row came to be: dispatched (`queued`) or started by its schedule."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"


def loads(text: str | None, default: Any = None) -> Any:
    """A JSON column's value, `default` when NULL."""
    if text is None:
        return default
    return json.loads(text)


class TaskId(int, Generic[ResultT]):
    """A task's id, typed with the result of its task: `TaskId[dict[str, int]](5) == 5`.

    The generated client's `dispatch` returns one, so that `tasks.status(task_id).result`
    has the task's declared return type for mypy. It is an `int` in every other respect
    (arithmetic, JSON, database parameters, pickling); the type argument exists only for
    the type checker.
    """

    __slots__ = ()


@dataclass(frozen=True)
class TaskStatus(Generic[ResultT]):
    """A snapshot of one task: its state, status data, log and result.

    Timestamps are timezone-aware UTC (None until set). `get(key)` reads one status value,
    e.g. `status.get("progress", 0)`. `result` is the stored JSON value; the generated
    client's `status` gives a completed task's result in its declared type (`ResultT`).
    """

    id: int
    status: Status
    service_name: str
    task_name: str
    queue_name: str
    execution_mode: ExecutionMode
    params: Mapping[str, Any] = field(default_factory=dict)
    status_data: Mapping[str, Any] = field(default_factory=dict)
    log: str = ""
    result: ResultT | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    next_run_at: datetime | None = None
    timeout_seconds: int = 0
    worker_pid: int | None = None
    server_id: int = 1
    attempts: int = 0
    cancel_requested_at: datetime | None = None
    """When a cancel was asked of the task while it ran (None: never)."""

    @classmethod
    def from_row(cls, row: Any) -> TaskStatus[Any]:
        """Build from a `_tasks` row: a SQLAlchemy Row, a mapping of its columns, or any
        object with its columns as attributes. Beyond the task's identity (id, status,
        names, mode, params, timeout) a column may be missing, as from a claim, which
        returns only what a worker needs: it then has its default."""
        get: Any = row.get if isinstance(row, Mapping) else partial(getattr, row)
        return cls(
            id=int(get("id")),
            status=Status(get("status")),
            service_name=get("service_name"),
            task_name=get("task_name"),
            queue_name=get("queue_name"),
            execution_mode=ExecutionMode(get("execution_mode")),
            params=loads(get("params"), {}),
            status_data=loads(get("status_data", None), {}) or {},
            log=get("status_log", None) or "",
            result=loads(get("result", None)),
            created_at=from_db(get("created_at", None)),
            started_at=from_db(get("started_at", None)),
            completed_at=from_db(get("completed_at", None)),
            next_run_at=from_db(get("next_run_at", None)),
            timeout_seconds=int(get("timeout_seconds")),
            worker_pid=get("worker_pid", None),
            server_id=int(get("server_id", 1)),
            attempts=int(get("attempts", 0)),
            cancel_requested_at=from_db(get("cancel_requested_at", None)),
        )

    @classmethod
    def claimed(cls, row: Mapping[str, Any]) -> TaskStatus[Any]:
        """`from_row` of a claim's row (its columns by name, as `Backend.claim_one` gives
        them), every other field at its default. A worker builds one per task, and the
        frozen dataclass's `__init__` sets each of its nineteen fields through
        `object.__setattr__`; the instance's attributes are filled at once instead."""
        task = object.__new__(cls)
        task.__dict__.update(
            _UNCLAIMED,
            id=int(row["id"]),
            status=Status(row["status"]),
            service_name=row["service_name"],
            task_name=row["task_name"],
            queue_name=row["queue_name"],
            execution_mode=ExecutionMode(row["execution_mode"]),
            params=loads(row["params"], {}),
            status_data={},
            timeout_seconds=int(row["timeout_seconds"]),
            worker_pid=row["worker_pid"],
            server_id=int(row["server_id"]),
            attempts=int(row["attempts"]),
        )
        return task

    def get(self, key: str, default: Any = None) -> Any:
        """One value of the status data, or `default`."""
        return self.status_data.get(key, default)

    @property
    def finished(self) -> bool:
        """Whether the task has completed, failed, been marked stuck or been cancelled."""
        return self.status.finished

    def to_dict(self) -> dict[str, Any]:
        """Every attribute as JSON-ready data (timestamps ISO 8601 UTC)."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            data[name] = value
        return data


_UNCLAIMED = {
    name: spec.default
    for name, spec in TaskStatus.__dataclass_fields__.items()
    if spec.default is not MISSING
}
"""The fields a claim does not return, at their defaults (`TaskStatus.claimed`)."""

"""What a scan of one service file yields: raw task facts and diagnostics, as cacheable data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsxgen.diagnostics import Diagnostic
from rsxgen.manifest import Param

Position = tuple[int, int]
"""A 1-based (line, column)."""


@dataclass(frozen=True)
class TaskFacts:
    """One task as written, before the config gives it a queue and timeout.

    `queue` and `timeout` are None when not given; `queue_at` is where the queue was
    written. `cron` is the expression as written (None when not scheduled, or when it
    was not a string literal) and `cron_at` where; `scheduled` says whether an
    `@schedule` is present. `at` is the position of the function's name.
    """

    name: str
    description: str
    at: Position
    queue: str | None = None
    queue_at: Position | None = None
    timeout: int | None = None
    scheduled: bool = False
    cron: str | None = None
    cron_at: Position | None = None
    params: tuple[Param, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "at": list(self.at),
            "queue": self.queue,
            "queue_at": list(self.queue_at) if self.queue_at else None,
            "timeout": self.timeout,
            "scheduled": self.scheduled,
            "cron": self.cron,
            "cron_at": list(self.cron_at) if self.cron_at else None,
            "params": [
                {
                    "name": p.name,
                    "type": p.type,
                    "default": p.default,
                    "default_value": p.default_value,
                }
                for p in self.params
            ],
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TaskFacts:
        return cls(
            name=data["name"],
            description=data["description"],
            at=_position(data["at"]),
            queue=data["queue"],
            queue_at=_position(data["queue_at"]) if data["queue_at"] else None,
            timeout=data["timeout"],
            scheduled=data["scheduled"],
            cron=data["cron"],
            cron_at=_position(data["cron_at"]) if data["cron_at"] else None,
            params=tuple(Param(**param) for param in data["params"]),
        )


@dataclass(frozen=True)
class FileScan:
    """The scan of one service file: its tasks and every config-independent problem.

    `path` is relative to the app root; `service` the dotted service name; `module` the
    import path of the file. A file without tasks has an empty `tasks`.
    """

    path: str
    service: str
    module: str
    tasks: tuple[TaskFacts, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    def to_data(self) -> dict[str, Any]:
        """JSON-ready data, for the build cache."""
        return {
            "path": self.path,
            "service": self.service,
            "module": self.module,
            "tasks": [task.to_data() for task in self.tasks],
            "diagnostics": [[d.path, d.line, d.col, d.code, d.message] for d in self.diagnostics],
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> FileScan:
        """The inverse of `to_data`."""
        return cls(
            path=data["path"],
            service=data["service"],
            module=data["module"],
            tasks=tuple(TaskFacts.from_data(task) for task in data["tasks"]),
            diagnostics=tuple(Diagnostic(*entry) for entry in data["diagnostics"]),
        )


def _position(value: list[int]) -> Position:
    line, col = value
    return (line, col)

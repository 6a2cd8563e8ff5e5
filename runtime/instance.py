"""`TaskInstance`: what a running task sees of the runtime.

The same class serves every mode; where its writes go is decided by a `Sink`: the
worker's sink batches them into the task's row, the immediate-mode sink prints log lines
to stdout and keeps status in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from runtime.clock import log_line, utcnow
from runtime.limits import MAX_DURATION_SECONDS, MAX_DURATION_TEXT


class Sink(Protocol):
    """Where a task's log lines, status values and temp-directory facts are recorded."""

    def log(self, line: str) -> None: ...

    def set_status(self, key: str, value: Any) -> None: ...

    def temp_directory(self) -> Path: ...

    def set_temp_expiration(self, seconds: int) -> None: ...

    def cancelled(self) -> bool: ...


class TaskInstance:
    """The handle passed as a task's first argument.

    `id` is the task's row id (None in immediate mode); `params` the validated parameters.
    """

    def __init__(self, id: int | None, params: Mapping[str, Any], sink: Sink) -> None:
        self.id = id
        self.params = dict(params)
        self._sink = sink

    def log(self, message: str) -> None:
        """Append a timestamped line to the task's log."""
        self._sink.log(log_line(message, utcnow()).rstrip("\n"))

    def set_status(self, key: str, value: Any) -> None:
        """Set one JSON value in the task's status data (e.g. `progress`)."""
        self._sink.set_status(key, value)

    def get_temp_directory(self) -> Path:
        """The task's own temp folder, `{storage}/tasks/{id}/`, created on first call."""
        return self._sink.temp_directory()

    def set_temp_expiration(self, seconds: int) -> None:
        """Keep the temp folder for `seconds` after the task ends instead of the default.

        Raises `ValueError` here, in the task, for anything but an integer from 0 to ten
        years, rather than later when the worker stores the expiry.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError("set_temp_expiration takes a non-negative number of seconds")
        if seconds > MAX_DURATION_SECONDS:
            raise ValueError(
                f"set_temp_expiration takes at most {MAX_DURATION_TEXT}, got {seconds}"
            )
        self._sink.set_temp_expiration(seconds)

    def cancelled(self) -> bool:
        """Whether a cancel of this task was requested (`Task.cancel`, `python -m
        runtime.cancel`, the dashboard). A long task should look now and then and, when
        True, stop its work and return: it then ends `cancelled`, with what it returned as
        its result. A task still running `cancel_grace_seconds` after the request is
        killed. Always False in immediate mode. Cheap: no database round trip."""
        return self._sink.cancelled()

    def __repr__(self) -> str:
        return f"TaskInstance(id={self.id!r}, params={self.params!r})"

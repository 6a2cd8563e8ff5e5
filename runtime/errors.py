"""The runtime's exceptions: every one a `TaskError`, each raised in one situation."""

from __future__ import annotations


class TaskError(Exception):
    """Base of every error the runtime raises on purpose."""


class UnknownTaskError(TaskError):
    """Raised when a service/task pair is not in the generated registry."""


class ParamsError(TaskError):
    """Raised when task parameters fail validation; the message names each bad field."""


class ResultError(TaskError):
    """Raised when a task's return value does not match its return annotation (the worker
    then fails the task with this message), or a stored result no longer does."""


class TaskNotFoundError(TaskError):
    """Raised when no task row has the requested id."""


class ConfigError(TaskError):
    """Raised when no config file is found or the config is invalid.

    `path` and `line` locate the problem when known; `key` names the offending key.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        missing: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        self.missing = missing


class BackendError(TaskError):
    """Raised when the database is unreachable or failing; names the URL without password."""


class StorageError(TaskError):
    """Raised when a folder or file under `storage/` cannot be used; the message names it."""

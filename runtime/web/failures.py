"""HTTP statuses for the runtime's errors, and their one-line messages.

A bad filter or id is 400, an unknown task 404, a task the code no longer has (or whose
params no longer validate) 409 when redispatched, a config problem 500 and a database
problem 503. Messages are the runtime's own one-line texts, which never hold a password.
"""

from __future__ import annotations

from runtime.cli import UsageError, describe
from runtime.errors import BackendError, ParamsError, TaskError, TaskNotFoundError, UnknownTaskError


def status_code(exc: Exception) -> int:
    """The HTTP status of a runtime error (a config problem, or any other, is 500)."""
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, TaskNotFoundError):
        return 404
    if isinstance(exc, UnknownTaskError | ParamsError):
        return 409
    if isinstance(exc, BackendError):
        return 503
    return 500


def message(exc: Exception) -> str:
    """The one-line message of a runtime error."""
    return describe(exc)


HANDLED = (TaskError, UsageError)
"""The errors a handler turns into an error response; anything else is a bug."""

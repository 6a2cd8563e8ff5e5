"""What every `python -m runtime.X` command shares: errors as one line, exit statuses.

A config or database problem, an unknown task or id, or bad parameters is one line on
stderr and exit status 2; an interrupted command exits 130. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from runtime.errors import ConfigError, TaskError
from runtime.text import escape_controls

EXIT_USAGE = 2


class UsageError(Exception):
    """A command was called with arguments it cannot act on (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with the commands' error shape: one line `prog: error: message`, exit 2
    (argparse's own prints the usage first, a second line)."""

    def error(self, message: str) -> NoReturn:
        sys.exit(fail(self.prog, escape_controls(message)))


def describe(exc: BaseException) -> str:
    """The one-line message of a runtime error, with file and line for config errors."""
    if isinstance(exc, ConfigError) and exc.path:
        where = f"{exc.path}:{exc.line}" if exc.line else exc.path
        return f"{where}: {exc.message}"
    return str(exc)


def fail(prog: str, message: str) -> int:
    """Print `prog: error: message` on stderr; the usage exit status."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, turning the runtime's errors into one line and exit 2."""
    try:
        return body()
    except (TaskError, UsageError) as exc:
        return fail(prog, describe(exc))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

"""What every `python -m runtime.X` command shares: errors as one line, exit statuses.

A config or database problem, an unknown task or id, or bad parameters is one line on
stderr and exit status 2; an interrupted command exits 130. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from runtime.errors import ConfigError, TaskError
from runtime.limits import is_task_id
from runtime.text import escape_controls

EXIT_USAGE = 2


class UsageError(Exception):
    """A command was called with arguments it cannot act on (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with the commands' error shape: one line `prog: error: message`, exit 2
    (argparse's own prints the usage first, a second line)."""

    def error(self, message: str) -> NoReturn:
        sys.exit(fail(self.prog, escape_controls(message)))


class TaskCommandParser(Parser):
    """The parser of a command about one task: `TASK_ID`, then `--config` and what the
    command adds. `parse` refuses an id no task can have (outside the 64-bit id column) as
    a missing one, `no task with id N`, before the database is opened."""

    def __init__(self, prog: str, description: str) -> None:
        super().__init__(prog=prog, description=description)
        self.add_argument("task_id", type=int, metavar="TASK_ID")
        self.add_argument("--config", help="path of rsx.toml (default: found from here upward)")

    def parse(self, argv: Sequence[str] | None) -> argparse.Namespace:
        args = self.parse_args(argv)
        if not is_task_id(args.task_id):
            sys.exit(fail(self.prog, f"no task with id {args.task_id}"))
        return args


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


@contextmanager
def quick_start() -> Iterator[None]:
    """Run a command that starts workers' work with the garbage collector off until it
    calls `started()` (leaving the block calls it in any case).

    A start-up's imports make tens of thousands of objects that live as long as the
    process; the collector's passes over them, while they are made and again in the full
    collection at exit, cost a worker's start more than a tenth of its time.
    """
    gc.disable()
    try:
        yield
    finally:
        started()


def started() -> None:
    """End a start-up (`quick_start`): what exists now is frozen, so that no collection
    walks it again (the one at exit included) and a forked child shares its pages instead
    of copying them (the `gc.freeze` recipe); collection resumes."""
    gc.freeze()
    gc.enable()

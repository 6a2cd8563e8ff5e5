"""Command-line parsing as every operator command wants it: one-line errors, exit status 2.

`Parser` is an `ArgumentParser` whose `error()` prints `prog: error: message` on one line
(argparse's usage line is dropped; `--help` still shows it), with control characters of
echoed values escaped. The `type=` helpers turn option values into the runtime's values
through `runtime.filters`, so the commands and the dashboard refuse the same input with
the same message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import NoReturn

from runtime.cli import EXIT_USAGE, UsageError, fail
from runtime.filters import parse_duration, parse_limit, parse_name, parse_status
from runtime.state import Status
from runtime.text import escape_controls


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` that reports a bad argument as one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, escape_controls(message))
        sys.exit(EXIT_USAGE)


def duration(text: str) -> timedelta:
    """`30s`, `15m`, `1h`, `2d` as a `timedelta` (an argparse `type=`)."""
    try:
        return parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def status(text: str) -> Status:
    """A task status name (an argparse `type=`)."""
    try:
        return parse_status(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def limit(text: str) -> int:
    """A positive row count within `runtime.filters.MAX_LIMIT` (an argparse `type=`)."""
    try:
        return parse_limit(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config(parser: argparse.ArgumentParser) -> None:
    """The `--config PATH` option every command has."""
    parser.add_argument(
        "--config", metavar="PATH", help="path of rsx.toml (default: found from here upward)"
    )


def name(what: str) -> Callable[[str], str]:
    """A queue, service or task name (an argparse `type=`); `what` names it in errors."""

    def convert(text: str) -> str:
        try:
            return parse_name(text, what)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = what
    return convert

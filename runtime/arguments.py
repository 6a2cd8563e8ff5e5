"""Command-line parsing as every operator command wants it: one-line errors, exit status 2.

`Parser` (from `runtime.cli`, shared with every command) prints an argparse error as one
line `prog: error: message` and exits 2. The `type=` helpers turn option values into the
runtime's values through `runtime.filters`, so the commands and the dashboard refuse the
same input with the same message.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta

from runtime.cli import Parser, UsageError
from runtime.filters import parse_duration, parse_limit, parse_name, parse_status
from runtime.state import Status

__all__ = ["Parser", "add_config", "duration", "limit", "name", "status"]


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

"""Diagnostics as data: one frozen record per problem and one registry of codes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runtime.text import escape_controls

CODES: dict[str, str] = {
    "RSX001": "queue not defined in config",
    "RSX002": "decorator argument not a literal",
    "RSX003": "description missing or empty",
    "RSX004": "timeout not a positive integer in range",
    "RSX005": "invalid cron expression",
    "RSX006": "@schedule without @task",
    "RSX007": "first parameter missing or not annotated TaskInstance",
    "RSX008": "parameter without annotation or with a type that is not JSON-compatible",
    "RSX009": "*args, **kwargs or positional-only parameters",
    "RSX010": "default that is not a literal constant",
    "RSX011": "scheduled task with a parameter that has no default",
    "RSX012": "task not a module-level sync def",
    "RSX013": "task name defined twice in one service",
    "RSX014": "service file does not parse",
    "RSX015": "config error",
    "RSX016": "parameter name the generated parameter model or client cannot use",
    "RSX017": "retries or retry_backoff not a literal in range",
    "RSX018": "unique, unique_key or unique_while invalid, or naming a missing parameter",
    "RSX019": "retry_on naming something that is not an exception class",
    "RSX020": "delay invalid, or given on a scheduled task",
    "RSX021": "return annotation that is not JSON-compatible",
}


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at a 1-based position of a file given relative to the app root."""

    path: str
    line: int
    col: int
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code}")

    def render(self) -> str:
        """One line: control characters of the path or message (quoted code) are escaped."""
        text = f"{self.path}:{self.line}:{self.col}: error[{self.code}]: {self.message}"
        return escape_controls(text)


def render_all(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics sorted by path, line, column, one per line."""
    return "".join(d.render() + "\n" for d in sorted(diagnostics))

"""Immediate mode: a task run in this process, with no row, no worker and no timeout.

Log lines are printed to stdout as they are written; status values are kept in memory;
the temp directory is a fresh folder under `{storage}/tasks/`, removed when the run ends.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from runtime.config import Config
from runtime.instance import TaskInstance
from runtime.registry import TaskEntry, bind, lookup
from runtime.storage import private_folder


class ConsoleSink:
    """The immediate-mode sink: log lines to a stream, status in memory, a throwaway folder."""

    def __init__(self, tasks_folder: Path, out: TextIO) -> None:
        self.tasks_folder = tasks_folder
        self.out = out
        self.status: dict[str, Any] = {}
        self.folder: Path | None = None

    def log(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def set_status(self, key: str, value: Any) -> None:
        self.status[key] = value

    def temp_directory(self) -> Path:
        if self.folder is None:
            private_folder(self.tasks_folder)
            self.folder = Path(tempfile.mkdtemp(prefix="immediate-", dir=self.tasks_folder))
        return self.folder

    def set_temp_expiration(self, seconds: int) -> None:
        """Nothing to do: an immediate run's folder is removed when the run ends."""

    def cancelled(self) -> bool:
        """Never: an immediate run has no row to cancel."""
        return False

    def remove_temp_directory(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def prepare(
    config: Config,
    registry: Mapping[tuple[str, str], TaskEntry],
    service: str,
    task: str,
    params: Mapping[str, Any] | None = None,
    out: TextIO | None = None,
) -> Callable[[], Any]:
    """Resolve and validate now (raising `UnknownTaskError`/`ParamsError`); run on call."""
    function, values = bind(lookup(registry, service, task), params)

    def call() -> Any:
        sink = ConsoleSink(config.storage / "tasks", out or sys.stdout)
        try:
            return function(TaskInstance(None, values, sink), **values)
        finally:
            sink.remove_temp_directory()

    return call


def run(
    config: Config,
    registry: Mapping[tuple[str, str], TaskEntry],
    service: str,
    task: str,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """Run the task now and return its value (its exceptions propagate)."""
    return prepare(config, registry, service, task, params)()

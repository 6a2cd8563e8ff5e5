"""The runtime's own log lines: a named logger per module, one timestamped line per record.

Workers and processors log through `logging.getLogger(__name__)` with structured fields
in `extra` (`task_id`, `queue`, `worker_pid`), so an application can attach a handler that
ships them as JSON. `configure` gives the default: `[YYYY-MM-DD HH:MM:SS] message` in UTC on
stderr, which is the worker log file for spawned workers, at the `[tasks] log_level`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

FORMAT = "[%(asctime)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]


class _RuntimeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs, told apart from an application's own."""

    stamped_second = -1
    stamp = ""

    def write_line(self, message: str) -> None:
        """Write `message` as its formatter would, without a `LogRecord`; the timestamp
        is formatted once per second."""
        second = int(time.time())
        self.acquire()
        try:
            if second != self.stamped_second:
                self.stamp = time.strftime(f"[{DATE_FORMAT}] ", time.gmtime(second))
                self.stamped_second = second
            self.stream.write(f"{self.stamp}{message}\n")
            self.stream.flush()
        finally:
            self.release()


def info_line(logger: logging.Logger, message: str, **extra: Any) -> None:
    """`logger.info(message, extra=extra)`, written straight to the stream when the record
    would reach only the handler `configure` installed, formatted as it formats it.

    A worker logs a line per task, and a `LogRecord` through the handler chain costs about
    what the task's own database statement does. An application's handler or filter on
    the way, or a logging configuration other than `configure`'s, gets the record as
    before, with its `extra` fields."""
    if logger.filters or logger.handlers or not logger.isEnabledFor(logging.INFO):
        logger.info(message, extra=extra)
        return
    parent = logger.parent
    while parent is not None and not (parent.handlers or parent.filters) and parent.propagate:
        parent = parent.parent
    handlers = parent.handlers if parent is not None and not parent.filters else ()
    handler = handlers[0] if len(handlers) == 1 else None
    if (
        parent is None
        or parent.propagate
        or type(handler) is not _RuntimeHandler
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not _UTCFormatter
    ):
        logger.info(message, extra=extra)
        return
    try:
        handler.write_line(message)
    except Exception:
        # As `emit` does: a write that fails (a full disk) is reported, not raised.
        record = logger.makeRecord(
            logger.name, logging.INFO, "(unknown file)", 0, message, (), None, extra=extra
        )
        handler.handleError(record)


def configure(level: str = "INFO") -> None:
    """Send the `runtime` loggers' records to stderr as one timestamped line each.

    Called in the runtime's own processes (workers, processors, commands), which log a
    line per task: records there skip what the format never shows and what costs most to
    gather (the caller's frame, thread and process names), as the logging documentation's
    advice on optimisation has it. The `worker_pid` field is in `extra`.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("runtime")
    logger.setLevel(level.upper())
    if not any(isinstance(h, _RuntimeHandler) for h in logger.handlers):
        handler = _RuntimeHandler(sys.stderr)
        handler.setFormatter(_UTCFormatter(FORMAT, DATE_FORMAT))
        logger.addHandler(handler)
    logger.propagate = False

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

FORMAT = "[%(asctime)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]


class _RuntimeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs, told apart from an application's own."""


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

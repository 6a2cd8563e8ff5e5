"""The runtime's per-task log line: written straight to the stream only where that is
exactly what the handler `configure` installs would write."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from runtime import logs


@pytest.fixture
def runtime_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The `runtime` logger configured as a worker configures it, onto a string."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logger = logging.getLogger("runtime")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers = []
    logs.configure("INFO")
    yield stream
    logger.handlers, logger.level, logger.propagate = saved


def test_the_direct_line_is_what_the_formatter_writes(runtime_logger: io.StringIO) -> None:
    logger = logging.getLogger("runtime.executor")
    logs.info_line(logger, "task 1 a.b: completed in 0.00 s", task_id=1)
    logger.info("task 2 a.b: 100% completed in 0.00 s")
    lines = runtime_logger.getvalue().splitlines()
    assert len(lines) == 2
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "
    assert re.fullmatch(stamp + r"task 1 a\.b: completed in 0\.00 s", lines[0])
    assert re.fullmatch(stamp + r"task 2 a\.b: 100% completed in 0\.00 s", lines[1])


def test_an_application_handler_still_gets_the_record(runtime_logger: io.StringIO) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("runtime.executor")
    keep = Keep()
    logging.getLogger("runtime").addHandler(keep)
    try:
        logs.info_line(logger, "task 7 a.b: completed in 0.00 s", task_id=7, queue="q")
    finally:
        logging.getLogger("runtime").removeHandler(keep)
    assert [(r.getMessage(), r.task_id, r.queue) for r in records] == [  # type: ignore[attr-defined]
        ("task 7 a.b: completed in 0.00 s", 7, "q")
    ]
    assert "task 7" in runtime_logger.getvalue()


def test_below_the_level_nothing_is_written(runtime_logger: io.StringIO) -> None:
    logging.getLogger("runtime").setLevel("WARNING")
    logs.info_line(logging.getLogger("runtime.executor"), "task 1 a.b: completed in 0.00 s")
    assert runtime_logger.getvalue() == ""

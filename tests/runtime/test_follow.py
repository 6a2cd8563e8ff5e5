"""`status --follow` learns of a task's writes promptly on every backend: each write it shows
(claim, log/status flush, finish) notifies the task's channel in its own transaction."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from runtime.clock import utcnow
from runtime.processes import start_time
from runtime.state import Status, TaskStatus
from runtime.status import Follower
from runtime.store import Claimer, Limits, Outcome, Store
from tests.runtime.backendhelp import write_config
from tests.runtime.helpers import wait_until

# Far longer than any latency asserted below: a follower that sees a write sooner was woken
# by it, not by its wait running out.
WAIT_S = 30.0
PROMPT_S = 0.5


class Screen:
    """What the follower printed, as a text stream it writes to from its own thread."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        return "".join(self.parts)


def test_follow_shows_each_flushed_log_line_well_under_a_second(
    tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url, queues={"video": 1})
    worker, watcher = Store(config), Store(config)
    pid = os.getpid()
    started = start_time(pid) or time.time()
    task_id = worker.insert_task(
        service="svc", task="job", queue="video", params={}, timeout=60, now=utcnow()
    )
    worker_id = worker.register_worker("video", pid, started, Limits(1, 1), utcnow())
    assert worker_id is not None
    screen = Screen()
    ended: list[TaskStatus] = []
    follower = Follower(watcher, task_id, screen, wait_s=WAIT_S)
    thread = threading.Thread(target=lambda: ended.append(follower.follow()), daemon=True)
    thread.start()

    claimed = worker.claim(Claimer("video", worker_id, pid, started), utcnow())
    assert claimed is not None and claimed.id == task_id

    def flush_and_time(line: str, **status: object) -> float:
        assert worker.progress(
            task_id, pid, lines=f"{line}\n", status_data=status or None, now=utcnow()
        )
        flushed = time.monotonic()
        wait_until(lambda: line in screen.text, 10, f"the follower to show {line!r}", every=0.005)
        return time.monotonic() - flushed

    flush_and_time("first line")  # the follower is started and waiting from here on
    latencies = [flush_and_time(f"line {n}", progress=n * 10) for n in range(2, 6)]
    assert max(latencies) < PROMPT_S, f"lines shown after {latencies} s"
    assert "50%" in screen.text

    recorded, _ = worker.finish(
        task_id, pid, Outcome(Status.COMPLETED, "1", "last line\n", None, 60), utcnow()
    )
    assert recorded
    finished = time.monotonic()
    thread.join(timeout=10)
    assert ended and ended[0].status == Status.COMPLETED
    assert time.monotonic() - finished < PROMPT_S + 0.5
    assert screen.text.index("line 5") < screen.text.index("last line")
    worker.dispose()
    watcher.dispose()

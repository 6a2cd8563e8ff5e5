"""A processor killed while it works its queue (it becomes that queue's worker): its task is
marked stuck by the next run, which runs the tasks left behind."""

from __future__ import annotations

from collections.abc import Callable

import psutil
import pytest

from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def test_a_processor_killed_mid_task_leaves_its_task_and_queue_to_the_next_run(
    make_app: Callable[..., App],
) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    gated = app.insert_row("demo", "gated", "video", {"gate": str(app.root / "never")})
    behind = [app.insert_row("demo", "record", "video", {"path": str(app.root / "r")})]
    processor = app.start("process")

    wait_until(lambda: app.status(gated).status == "running", 30, "the processor to run it")
    executor = psutil.Process(app.status(gated).worker_pid)
    assert executor.ppid() == processor.pid
    processor.kill()
    processor.communicate(timeout=10)
    executor.wait(timeout=10)  # it dies with its supervisor
    assert app.status(gated).status == "running"

    done = app.command("process")
    assert done.returncode == 0, done.stderr
    status = app.status(gated)
    assert status.status == "stuck"
    assert f"Worker process {executor.pid} is gone" in status.log
    assert set(app.statuses(behind).values()) == {"completed"}

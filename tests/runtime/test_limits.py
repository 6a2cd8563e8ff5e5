"""Worker limits and ordering under concurrency: FIFO, exactly once, never over the limits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime.clock import utcnow
from runtime.store import STARTING_GRACE_S, Limits
from tests.runtime.helpers import App, wait_until

pytestmark = pytest.mark.slow


def _runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an interval ending as another starts: 1)."""
    intervals = list(intervals)
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda event: (event[0], event[1]),
    )
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def test_max_overlap_counts_what_it_should() -> None:
    assert max_overlap([(0, 1), (1, 2)]) == 1
    assert max_overlap([(0, 3), (1, 2), (1.5, 4)]) == 3


def test_reserved_worker_slots_count_until_adopted_or_expired(app: App) -> None:
    store, me = app.store, psutil.Process()
    limits = Limits(queue=2, server=3)
    now = utcnow()

    slots = store.reserve_workers("video", 5, limits, now)
    assert len(slots) == 2
    assert store.reserve_workers("video", 1, limits, now) == []
    assert store.register_worker("video", me.pid, me.create_time(), limits, now) is None
    assert store.reserve_workers("other", 5, limits, now) != []  # the server's third slot

    assert store.adopt_worker(slots[0], me.pid, me.create_time(), now) == slots[0]
    assert store.adopt_worker(slots[0], me.pid, me.create_time(), now) is None
    later = now + timedelta(seconds=STARTING_GRACE_S + 1)
    assert store.adopt_worker(slots[1], me.pid, me.create_time(), later) is None
    assert store.live_workers(later) == {"video": 1}
    assert len(store.reserve_workers("video", 5, limits, later)) == 1


def test_one_worker_runs_a_queue_in_fifo_order(make_app: Callable[..., App]) -> None:
    app = make_app(queues={"video": 1, "other": 1, "slow": 1})
    runs = app.root / "runs"
    params = {"path": str(runs), "hold": 0.0}
    ids = [app.insert_row("demo", "record", "video", params) for _ in range(20)]

    done = app.command("process", "--queue", "video")
    assert done.returncode == 0, done.stderr

    recorded = _runs(runs)
    assert [r["id"] for r in recorded] == ids
    assert max_overlap((r["start"], r["end"]) for r in recorded) == 1
    assert set(app.statuses(ids).values()) == {"completed"}


DISPATCHER = textwrap.dedent(
    """
    import sys
    from runtime import Task
    queue_task, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for _ in range(count):
        print(Task.dispatch("demo", queue_task, {"path": path, "hold": 0.02}), flush=True)
    """
)


def test_racing_processors_and_dispatches_run_every_task_once_within_the_limits(
    make_app: Callable[..., App],
) -> None:
    app = make_app(queues={"video": 2, "other": 2, "slow": 1}, global_max_workers=3)
    runs = app.root / "runs"
    env = app.env | {"RSX_CONFIG": str(app.config.path)}
    plan = [("record", 50)] * 4 + [("record_other", 20)] * 2

    def dispatcher(task: str, count: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", DISPATCHER, task, str(count), str(runs)],
            cwd=app.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    dispatchers = [dispatcher(task, count) for task, count in plan[:3]]
    processors = [app.start("process") for _ in range(8)]
    dispatchers += [dispatcher(task, count) for task, count in plan[3:]]

    ids: list[int] = []
    for process in dispatchers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        ids += [int(line) for line in out.split()]
    for process in processors:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert len(ids) == len(set(ids)) == 240

    def all_done() -> bool:
        return set(app.statuses(ids).values()) == {"completed"}

    wait_until(all_done, 120, "all 240 tasks to complete", every=0.5)
    recorded = _runs(runs)
    assert sorted(r["id"] for r in recorded) == sorted(ids), "a task ran twice or not at all"
    by_queue = {
        "video": [(r["start"], r["end"]) for r in recorded if r["id"] in set(ids[:200])],
        "other": [(r["start"], r["end"]) for r in recorded if r["id"] in set(ids[200:])],
    }
    assert max_overlap(by_queue["video"]) == 2, "the video queue never used both workers"
    assert max_overlap(by_queue["other"]) <= 2
    assert max_overlap(by_queue["video"] + by_queue["other"]) <= 3
    app.wait_idle(timeout=60)
    assert app.registered_workers() == []
    logs = app.worker_log("video") + app.worker_log("other")
    assert "no free worker slot" not in logs, "a worker process was started for a full queue"

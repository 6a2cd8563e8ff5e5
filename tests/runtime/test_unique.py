"""Unique tasks: a dispatch whose equal task holds the key returns that task's id, and the
database, not a read before the insert, decides; on every backend, with real processes.

The test app's `demo.gated_once` is `@task(unique_key="gate")` and `demo.gated_alone` the
same with `unique_while="active"`; both wait for their gate file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

import runtime.api
from runtime import Task
from runtime.schema import tasks
from runtime.unique import MAX_KEY_CHARS, WHILE_ACTIVE, WHILE_PENDING, unique_keys
from tests.runtime.helpers import App, hold_slots, release_slots, wait_until

RACERS = 8


def rows_of(app: App, *conditions: object) -> list[tuple[int, str, str | None]]:
    """(id, status, unique_key) of the rows of the two unique tasks, by id."""
    with app.store.read() as conn:
        found = conn.execute(
            select(tasks.c.id, tasks.c.status, tasks.c.unique_key)
            .where(tasks.c.task_name.in_(["gated_once", "gated_alone"]), *conditions)
            .order_by(tasks.c.id)
        ).all()
    return [(int(row.id), row.status, row.unique_key) for row in found]


@pytest.fixture
def gates(tmp_path: Path) -> Callable[[str], str]:
    return lambda name: str(tmp_path / f"gate-{name}")


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import runtime.api
    from runtime import Task

    barrier, gate = Path(sys.argv[1]), sys.argv[2]
    runtime.api.context().tasks  # the registry loaded before the race
    Path(sys.argv[3]).touch()
    while not barrier.exists():
        time.sleep(0.001)
    print(Task.dispatch("demo", "gated_once", {"gate": gate}), flush=True)
    """
)


def test_eight_processes_dispatching_the_same_unique_task_at_once_leave_one_row(
    app: App, tmp_path: Path, gates: Callable[[str], str]
) -> None:
    hold_slots(app, "video", 2)
    barrier = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(RACERS)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), gates("race"), str(ready[n])],
            cwd=app.root, env=app.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(RACERS)
    ]
    wait_until(lambda: all(path.exists() for path in ready), 60, "every racer to be ready")
    barrier.touch()
    outputs = [racer.communicate(timeout=60) for racer in racers]

    assert all(racer.returncode == 0 for racer in racers), outputs
    ids = {int(out.strip()) for out, _ in outputs}
    assert len(ids) == 1, outputs
    (only,) = rows_of(app)
    assert only[0] in ids and only[1] == "pending"
    assert only[2] is not None and only[2].startswith(f"{WHILE_PENDING}demo.gated_once:")


def test_a_pending_mode_key_is_released_when_a_worker_claims_the_task(
    app: App, gates: Callable[[str], str]
) -> None:
    hold_slots(app, "video", 2)
    first = Task.dispatch("demo", "gated_once", {"gate": gates("a")})
    assert Task.dispatch("demo", "gated_once", {"gate": gates("a"), "timeout": 5}) == first
    other = Task.dispatch("demo", "gated_once", {"gate": gates("b")})
    assert other != first

    release_slots(app, keep=1)  # room for one worker: it takes `first` and waits
    worker = app.start("worker", "--queue", "video", "--config", str(app.config.path))
    app.wait_status(first, "running")
    assert rows_of(app, tasks.c.id == first)[0][2] is None

    again = Task.dispatch("demo", "gated_once", {"gate": gates("a")})
    assert again not in (first, other)
    assert Task.dispatch("demo", "gated_once", {"gate": gates("a")}) == again

    for name in ("a", "b"):
        Path(gates(name)).touch()
    for task_id in (first, other, again):
        assert app.wait_status(task_id).status == "completed"
    worker.wait(timeout=30)
    assert all(key is None for _, _, key in rows_of(app))


def test_an_active_mode_key_is_held_until_the_task_ends(
    app: App, gates: Callable[[str], str]
) -> None:
    first = Task.dispatch("demo", "gated_alone", {"gate": gates("a")})
    app.wait_status(first, "running")

    assert Task.dispatch("demo", "gated_alone", {"gate": gates("a")}) == first
    (row,) = rows_of(app)
    assert row[2] is not None and row[2].startswith(WHILE_ACTIVE)

    Path(gates("a")).touch()
    assert app.wait_status(first).status == "completed"
    second = Task.dispatch("demo", "gated_alone", {"gate": gates("a")})
    assert second != first
    assert app.wait_status(second).status == "completed"
    assert [key for _, _, key in rows_of(app)] == [None, None]


def test_dispatch_many_gives_duplicates_the_id_of_the_task_holding_their_key(
    app: App, gates: Callable[[str], str]
) -> None:
    hold_slots(app, "video", 2)
    held = Task.dispatch("demo", "gated_once", {"gate": gates("a")})

    ids = Task.dispatch_many(
        "demo",
        "gated_once",
        [{"gate": gates("b")}, {"gate": gates("a")}, {"gate": gates("c")}, {"gate": gates("b")}],
    )

    assert ids[1] == held and ids[3] == ids[0]
    assert len({held, ids[0], ids[2]}) == 3
    assert [row[0] for row in rows_of(app)] == sorted({held, ids[0], ids[2]})


def test_cancelling_stuck_marking_and_failing_release_an_active_key(
    app: App, gates: Callable[[str], str]
) -> None:
    hold_slots(app, "video", 2)
    pending = Task.dispatch("demo", "gated_alone", {"gate": gates("a")})
    assert Task.cancel(pending) is True
    assert rows_of(app, tasks.c.id == pending) == [(pending, "cancelled", None)]
    replacement = Task.dispatch("demo", "gated_alone", {"gate": gates("a")})
    assert replacement != pending

    release_slots(app)
    app.start("worker", "--queue", "video", "--config", str(app.config.path))
    running = app.wait_status(replacement, "running")
    assert running.worker_pid is not None
    psutil.Process(running.worker_pid).kill()
    assert app.wait_status(replacement).status == "stuck"
    assert rows_of(app, tasks.c.id == replacement)[0][2] is None

    failing = Task.dispatch("demo", "gated_alone", {"gate": gates("c"), "timeout": 0.2})
    assert app.wait_status(failing).status == "failed"
    fresh = Task.dispatch("demo", "gated_alone", {"gate": gates("c"), "timeout": 0.2})
    assert fresh != failing
    assert app.wait_status(fresh).status == "failed"
    assert all(key is None for _, _, key in rows_of(app))


def test_the_key_hashes_the_named_params_canonically_and_fits_its_column(app: App) -> None:
    registry = runtime.api.context().tasks
    once, alone = registry[("demo", "gated_once")], registry[("demo", "gated_alone")]
    assert (once.unique, once.unique_while) == (("gate",), "pending")
    assert (alone.unique, alone.unique_while) == (("gate",), "active")
    entry = replace(registry[("demo", "echo")], unique=("options", "count"))
    first, same, other = unique_keys(
        entry,
        [
            {"count": 1, "flag": True, "options": {"a": 1, "b": 2}},
            {"flag": False, "options": {"b": 2, "a": 1}, "count": 1},
            {"count": 2, "flag": True, "options": {"a": 1, "b": 2}},
        ],
    ) or []
    assert first == same != other
    assert first.startswith("p:demo.echo:") and len(first) == len("p:demo.echo:") + 64

    long = replace(entry, service="s" * 150, unique_while="active")
    (key,) = unique_keys(long, [{"count": 1}]) or []
    assert key.startswith(WHILE_ACTIVE) and len(key) == 66 <= MAX_KEY_CHARS
    assert unique_keys(replace(entry, unique=None), [{"count": 1}]) is None


def test_ordinary_dispatches_set_no_key(app: App) -> None:
    ids = [Task.dispatch("demo", "add", {"a": 1})]
    ids += Task.dispatch_many("demo", "add", [{"a": 1}, {"a": 1}])
    assert len(set(ids)) == 3
    for task_id in ids:
        assert app.wait_status(task_id).result == 1
    assert rows_of(app) == []
    with app.store.read() as conn:
        keyed = conn.execute(
            select(func.count()).select_from(tasks).where(tasks.c.unique_key.is_not(None))
        ).scalar_one()
    assert keyed == 0

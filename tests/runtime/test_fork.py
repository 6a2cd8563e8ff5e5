"""An application that dispatches and then forks (gunicorn --preload, multiprocessing): each
child gets connections of its own, and the parent keeps using its own."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import pytest

from runtime import Task
from tests.runtime.helpers import App

pytestmark = pytest.mark.slow

CHILDREN = 4
DISPATCHES = 25


def _dispatch(index: int, go: Event, out: Connection) -> None:
    """A forked child: wait for the others, then dispatch, reporting ids and errors."""
    ids: list[int] = []
    errors: list[str] = []
    go.wait(30)
    for number in range(DISPATCHES):
        try:
            ids.append(Task.dispatch("demo", "add", {"a": index, "b": number}))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    out.send((ids, errors))


def test_forked_children_dispatch_on_their_own_connections(app: App) -> None:
    first = Task.dispatch("demo", "add", {"a": -1})
    fork = multiprocessing.get_context("fork")
    go = fork.Event()
    pipes = [fork.Pipe(duplex=False) for _ in range(CHILDREN)]
    children = [
        fork.Process(target=_dispatch, args=(index, go, pipes[index][1]))
        for index in range(CHILDREN)
    ]
    for child in children:
        child.start()
    go.set()
    results = []
    try:
        for index in range(CHILDREN):
            assert pipes[index][0].poll(120), f"child {index} did not finish its dispatches"
            results.append(pipes[index][0].recv())
    finally:
        for child in children:
            child.join(timeout=5)
            if child.exitcode is None:
                child.kill()
    assert [child.exitcode for child in children] == [0] * CHILDREN

    for index, (ids, errors) in enumerate(results):
        assert errors == [], f"child {index}: {errors[:3]}"
        assert len(ids) == DISPATCHES
        for number, task_id in enumerate(ids):
            assert app.status(task_id).params == {"a": index, "b": number}
    every = [task_id for ids, _ in results for task_id in ids]
    assert len(set(every)) == CHILDREN * DISPATCHES and first not in every
    after = Task.dispatch("demo", "add", {"a": -2})
    assert app.status(after).params == {"a": -2, "b": 0}
    assert app.status(first).params == {"a": -1, "b": 0}

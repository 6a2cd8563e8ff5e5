"""Starting detached workers, no more than the limits have room for.

A worker is `python -m runtime.worker --queue Q --config PATH --slot ID`, started in the app
root in a new session with its output appended to `storage/logs/worker-<queue>.log`. The
slot is a `_workers` row reserved under the workers lock before the process is started
(`Store.reserve_workers`), which the worker adopts: racing dispatchers and processors
therefore start no process that would only find the limits full. (A plain count before
spawning let 200 racing dispatches start ~90 interpreters that all exited at once.)

The process is started through `sh -c '"$@" &'`, so the shell exits at once and the worker
is adopted by init: the dispatching process (a web server, say) is left with no child to
reap and no zombie that would look alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runtime.clock import utcnow
from runtime.config import Config
from runtime.errors import StorageError
from runtime.storage import describe, private_file
from runtime.store import Limits, Store


def worker_log_path(config: Config, queue: str) -> Path:
    """The append-only log file of a queue's workers."""
    return config.storage / "logs" / f"worker-{queue}.log"


def open_worker_log(config: Config, queue: str) -> int:
    """The queue's worker log opened for appending (created 0600 in a 0700 folder); a
    `StorageError` naming the folder if it cannot be written."""
    log_path = worker_log_path(config, queue)
    try:
        return private_file(log_path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        raise StorageError(
            f"worker log folder {log_path.parent} cannot be written ({describe(exc)})"
        ) from None


def spawn_worker(config: Config, queue: str, slot: int | None = None) -> None:
    """Start one detached worker for `queue`, adopting the reserved `slot` if given."""
    log_fd = open_worker_log(config, queue)
    command = [sys.executable, "-m", "runtime.worker"]
    command += ["--queue", queue, "--config", str(config.path)]
    if slot is not None:
        command += ["--slot", str(slot)]
    with open(log_fd, "ab") as log:
        shell = subprocess.Popen(
            ["/bin/sh", "-c", '"$@" &', "sh", *command],
            cwd=config.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    shell.wait()


def spawn_for_pending(config: Config, store: Store, pending: Mapping[str, int]) -> int:
    """Start workers for queues with pending tasks, up to the limits; how many were started.

    `pending` maps queue names to their number of claimable tasks, in the order the queues
    should be served; a queue gets at most one worker per pending task. An unlocked count
    first skips queues that are visibly full, the common case, without taking the lock.
    If a worker cannot be started, the slots reserved for it and the rest are released
    before the error is raised (a `StorageError` when its log cannot be written).
    """
    now = utcnow()
    live = store.live_workers(now)
    started = 0
    for queue, count in pending.items():
        limits = config.queue(queue)
        if limits is None or count < 1:
            continue
        if live[queue] >= limits.max_workers or live.total() >= config.global_max_workers:
            continue
        limit = Limits(queue=limits.max_workers, server=config.global_max_workers)
        slots = store.reserve_workers(queue, count, limit, now)
        for index, slot in enumerate(slots):
            try:
                spawn_worker(config, queue, slot)
            except BaseException:
                for unused in slots[index:]:
                    store.deregister(unused)
                raise
            live[queue] += 1
            started += 1
    return started


def ensure_worker(config: Config, store: Store, queue: str, live: int | None = None) -> int:
    """After a dispatch to `queue` has committed: start a worker if the task would
    otherwise wait; how many were started.

    A live worker of the queue (running or idle) claims the task itself, so the common
    case costs one read and no write. That read comes after the dispatch's commit, which
    closes the race with a worker giving up its slot: either the read still sees the
    worker, whose hand-off after deregistering then sees the task, or it sees the slot
    free and starts one. A second worker is started only while the queue has more tasks
    waiting than workers, up to `max_workers`. `live` is that count when the caller read
    it with the dispatch (`Store.dispatch`).
    """
    limits = config.queue(queue)
    if limits is None:
        return 0
    if live is None:
        live = store.live_workers(utcnow(), queue)[queue]
    if live >= limits.max_workers:
        return 0
    if live > 0 and store.claimable_count(queue, live + 1) <= live:
        return 0
    return spawn_for_pending(config, store, {queue: 1})

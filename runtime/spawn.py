"""Starting detached workers, and deciding how many a queue may get.

A worker is `python -m runtime.worker --queue Q --config PATH`, started in the app root
in a new session with its output appended to `storage/logs/worker-<queue>.log`. It is
started through `sh -c '"$@" &'`, so the shell exits at once and the worker is adopted by
init: the dispatching process (a web server, say) is left with no child to reap and no
zombie that would look alive. The counts here are cheap estimates; the worker itself
registers under the limits atomically (`Store.register_worker`) and exits if it is over.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runtime.config import Config
from runtime.store import Store


def worker_log_path(config: Config, queue: str) -> Path:
    """The append-only log file of a queue's workers."""
    return config.storage / "logs" / f"worker-{queue}.log"


def spawn_worker(config: Config, queue: str) -> None:
    """Start one detached worker for `queue`."""
    log_path = worker_log_path(config, queue)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "runtime.worker"]
    command += ["--queue", queue, "--config", str(config.path)]
    with open(log_path, "ab") as log:
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


def free_slots(config: Config, store: Store, queue: str) -> int:
    """How many more workers `queue` may have now, by the unlocked estimate."""
    limits = config.queue(queue)
    if limits is None:
        return 0
    live = store.live_workers()
    server_free = config.global_max_workers - sum(live.values())
    return max(0, min(limits.max_workers - live[queue], server_free))


def spawn_for_pending(config: Config, store: Store, pending: Mapping[str, int]) -> int:
    """Spawn workers for queues with pending tasks, up to the limits; how many were started.

    `pending` maps queue names to their number of claimable tasks, in the order the queues
    should be served. A queue gets at most one worker per pending task.
    """
    live = store.live_workers()
    server_free = config.global_max_workers - sum(live.values())
    started = 0
    for queue, count in pending.items():
        limits = config.queue(queue)
        if limits is None or server_free <= 0:
            continue
        wanted = min(count, limits.max_workers - live[queue], server_free)
        for _ in range(max(0, wanted)):
            spawn_worker(config, queue)
            started += 1
            server_free -= 1
    return started

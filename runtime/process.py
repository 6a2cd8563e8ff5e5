"""`python -m runtime.process [--queue NAME] [--config PATH]`: the processor cron runs.

1) marks stuck the running tasks whose worker is gone, and deletes this server's expired
temp directories; 2) lets the scheduler start due scheduled tasks; 3) spawns workers for
queues with pending tasks, up to the limits; 4) becomes a worker itself for the queue
waiting longest, if under quota; 5) works that queue until it is empty, then exits 0.
With `--queue` only that queue is spawned for and worked. A run with nothing pending
loads neither pydantic nor the task registry.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from runtime.cli import Parser, UsageError, quick_start, run_command
from runtime.clock import utcnow
from runtime.config import Config, load_config
from runtime.logs import configure

if TYPE_CHECKING:
    from runtime.store import Store

PROG = "python -m runtime.process"

log = logging.getLogger("runtime.process")


def run_scheduler(store: Store, config: Config, now: datetime) -> None:
    """Let `runtime.scheduler.tick` create upcoming runs and release due ones."""
    from runtime.registry import load_schedules
    from runtime.scheduler import tick

    result = tick(store, config, load_schedules(config), now)
    for error in result.errors:
        log.warning("schedule %s", error)


def process(config: Config, queue: str | None = None, now: datetime | None = None) -> int:
    """One processor run (see the module doc); the exit status. Its connections are closed
    at the end, not left to the garbage collector, which the run mostly goes without."""
    from runtime.store import Store

    store = Store(config)
    try:
        return _process(config, store, queue, now or utcnow())
    finally:
        store.dispose()


def _process(config: Config, store: Store, queue: str | None, now: datetime) -> int:
    from runtime.maintenance import delete_expired_temp_directories

    store.sweep(now)
    store.forget_dead_workers(now)
    delete_expired_temp_directories(config, store, now)
    run_scheduler(store, config, now)

    pending = store.pending_counts(queue, now)
    for name in sorted(set(pending) - set(config.queues)):
        log.warning(
            "%s pending task(s) on queue '%s', which is not defined in %s",
            pending[name][0],
            name,
            config.path.name,
            extra={"queue": name},
        )
    order = sorted((q for q in pending if q in config.queues), key=lambda q: pending[q][1])
    if not order:
        return 0

    from runtime.spawn import open_worker_log, spawn_for_pending
    from runtime.worker import Supervisor, register

    own: str | None = None
    worker_id: int | None = None
    for name in order:
        worker_id = register(config, store, name)
        if worker_id is not None:
            own = name
            break
    counts = {q: pending[q][0] - (1 if q == own else 0) for q in order}
    try:
        spawn_for_pending(config, store, counts)
        if own is None or worker_id is None:
            return 0
        log_fd = open_worker_log(config, own)
    except BaseException:
        if worker_id is not None:
            store.deregister(worker_id)
        raise

    from runtime.api import use_config

    with open(log_fd, "ab") as worker_log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(worker_log.fileno(), sys.stdout.fileno())
        os.dup2(worker_log.fileno(), sys.stderr.fileno())
    use_config(config, store)
    return Supervisor(config, store, own, worker_id).serve()


def main(argv: list[str] | None = None) -> int:
    """`python -m runtime.process`. The garbage collector is off until the run ends or
    its executor is forked (`runtime.cli.quick_start`), which is why this module imports
    the store, and with it SQLAlchemy, lazily."""
    with quick_start():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = Parser(prog=PROG, description="Run due and pending tasks.")
    parser.add_argument("--queue", help="spawn for and work on this queue only")
    parser.add_argument("--config", help="path of rsx.toml (default: found from here upward)")
    args = parser.parse_args(argv)

    def body() -> int:
        config = load_config(args.config)
        configure(config.log_level)
        if args.queue is not None and config.queue(args.queue) is None:
            raise UsageError(
                f"queue '{args.queue}' is not defined in {config.path.name} "
                f"(queues: {', '.join(config.queues)})"
            )
        return process(config, args.queue)

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

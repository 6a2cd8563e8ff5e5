"""`python -m runtime.cancel [--config PATH] TASK_ID`: cancel a task, saying what happened.

One line on stdout: `task 12 cancelled` (it was pending; a schedule's upcoming run is
skipped, the schedule's next slot kept), `task 12 is running: asked to stop, it is killed
after 10 s if still running`, or `task 12 already completed` (failed, stuck, cancelled).
Exit status 0 when the task was cancelled or asked to stop, 1 when it had already ended,
2 for an unknown id, a bad argument, a config or database problem (one line on stderr).
"""

from __future__ import annotations

import sys

from runtime.cli import TaskCommandParser, run_command

PROG = "python -m runtime.cancel"


def main(argv: list[str] | None = None) -> int:
    args = TaskCommandParser(PROG, "Cancel a pending or running task.").parse(argv)

    def body() -> int:
        from runtime.api import cancel, use_config
        from runtime.config import load_config
        from runtime.store.tasks import Cancel

        config = load_config(args.config)
        use_config(config)
        outcome, status = cancel(args.task_id)
        if outcome is Cancel.ENDED:
            print(f"task {status.id} already {status.status.value}")
            return 1
        if outcome is Cancel.REQUESTED:
            print(
                f"task {status.id} is running: asked to stop, it is killed after "
                f"{config.cancel_grace_seconds} s if still running"
            )
        else:
            print(f"task {status.id} cancelled")
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

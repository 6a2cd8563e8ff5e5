"""`python -m runtime.redispatch [--config PATH] TASK_ID`: queue a new copy, print its id.

The copy has the same service, task and params as the original, whatever its state;
stuck tasks are never retried otherwise.
"""

from __future__ import annotations

import sys

from runtime.cli import TaskCommandParser, run_command

PROG = "python -m runtime.redispatch"


def main(argv: list[str] | None = None) -> int:
    args = TaskCommandParser(PROG, "Queue a new copy of a task.").parse(argv)

    def body() -> int:
        from runtime.api import Task, use_config
        from runtime.config import load_config

        use_config(load_config(args.config))
        print(Task.redispatch(args.task_id))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

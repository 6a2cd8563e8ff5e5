"""`python -m runtime.redispatch [--config PATH] TASK_ID`: queue a new copy, print its id.

The copy has the same service, task and params as the original, whatever its state;
stuck tasks are never retried otherwise.
"""

from __future__ import annotations

import sys

from runtime.cli import Parser, fail, run_command
from runtime.limits import is_task_id

PROG = "python -m runtime.redispatch"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description="Queue a new copy of a task.")
    parser.add_argument("task_id", type=int, metavar="TASK_ID")
    parser.add_argument("--config", help="path of rsx.toml (default: found from here upward)")
    args = parser.parse_args(argv)
    if not is_task_id(args.task_id):
        return fail(PROG, f"no task with id {args.task_id}")

    def body() -> int:
        from runtime.api import Task, use_config
        from runtime.config import load_config

        use_config(load_config(args.config))
        print(Task.redispatch(args.task_id))
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

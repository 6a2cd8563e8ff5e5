"""What a task costs: the transactions and statements of a dispatch and of a task run.

    python bench/statements.py [--url URL]

Runs the benchmark's app with statement logging in every process of it: a
`sitecustomize` module on PYTHONPATH registers SQLAlchemy event listeners (pool checkout,
pre-ping, begin, each statement, commit, rollback) that append to one file per process,
forked executors included. It then prints what each of these did, in order:

- `Task.dispatch` while the queue's worker is busy (no worker to start);
- `Task.status`;
- `Task.dispatch` with no worker alive (it starts one);
- the worker that ran a gate task and then three noops, its executor's events cut at each
  claim, so one noop's run is one block;
- the worker started by that last dispatch, which ran one task, from start to exit.

Counts are of what went through SQLAlchemy; a pre-ping is shown where the pool made one.
"""
# The imports below come after the sys.path fix, which they need:
# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # As in bench/runtime.py: bench/runtime.py must not stand in for the `runtime` package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import re
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench._common import Scratch, child_env, processes_under, wait_until
from bench.runtime import App, build_package, error_line

LOG_VARIABLE = "BENCH_STATEMENT_LOG"

HOOK = '''\
"""Statement logging for bench/statements.py, loaded by every Python process started."""

import os
import sys
import time


def _install(folder):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.pool import Pool

    files = {}

    def write(kind, text=""):
        pid = os.getpid()
        if pid not in files:
            files[pid] = open(os.path.join(folder, f"{pid}.log"), "a", buffering=1)
            files[pid].write(f"{time.time()}\\tprocess\\t{os.getppid()}\\n")
        files[pid].write(f"{time.time()}\\t{kind}\\t{' '.join(text.split())}\\n")

    ping = DefaultDialect._do_ping_w_event

    def logged_ping(self, dbapi_connection):
        write("ping")
        return ping(self, dbapi_connection)

    DefaultDialect._do_ping_w_event = logged_ping
    event.listen(Pool, "checkout", lambda *a: write("checkout"))
    event.listen(Pool, "connect", lambda *a: write("connect"))
    event.listen(Engine, "begin", lambda conn: write("begin"))
    event.listen(Engine, "commit", lambda conn: write("commit"))
    event.listen(Engine, "rollback", lambda conn: write("rollback"))
    event.listen(
        Engine, "before_cursor_execute",
        lambda conn, cursor, statement, *rest: write("execute", statement),
    )
    write("argv", " ".join(sys.orig_argv))


if os.environ.get("BENCH_STATEMENT_LOG"):
    _install(os.environ["BENCH_STATEMENT_LOG"])
'''


@dataclass
class Event:
    """One logged event of one process."""

    at: float
    kind: str
    text: str


@dataclass
class Process:
    """The events one process logged, and what it was."""

    pid: int
    parent: int
    argv: str = ""
    events: list[Event] = field(default_factory=list)


def mark(label: str) -> None:
    """Write a marker into this process's statement log (in the measuring child)."""
    with open(f"{os.environ['BENCH_STATEMENT_LOG']}/{os.getpid()}.log", "a") as log:
        log.write(f"{time.time()}\tmark\t{label}\n")


def child(gate: str) -> dict[str, Any]:
    """The measured calls, run in the app's folder with logging on."""
    from runtime import Task

    gate_id = Task.dispatch("bench_service", "gate", {"path": gate})
    wait_until(lambda: Task.status(gate_id).status == "running", 60, "the gate task")
    mark("dispatch, worker busy")
    first = Task.dispatch("bench_service", "noop", {"n": 1})
    mark("end")
    mark("status")
    Task.status(first)
    mark("end")
    ids = [Task.dispatch("bench_service", "noop", {"n": n}) for n in (2, 3)]
    Path(gate).touch()
    for task_id in ids:
        wait_until(lambda t=task_id: Task.status(t).status == "completed", 60, "the noops")
    wait_until(lambda: not processes_under(Path.cwd()), 60, "the worker to exit")
    mark("dispatch, no worker alive")
    last = Task.dispatch("bench_service", "noop", {"n": 4})
    mark("end")
    wait_until(lambda: Task.status(last).status == "completed", 60, "the last noop")
    wait_until(lambda: not processes_under(Path.cwd()), 60, "the worker to exit")
    return {"pid": os.getpid()}


def load(folder: Path) -> dict[int, Process]:
    """Every process's events, from the log files."""
    processes = {}
    for path in folder.glob("*.log"):
        pid = int(path.stem)
        process = Process(pid, 0)
        for line in path.read_text().splitlines():
            at, kind, text = (line.split("\t", 2) + [""])[:3]
            if kind == "process":
                process.parent = int(text)
            elif kind == "argv":
                process.argv = text
            else:
                process.events.append(Event(float(at), kind, text))
        processes[pid] = process
    return processes


def between(events: list[Event], start: str) -> list[Event]:
    """The events after the marker `start` up to the next marker."""
    inside, found = False, []
    for event in events:
        if event.kind == "mark":
            if inside:
                return found
            inside = event.text == start
        elif inside:
            found.append(event)
    return found


def claims(events: list[Event]) -> list[list[Event]]:
    """The executor's events cut before each transaction that claims (or retires), with
    the connection checkout that precedes it."""
    cuts = []
    for i, event in enumerate(events):
        if event.kind == "begin" and _claims(events[i + 1:]):
            while i > 0 and events[i - 1].kind in ("checkout", "ping", "connect"):
                i -= 1
            cuts.append(i)
    bounds = [0, *cuts, len(events)]
    blocks = [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return [b for b in blocks if b]


def _claims(rest: list[Event]) -> bool:
    """Whether the transaction starting here selects the next task to claim."""
    for event in rest:
        if event.kind in ("commit", "rollback"):
            return False
        if event.kind == "execute" and re.search(r"ORDER BY _tasks\.id", event.text):
            return True
    return False


def shorten(sql: str, width: int = 110) -> str:
    """A statement on one line: the column lists elided, cut at `width`."""
    sql = re.sub(r"\(([^()]{60,})\)", "(…)", sql)
    sql = re.sub(r"SELECT (_tasks\.id, _tasks\.server_id, .*?) FROM", "SELECT _tasks.* FROM", sql)
    return sql if len(sql) <= width else sql[: width - 1] + "…"


def show(title: str, events: list[Event]) -> None:
    """Print a block of events and its counts."""
    count: defaultdict[str, int] = defaultdict(int)
    for event in events:
        count[event.kind] += 1
    ended = count["commit"] + count["rollback"]
    print(f"\n{title}: {count['checkout']} checkouts, {count['ping']} pings, "
          f"{ended} transactions ({count['commit']} commit, {count['rollback']} rollback), "
          f"{count['execute']} statements")
    for event in events:
        if event.kind == "execute":
            print(f"      {shorten(event.text)}")
        elif event.kind in ("begin", "commit", "rollback"):
            print(f"    {event.kind.upper()}")
        else:
            print(f"  {event.kind}")


def report(processes: dict[int, Process], child_pid: int) -> None:
    """Print the blocks described in the module doc."""
    mine = processes[child_pid].events
    for label in ("dispatch, worker busy", "status", "dispatch, no worker alive"):
        show(f"{label} (dispatching process)", between(mine, label))
    supervisors = sorted(
        (p for p in processes.values() if "runtime.worker" in p.argv),
        key=lambda p: p.events[0].at if p.events else 0,
    )
    for number, supervisor in enumerate(supervisors, 1):
        executors = [p for p in processes.values() if p.parent == supervisor.pid and not p.argv]
        print(f"\n== worker {number}: supervisor {supervisor.pid} ==")
        show("supervisor, whole life", supervisor.events)
        for executor in executors:
            for index, block in enumerate(claims(executor.events), 1):
                retires = any(e.text.startswith("DELETE FROM _workers") for e in block)
                what = "claim finds nothing, retires" if retires else "claims and runs a task"
                show(f"executor {executor.pid}, block {index}: {what}", block)


def main(argv: list[str] | None = None) -> int:
    """Run the app with statement logging and print what each part did."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database server URL (default: SQLite in a temp folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)), flush=True)
        return 0

    with Scratch(args.url) as scratch:
        package = build_package(scratch)
        app = App(scratch, package, scratch.database())
        try:
            hook, logs = scratch.folder("hook"), scratch.folder("statements")
            (hook / "sitecustomize.py").write_text(HOOK)
            env = child_env()
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
            env[LOG_VARIABLE] = str(logs)
            command = [sys.executable, str(Path(__file__).resolve()),
                       "--child", str(app.root / "gate")]
            done = subprocess.run(command, cwd=app.root, env=env, capture_output=True,
                                  text=True, timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"bench: child failed: {error_line(done.stderr, 1)}")
            child_pid = json.loads(done.stdout.strip().splitlines()[-1])["pid"]
            print(f"statements of the runtime on {scratch.kind} "
                  "(SQLAlchemy events in every process of the app)")
            report(load(logs), child_pid)
        finally:
            app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

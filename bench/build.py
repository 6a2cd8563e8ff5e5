"""Benchmark of `rsxgen build` against bare libcst parsing of the same files.

    python bench/build.py [-n 1000] [--repeat 1] [--keep]

Writes N synthetic service modules (about 60 lines each: four tasks with varied
parameters, one of them scheduled, plus helpers) into a temporary app, then measures, as
wall-clock time of fresh processes:

- parse only: `libcst.parse_module` over every file, with the build's own process model
  (`rsxgen.build.parallel_map`: a process pool when there are many files);
- cold build: `rsxgen build` with no cache and no output;
- no-change rebuild: `rsxgen build` again, nothing changed.

Targets: cold build ≤ 2.0 × parse only; no-change rebuild ≤ 0.3 s at N=1000.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_RATIO_TARGET = 2.0
NO_CHANGE_TARGET = 0.3
GROUP_SIZE = 100
SUMMARY_TIME = re.compile(r" in (\d+\.\d+) s$")

CONFIG = """\
[tasks]
services = "services"
output = "generated"

[tasks.queues]
video = { max_workers = 2 }
export = { max_workers = 1 }
email = { max_workers = 5 }
"""

MODULE = '''\
"""Synthetic service {i}, written by bench/build.py."""

import datetime
from typing import Any, Literal, Optional

from runtime import TaskInstance, schedule, task

RETRIES = {retries}


def _weigh(values: list[int]) -> int:
    total = 0
    for value in values:
        total += value * RETRIES
    return total


class _Report:
    def __init__(self, name: str) -> None:
        self.name = name

    def render(self) -> str:
        return f"report {{self.name}} of service {i}"


@task("Process a batch of items ({i})", queue="{queue}", timeout={timeout})
def process_batch(
    task: TaskInstance, item_id: int, mode: str = "fast", tags: list[str] = []
) -> dict[str, Any]:
    task.log(f"processing {{item_id}} in {{mode}} mode")
    task.set_status("progress", 50)
    return {{"item": item_id, "mode": mode, "tags": tags}}


@task("Export records ({i})", queue="export")
def export_records(
    task: TaskInstance,
    since: Optional[datetime.date] = None,
    fmt: Literal["csv", "json"] = "csv",
    limits: dict[str, list[int]] = {{"a": [1, 2]}},
) -> dict[str, Any]:
    rows = _weigh([1, 2, 3])
    return {{"rows": rows, "fmt": fmt, "since": str(since), "limits": limits}}


@task("Notify users ({i})", queue="email", timeout=300)
def notify(task: TaskInstance, user_ids: list[int], message: str, urgent: bool = False) -> int:
    for user_id in user_ids:
        task.log(f"notify {{user_id}}: {{message}} (urgent: {{urgent}})")
    return len(user_ids)


@task("Nightly maintenance ({i})")
@schedule("{minute} {hour} * * *")
def nightly(task: TaskInstance, dry_run: bool = False, ratio: float = 0.5) -> None:
    report = _Report("nightly")
    task.log(report.render())
    if not dry_run:
        task.set_status("ratio", ratio)
'''


def write_app(root: Path, count: int) -> list[Path]:
    """The synthetic app: rsx.toml and `count` services in folders of GROUP_SIZE."""
    (root / "rsx.toml").write_text(CONFIG)
    files = []
    for i in range(count):
        folder = root / "services" / f"group_{i // GROUP_SIZE:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"service_{i:04d}.py"
        path.write_text(
            MODULE.format(
                i=i,
                retries=i % 5 + 1,
                queue=("video", "default", "export")[i % 3],
                timeout=600 + i,
                minute=i % 60,
                hour=i % 24,
            )
        )
        files.append(path)
    return files


def _parse(source: bytes) -> int:
    import libcst

    return len(libcst.parse_module(source).body)


def parse_only(services: Path) -> None:
    """Read every service file and parse it with libcst, as the build's scans would."""
    from rsxgen.build import parallel_map

    files = sorted(p for p in services.rglob("*.py") if p.name != "__init__.py")
    parallel_map(_parse, [p.read_bytes() for p in files])


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    # Bytecode caching on, as in an installed project (this sandbox may disable it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stderr}")
    return elapsed, result.stdout.strip()


def _reported_seconds(summary: str) -> float:
    """The build's own time, from the end of its summary line."""
    match = SUMMARY_TIME.search(summary)
    if match is None:
        sys.exit(f"bench: unexpected summary line: {summary!r}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="number of service modules")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each cold measure (best)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary app")
    parser.add_argument("--parse-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_only:
        parse_only(Path(args.parse_only))
        return

    root = Path(tempfile.mkdtemp(prefix="rsxgen-bench-"))
    try:
        files = write_app(root, args.n)
        lines = sum(len(p.read_text().splitlines()) for p in files) / len(files)
        python = sys.executable
        build = [python, "-m", "rsxgen", "build"]
        parse = [python, str(Path(__file__).resolve()), "--parse-only", str(root / "services")]

        parse_times, cold_times = [], []
        summary = ""
        for _ in range(args.repeat):
            parse_times.append(_timed(parse, root)[0])
            shutil.rmtree(root / "storage", ignore_errors=True)
            shutil.rmtree(root / "generated", ignore_errors=True)
            elapsed, summary = _timed(build, root)
            cold_times.append(elapsed)
        warm = [_timed(build, root) for _ in range(3)]
        no_change = min(elapsed for elapsed, _ in warm)
        inside = min(_reported_seconds(out) for _, out in warm)
        libcst_import = min(_timed([python, "-c", "import libcst"], root)[0] for _ in range(3))
        parse_s, cold_s = min(parse_times), min(cold_times)
        ratio = cold_s / parse_s
        workers = min(os.cpu_count() or 1, 8)

        print(f"rsxgen build benchmark: {args.n} services, {lines:.0f} lines each, {workers} CPUs")
        print(f"  last cold build said: {summary}")
        print(f"  {'measure':<28}{'seconds':>9}{'× parse':>10}   target")
        print(f"  {'parse only (libcst)':<28}{parse_s:>9.2f}{1.0:>10.2f}")
        verdict = "ok" if ratio <= COLD_RATIO_TARGET else "MISSED"
        print(
            f"  {'cold build (no cache)':<28}{cold_s:>9.2f}{ratio:>10.2f}"
            f"   ≤ {COLD_RATIO_TARGET:.1f} × parse  {verdict}"
        )
        verdict = "n/a" if args.n != 1000 else "ok" if no_change <= NO_CHANGE_TARGET else "MISSED"
        print(
            f"  {'no-change rebuild':<28}{no_change:>9.2f}{no_change / parse_s:>10.2f}"
            f"   ≤ {NO_CHANGE_TARGET:.1f} s at N=1000  {verdict}"
        )
        print(f"  {'  of which build() itself':<28}{inside:>9.2f}")
        print(f"  {'import libcst alone':<28}{libcst_import:>9.2f}")
        print(
            "  (wall-clock of fresh processes, interpreter start included; best of "
            f"{args.repeat} for parse and cold, of 3 for no-change)"
        )
    finally:
        if args.keep:
            print(f"  app kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

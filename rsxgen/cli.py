"""The `rsxgen` command line: `rsxgen build [--config PATH] [--check]`.

Exit status: 0 success, 1 errors in the services or the config (printed as
diagnostics), 2 usage errors, a config file or services folder not found, or an output
folder that cannot be written. Every failure is one line per problem, never a traceback
(set `RSXGEN_DEBUG=1` to let an unexpected error raise).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from rsxgen import __version__
from rsxgen.diagnostics import Diagnostic, render_all
from runtime.cli import fail
from runtime.config import find_config, parse_config
from runtime.errors import ConfigError

PROG = "rsxgen"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = _parser().parse_args(argv)
    # A build allocates many small acyclic objects (scans, manifest): collect cycles
    # rarely, as mypy does, instead of every 700 allocations.
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 30, 30)
    try:
        return _build(args.config, check=args.check)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("RSXGEN_DEBUG"):
            raise
        detail = f"{type(exc).__name__}: {exc}"
        fail(PROG, f"internal error: {detail} (RSXGEN_DEBUG=1 shows the traceback)")
        return 2
    finally:
        gc.set_threshold(*thresholds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Compile rsx task services into a typed, generated package."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    build = commands.add_parser(
        "build",
        help="scan the services and write the generated package",
        description="Scan the services statically, validate them and write the output package.",
    )
    build.add_argument(
        "--config", metavar="PATH", help="rsx.toml or pyproject.toml (default: found upward)"
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming the files a build would change",
    )
    return parser


def _build(config_arg: str | None, *, check: bool) -> int:
    # Imported here so that `rsxgen --help` does not load the scanner.
    from rsxgen.build import BuildError, build
    from rsxgen.writer import OutputError

    try:
        config_path = find_config(explicit=config_arg)
    except ConfigError as exc:
        fail(PROG, exc.message)
        return 2
    try:
        config = parse_config(config_path)
    except ConfigError as exc:
        if exc.missing:
            fail(PROG, exc.message)
            return 2
        where = Diagnostic(exc.path or config_path.name, exc.line or 1, 1, "RSX015", exc.message)
        sys.stderr.write(where.render() + "\n")
        return 1
    try:
        outcome = build(config, check=check)
    except (BuildError, OutputError) as exc:
        fail(PROG, str(exc))
        return 2

    if outcome.diagnostics:
        sys.stderr.write(render_all(outcome.diagnostics))
        return 1
    summary, plan = outcome.summary, outcome.plan
    assert summary is not None
    if check:
        if plan.up_to_date:
            print(f"{outcome.output} is up to date")
            return 0
        for name in plan.missing:
            sys.stderr.write(f"{outcome.output}{name}: missing\n")
        for name in plan.changed:
            sys.stderr.write(f"{outcome.output}{name}: out of date\n")
        for name in plan.stale:
            sys.stderr.write(f"{outcome.output}{name}: stale (no longer generated)\n")
        fail(PROG, f"{outcome.output} is out of date; run: {_rerun(config_arg)}")
        return 1
    print(
        f"built {_count(summary.tasks, 'task')} in {_count(summary.services, 'service')} "
        f"({summary.scheduled} scheduled) → {outcome.output} in {outcome.seconds:.2f} s"
    )
    return 0


def _rerun(config_arg: str | None) -> str:
    return "rsxgen build" + (f" --config {config_arg}" if config_arg else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"

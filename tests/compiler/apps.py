"""Helpers of the compiler tests: copy a fixture app, run the real `rsxgen` CLI, read output,
read mypy's verdict on it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import runtime

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
GOOD_FIXTURES = ("awkward", "demo", "minimal", "nested", "typed")
BIN = Path(sys.executable).parent


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """Copy `fixtures/<name>` to `tmp_path/fixtures/<name>` and return its rsx.toml.

    The demo's output is `../../generated`, which in the copy is `tmp_path/generated`.
    """
    target = tmp_path / "fixtures" / name
    shutil.copytree(
        FIXTURES / name, target, ignore=shutil.ignore_patterns("storage", "__pycache__")
    )
    return target / "rsx.toml"


def rsxgen(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m rsxgen ARGS` in a real process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("RSX_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "rsxgen", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (relative posix path → bytes), skipping caches."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def built_registry(name: str, tmp_path: Path) -> Mapping[tuple[str, str], Any]:
    """Build a copy of `fixtures/<name>` in this process and import its `registry.py`.

    The module gets a name of its own, so several built apps (and the repository's
    `generated/`) can be imported side by side. Returns its `TASKS` table.
    """
    from rsxgen.build import build
    from runtime.config import parse_config

    config = parse_config(copy_fixture(name, tmp_path))
    outcome = build(config)
    assert not outcome.diagnostics, outcome.diagnostics
    module_name = f"_built_{name}_registry_{len(sys.modules)}"
    spec = importlib.util.spec_from_file_location(module_name, config.output / "registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.TASKS


def mypy_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """mypy's error lines, but those about `runtime.Task.cancel` while the runtime has none:
    the generated client's `cancel` calls it, and the runtime's side of cancellation adds it.
    """
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    if hasattr(runtime.Task, "cancel"):
        return errors
    missing = ('"type[Task]" has no attribute "cancel"', 'declared to return "bool"')
    return [line for line in errors if not any(text in line for text in missing)]

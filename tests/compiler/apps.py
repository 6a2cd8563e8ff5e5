"""Helpers of the compiler tests: copy a fixture app, run the real `rsxgen` CLI, read output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
GOOD_FIXTURES = ("demo", "minimal", "nested")
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

"""The project's own code stays clean: ruff over the tree, mypy --strict over both packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.mypy
def test_mypy_strict_accepts_rsxgen_and_runtime() -> None:
    result = _run("mypy", "--strict", "rsxgen", "runtime")
    assert result.returncode == 0, result.stdout + result.stderr

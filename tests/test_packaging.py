"""A normal (non-editable) install gives the `rsxgen` command and typed `runtime` to mypy.

The rest of the suite runs against the editable install of `.ci/run`; this test builds the
wheel a user would get from `pip install .`, installs it into a fresh virtual environment
and uses it from an app folder outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.compiler.apps import mypy_errors

REPO = Path(__file__).resolve().parent.parent

USER_CODE = """\
from generated import tasks
from runtime import Task, TaskInstance, TaskStatus

task_id: int = tasks.hello.greet.dispatch(name="rsx")
state: TaskStatus = Task.status(task_id)
progress: object = state.get("progress", 0)


def handler(task: TaskInstance) -> None:
    task.log("ok")
"""

WRONG_CODE = """\
from runtime import Task

Task.dispatch("hello", "greet", params=1)
"""


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPO, cwd=out
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("rsxgen-*.whl")
    return path


def test_the_wheel_holds_both_packages_their_markers_and_templates_only(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "runtime/__init__.py",
        "runtime/py.typed",
        "runtime/cleanup_service.py",
        "runtime/migrations/env.py",
        "runtime/migrations/versions/0002_native_types.py",
        "rsxgen/py.typed",
        "rsxgen/templates/tasks.py.j2",
        "rsxgen/templates/registry.py.j2",
    ):
        assert required in names
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"rsxgen", "runtime"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "rsxgen = rsxgen.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.mypy
def test_a_normal_install_builds_an_app_and_mypy_sees_runtime_types(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    app = tmp_path / "app"
    shutil.copytree(REPO / "fixtures" / "minimal", app, ignore=shutil.ignore_patterns("storage"))
    built = _run(venv / "bin" / "rsxgen", "build", cwd=app)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("built 3 tasks in 2 services")

    where = _run(python, "-c", "import runtime; print(runtime.__file__)", cwd=app)
    assert str(venv) in where.stdout, "the app must use the installed runtime, not the repo's"

    (app / "good.py").write_text(USER_CODE)
    (app / "wrong.py").write_text(WRONG_CODE)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", python]
    good = _run(*mypy, "good.py", cwd=app)
    assert mypy_errors(good) == [], good.stdout + good.stderr
    wrong = _run(*mypy, "wrong.py", cwd=app)
    assert wrong.returncode == 1
    assert 'Argument "params" to "dispatch" of "Task"' in wrong.stdout

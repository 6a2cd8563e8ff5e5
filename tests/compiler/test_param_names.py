"""Parameter names that used to build a package that does not import.

A parameter called `datetime`, `typing`, `int` ... hides that name in the pydantic class
body; registry.py now spells such names through module aliases. Names pydantic itself
refuses (`model_config`, `model_dump`, BaseModel's attributes, a leading underscore) are
RSX016 at the parameter. Names Python reads as one (`ﬁnd`, `find`) are one name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rsxgen.build import build
from rsxgen.diagnostics import render_all
from rsxgen.names import reserved_param
from runtime.config import parse_config
from runtime.validation import validate
from tests.compiler.apps import copy_fixture, mypy_errors, rsxgen

SERVICE = """\
import datetime
import typing

from runtime import TaskInstance, task


@task("One awkward name")
def awkward(task: TaskInstance, {params}) -> None: ...
"""

BUILDS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # case: (parameters after the TaskInstance, params given, the validated values)
    "datetime": (
        "datetime: datetime.date, when: datetime.datetime | None = None",
        {"datetime": "2024-02-29"},
        {"datetime": date(2024, 2, 29), "when": None},
    ),
    "typing": (
        "typing: typing.Literal['a', 'b'] = 'a', x: typing.Any = None",
        {"typing": "b", "x": [1]},
        {"typing": "b", "x": [1]},
    ),
    "int": ("int: int, other: int = 2", {"int": "5"}, {"int": 5, "other": 2}),
    "str": ("str: str, other: str = 'y'", {"str": "s"}, {"str": "s", "other": "y"}),
    "float": ("float: float = 1.5, other: float = 2.5", {"float": 3}, {"float": 3.0, "other": 2.5}),
    "bool": (
        "bool: bool = False, other: bool = True",
        {"bool": "yes"},
        {"bool": True, "other": True},
    ),
    "list": (
        "list: list[int], other: list[str] | None = None",
        {"list": [1, "2"]},
        {"list": [1, 2], "other": None},
    ),
    "pydantic": ("pydantic: int = 0", {"pydantic": 1}, {"pydantic": 1}),
    "TaskEntry": ("TaskEntry: str = ''", {"TaskEntry": "x"}, {"TaskEntry": "x"}),
    "runtime": ("runtime: str = ''", {"runtime": "x"}, {"runtime": "x"}),
    "self": ("self: int = 0", {"self": 1}, {"self": 1}),
    "fi-ligature": ("ﬁnd: str = 'x'", {"find": "y"}, {"find": "y"}),
    "model": (
        "model: str, schema_version: int = 1",
        {"model": "m"},
        {"model": "m", "schema_version": 1},
    ),
}

REFUSED = [
    "model_config",
    "model_dump",
    "model_validate",
    "model_fields",
    "model_id",
    "copy",
    "dict",
    "json",
    "schema",
    "validate",
    "construct",
    "_runtime",
    "_private",
    "__dict__",
    "delay",
    "run_at",
]


def _build(tmp_path: Path, params: str) -> tuple[Any, str]:
    """Build a one-task app; its registry module (imported, warnings as errors) or None,
    and the diagnostics a build prints."""
    app = tmp_path / "app"
    (app / "services").mkdir(parents=True)
    (app / "rsx.toml").write_text("[tasks]\n", encoding="utf-8")
    (app / "services" / "odd.py").write_text(SERVICE.format(params=params), encoding="utf-8")
    config = parse_config(app / "rsx.toml")
    outcome = build(config)
    if outcome.diagnostics:
        return None, render_all(outcome.diagnostics)
    name = f"_odd_registry_{len(sys.modules)}"
    spec = importlib.util.spec_from_file_location(name, config.output / "registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.loader.exec_module(module)
    return module, ""


@pytest.mark.parametrize(("params", "given", "expected"), list(BUILDS.values()), ids=list(BUILDS))
def test_a_parameter_named_like_a_name_of_the_generated_code_builds_imports_and_validates(
    tmp_path: Path, params: str, given: dict[str, Any], expected: dict[str, Any]
) -> None:
    registry, printed = _build(tmp_path, params)
    assert registry is not None, printed
    model = validate(registry.TASKS[("odd", "awkward")], given)
    assert dict(model) == expected


@pytest.mark.parametrize("name", REFUSED)
def test_a_parameter_name_pydantic_refuses_is_rsx016_at_the_parameter(
    tmp_path: Path, name: str
) -> None:
    registry, printed = _build(tmp_path, f"{name}: int = 0")
    assert registry is None
    column = SERVICE.splitlines()[-1].index("{params}") + 1
    assert printed.startswith(f"services/odd.py:8:{column}: error[RSX016]: parameter '{name}' ")
    assert printed.count("\n") == 1


def test_the_awkward_fixture_imports_in_a_fresh_process_and_its_client_forwards_every_value(
    tmp_path: Path,
) -> None:
    config = copy_fixture("awkward", tmp_path)
    result = rsxgen("build", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = textwrap.dedent(
        """\
        import datetime, json, warnings
        warnings.simplefilter("error")
        import runtime
        import generated.registry as registry, generated.schedule, generated.tasks as tasks
        from runtime.validation import validate

        sent = []
        class Recorder:
            @staticmethod
            def dispatch(service, task, params, delay, run_at):
                sent.append(dict(validate(registry.TASKS[(service, task)], params)))
                return len(sent)

        runtime.Task = Recorder
        tasks.awkward.modules.dispatch(datetime=datetime.date(2024, 2, 29), typing="b")
        tasks.awkward.builtin_names.dispatch(int=1, list=[1, 2], labels={"a": ["b"]})
        tasks.awkward.generated_names.dispatch(pydantic=1, TaskEntry="t", runtime="r", self=2)
        tasks.awkward.search.dispatch(ﬁnd="y")
        print(json.dumps(sent, default=str))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(config.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent[0] == {"datetime": "2024-02-29", "when": None, "typing": "b", "extra": None}
    assert sent[1] == {
        "int": 1,
        "str": "s",
        "float": 1.5,
        "bool": True,
        "list": [1, 2],
        "labels": {"a": ["b"]},
    }
    assert sent[2]["TaskEntry"] == "t" and sent[2]["self"] == 2
    assert sent[3] == {"find": "y"}


@pytest.mark.mypy
def test_mypy_strict_accepts_the_awkward_package_and_its_callers(tmp_path: Path) -> None:
    config = copy_fixture("awkward", tmp_path)
    assert rsxgen("build", "--config", str(config), cwd=tmp_path).returncode == 0
    (config.parent / "caller.py").write_text(
        "import datetime\n\nfrom generated import tasks\n\n"
        "tasks.awkward.modules.dispatch(datetime=datetime.date(2020, 1, 2), typing='b')\n"
        "tasks.awkward.builtin_names.dispatch(int=1, list=[1, 2], labels={'a': ['b']})\n"
        "tasks.awkward.search.dispatch(find='y')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "generated", "caller.py"],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert mypy_errors(result) == [], result.stdout + result.stderr


def test_tasks_whose_names_python_reads_as_one_are_rsx013(tmp_path: Path) -> None:
    app = copy_fixture("minimal", tmp_path).parent
    (app / "services" / "hello.py").write_text(
        "from runtime import TaskInstance, task\n\n\n"
        '@task("a")\ndef ﬁnd(task: TaskInstance) -> None: ...\n\n\n'
        '@task("b")\ndef find(task: TaskInstance) -> None: ...\n',
        encoding="utf-8",
    )
    result = rsxgen("build", cwd=app)
    assert result.returncode == 1
    assert result.stderr == (
        "services/hello.py:9:5: error[RSX013]: task 'find' is already defined at line 5 of "
        "this file (find and ﬁnd are one name to Python)\n"
    )


def test_the_reserved_names_cover_every_public_attribute_of_the_installed_base_model() -> None:
    """The build does not import pydantic, so its list is written out; this notices drift."""
    import pydantic

    public = {name for name in dir(pydantic.BaseModel) if not name.startswith("_")}
    assert {name for name in public if reserved_param(name) is None} == set()

"""The scanner and validator: the diagnostics of every bad fixture, and the rules one by one.

Each `fixtures/bad/<case>/` app is scanned file by file with `scan_file` and validated
with its rsx.toml; the rendered diagnostics (what `rsxgen build` prints) are snapshots in
`__snapshots__/test_scanner/`. Update them with `pytest tests/compiler/test_scanner.py
--snapshot-update` and review the diff.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import libcst as cst
import pytest
from croniter import croniter  # type: ignore[import-untyped]
from libcst.metadata import MetadataWrapper, QualifiedNameProvider
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

import runtime
from rsxgen.diagnostics import render_all
from rsxgen.manifest import Manifest
from rsxgen.scanner import FileScan, positions, scan_file
from rsxgen.scanner.cron import CronError, check_cron
from rsxgen.scanner.decorators import SCHEDULE, TASK
from rsxgen.scanner.exceptions import BUILTIN_EXCEPTIONS
from rsxgen.scanner.facts import TaskOptions
from rsxgen.scanner.names import RUNTIME_ERRORS, RUNTIME_EXPORTS, ModuleNames
from rsxgen.validate import config_diagnostic, validate
from runtime.config import parse_config
from runtime.errors import ConfigError
from runtime.limits import DEFAULT_RETRY_BACKOFF_SECONDS

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "fixtures" / "bad"
BAD_CASES = sorted(path.name for path in BAD.iterdir() if path.is_dir())
GOOD_CASES = ("awkward", "demo", "minimal", "nested", "typed")
BUILTIN = REPO / "runtime" / "cleanup_service.py"


class TextSnapshot(SingleFileSnapshotExtension):
    """One readable `.txt` file per snapshot."""

    _write_mode = WriteMode.TEXT
    file_extension = "txt"


@pytest.fixture
def text_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(TextSnapshot)


def scan_services(app: Path, services: Path) -> list[FileScan]:
    """Scan every `.py` below the services folder except `__init__.py`, then the built-in."""
    scans = []
    for file in sorted(services.rglob("*.py")):
        if file.name == "__init__.py":
            continue
        dotted = ".".join(file.relative_to(services).with_suffix("").parts)
        path = file.relative_to(app).as_posix()
        scans.append(scan_file(file.read_bytes(), path, dotted, f"{services.name}.{dotted}"))
    scans.append(
        scan_file(
            BUILTIN.read_bytes(),
            "runtime/cleanup_service.py",
            "cleanup_service",
            "runtime.cleanup_service",
        )
    )
    return scans


def check_app(app: Path) -> tuple[Manifest | None, str]:
    """What a build of the app decides: its manifest, or its rendered diagnostics."""
    try:
        config = parse_config(app / "rsx.toml")
    except ConfigError as error:
        return None, render_all([config_diagnostic(error)])
    manifest, diagnostics = validate(scan_services(app, config.services), config, "services")
    return manifest, render_all(diagnostics)


def scan_text(text: str, path: str = "services/example.py") -> FileScan:
    return scan_file(textwrap.dedent(text).encode(), path, "example", "services.example")


def codes(scan: FileScan) -> list[str]:
    return [d.code for d in scan.diagnostics]


# Bad fixtures: snapshots of what the user sees.


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_fixture_diagnostics(case: str, text_snapshot: SnapshotAssertion) -> None:
    manifest, rendered = check_app(BAD / case)
    assert manifest is None
    assert rendered == text_snapshot


@pytest.mark.parametrize("case", [c for c in BAD_CASES if c.startswith("rsx")])
def test_each_bad_fixture_shows_its_code(case: str) -> None:
    _, rendered = check_app(BAD / case)
    code = case.split("_")[0].upper()
    assert f"error[{code}]" in rendered


def test_diagnostics_are_sorted_and_span_every_broken_file() -> None:
    _, rendered = check_app(BAD / "many")
    lines = rendered.splitlines()
    keys = [
        (line.split(":")[0], int(line.split(":")[1]), int(line.split(":")[2])) for line in lines
    ]
    assert keys == sorted(keys)
    files = {key[0] for key in keys}
    assert files == {
        "services/alpha.py",
        "services/billing/invoice.py",
        "services/broken.py",
        "services/zeta.py",
    }
    assert sum(1 for line in lines if line.startswith("services/alpha.py")) == 7


@pytest.mark.parametrize("case", GOOD_CASES)
def test_good_fixtures_have_no_diagnostics(case: str) -> None:
    manifest, rendered = check_app(REPO / "fixtures" / case)
    assert rendered == ""
    assert manifest is not None


# Positions: read from `ast`, and equal to libcst's PositionProvider.


@pytest.mark.parametrize("case", [*BAD_CASES, *GOOD_CASES])
def test_positions_agree_with_libcst_position_provider(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = BAD / case if (BAD / case).is_dir() else REPO / "fixtures" / case
    services = app / "services"
    fast = scan_services(app, services)
    monkeypatch.setattr(positions, "_same_kind", lambda pair: False)
    exact = scan_services(app, services)
    assert fast == exact


def test_positions_count_characters_not_bytes() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, task

        @task("Résumé — é", queue="vidéo")
        def résumé(task: TaskInstance) -> None: ...
        """
    )
    (facts,) = scan.tasks
    assert facts.queue_at == (3, 27)
    assert facts.at == (4, 5)


def test_positions_of_decorator_arguments_parameters_and_defaults() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, schedule, task

        @task("", timeout=-5)
        @schedule(  "0 24 * * *")
        def job(
            task: TaskInstance,
            a,
            b: int = (1 + 2),
        ) -> None: ...

        @task
        async def other(task: TaskInstance) -> None: ...
        """
    )
    found = {(d.code, d.line, d.col) for d in scan.diagnostics}
    assert found == {
        ("RSX003", 3, 7),  # the description's value
        ("RSX004", 3, 19),  # the timeout's value: the minus sign
        ("RSX005", 4, 13),  # the cron string
        ("RSX008", 7, 5),  # the parameter
        ("RSX011", 7, 5),
        ("RSX010", 8, 15),  # the default's expression, inside the parentheses
        ("RSX003", 11, 1),  # a bare @task: the decorator
        ("RSX012", 12, 11),  # the function's name
    }


# Which decorators are ours: resolved through the imports.


@pytest.mark.parametrize(
    "header, decorator",
    [
        ("from runtime import task", "@task"),
        ("from runtime import task as t", "@t"),
        ("import runtime", "@runtime.task"),
        ("import runtime as rt", "@rt.task"),
        ("import runtime.instance", "@runtime.task"),
        ("from runtime.decorators import task", "@task"),
        ("from runtime import *", "@task"),
        ("def task(d):\n    return lambda f: f\nfrom runtime import task", "@task"),
    ],
)
def test_runtime_task_is_recognised_through_imports(header: str, decorator: str) -> None:
    scan = scan_text(
        f"{header}\nfrom runtime import TaskInstance\n\n"
        f"{decorator}('Job')\ndef job(task: TaskInstance) -> None: ...\n"
    )
    assert [t.name for t in scan.tasks] == ["job"]
    assert scan.diagnostics == ()


@pytest.mark.parametrize(
    "source",
    [
        # Celery's app.task only shares the name.
        "from celery import Celery\napp = Celery()\n\n@app.task\ndef job(x): ...\n",
        # A local function named task, even after importing runtime's.
        "from runtime import task\n\ndef task(d):\n    return lambda f: f\n\n"
        "@task('Job')\ndef job(x): ...\n",
        # A local function named task, runtime imported for something else.
        "import runtime\n\ndef task(d):\n    return lambda f: f\n\n@task(1)\ndef job(x): ...\n",
        # Used before it is imported: a NameError at import time, not a task.
        "@task('Job')\ndef job(x): ...\n\nfrom runtime import task\n",
        # Another package's task.
        "from runtime_extras import task\n\n@task('Job')\ndef job(x): ...\n",
    ],
)
def test_lookalike_decorators_are_not_ours(source: str) -> None:
    scan = scan_text(source)
    assert scan.tasks == ()
    assert scan.diagnostics == ()


@pytest.mark.parametrize("case", [*BAD_CASES, *GOOD_CASES])
def test_decorators_resolve_as_libcst_qualified_names_do(case: str) -> None:
    """Where libcst's QualifiedNameProvider finds one name, the scanner agrees on ours or not."""
    app = BAD / case if (BAD / case).is_dir() else REPO / "fixtures" / case
    ours = TASK | SCHEDULE
    compared = 0
    for file in sorted((app / "services").rglob("*.py")):
        try:
            module = cst.parse_module(file.read_bytes())
        except (cst.ParserSyntaxError, UnicodeDecodeError):
            continue
        provider = MetadataWrapper(module, unsafe_skip_copy=True).resolve(QualifiedNameProvider)
        names = ModuleNames.of(module)
        for top, statement in enumerate(module.body):
            if not isinstance(statement, cst.FunctionDef):
                continue
            for decorator in statement.decorators:
                expr = decorator.decorator
                target = expr.func if isinstance(expr, cst.Call) else expr
                found = provider.get(target, set())
                found = found() if callable(found) else found
                if len(found) > 1:
                    continue
                expected = {q.name for q in found} <= ours and bool(found)
                assert (names.qualified(target, top) in ours) == expected, cst.Module(
                    []
                ).code_for_node(decorator)
                compared += 1
    assert compared > 0 or case.startswith("rsx014") or case.startswith("rsx015")


def test_star_import_binds_what_runtime_exports() -> None:
    assert sorted(RUNTIME_EXPORTS) == sorted(runtime.__all__)


@pytest.mark.parametrize(
    "annotation",
    ["TaskInstance", "runtime.TaskInstance", "'TaskInstance'", "'rt.instance.TaskInstance'"],
)
def test_task_instance_annotation_spellings(annotation: str) -> None:
    scan = scan_text(
        f"""\
        import runtime
        import runtime as rt
        from runtime import TaskInstance, task

        @task("Job")
        def job(task: {annotation}) -> None: ...
        """
    )
    assert scan.diagnostics == ()


def test_nested_function_shadowing_is_scoped() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, task

        def factory():
            def task(description):
                return lambda fn: fn

            @task("not ours: the local task")
            def inner(x): ...

        class Jobs:
            task = staticmethod(lambda d: (lambda fn: fn))

            @task("not ours: the class attribute")
            def method(self): ...
        """
    )
    assert scan.diagnostics == ()


# Parameter types and defaults.


@pytest.mark.parametrize(
    "annotation, spelling",
    [
        ("str", "str"),
        ("int", "int"),
        ("float", "float"),
        ("bool", "bool"),
        ("None", "None"),
        ("list[int]", "list[int]"),
        ("List[int]", "list[int]"),
        ("list", "list[typing.Any]"),
        ("Dict[str, list[float]]", "dict[str, list[float]]"),
        ("dict", "dict[str, typing.Any]"),
        ("int | None", "int | None"),
        ("None | int", "int | None"),
        ("Optional[str]", "str | None"),
        ("typing.Optional[list[str]]", "list[str] | None"),
        ("Union[None, int]", "int | None"),
        ("Optional[int] | None", "int | None"),
        ("Literal['a', 'b']", "typing.Literal['a', 'b']"),
        ('typing.Literal[1, -2, True, None, "x"]', "typing.Literal[1, -2, True, 'x'] | None"),
        ("Literal[None]", "None"),
        ("Literal['a', None] | None", "typing.Literal['a'] | None"),
        ("datetime.datetime", "datetime.datetime"),
        ("date", "datetime.date"),
        ("dt.date | None", "datetime.date | None"),
        ("Any", "typing.Any"),
        ("'list[int]'", "list[int]"),
        ("dict[str, 'Optional[int]']", "dict[str, int | None]"),
    ],
)
def test_canonical_type_spellings(annotation: str, spelling: str) -> None:
    scan = scan_text(
        f"""\
        import datetime
        import datetime as dt
        import typing
        from datetime import date
        from typing import Any, Dict, List, Literal, Optional, Union

        from runtime import TaskInstance, task

        @task("Job")
        def job(task: TaskInstance, value: {annotation}) -> None: ...
        """
    )
    assert scan.diagnostics == ()
    (facts,) = scan.tasks
    assert facts.params[0].type == spelling


@pytest.mark.parametrize(
    "annotation, default, source, value",
    [
        ("int", "-5", "-5", -5),
        ("int", "1_000", "1000", 1000),
        ("int", "0x10", "16", 16),
        ("float", "1", "1", 1),
        ("float", "-0.5", "-0.5", -0.5),
        ("str", '"high"', "'high'", "high"),
        ("str", "'a' 'b'", "'ab'", "ab"),
        ("bool", "True", "True", True),
        ("str | None", "None", "None", None),
        ("list[int]", "[1, 2]", "[1, 2]", [1, 2]),
        ("list[str]", "[]", "[]", []),
        ("dict[str, list[int]]", '{"a": [1, 2]}', "{'a': [1, 2]}", {"a": [1, 2]}),
        ("typing.Any", "(1, 'x')", "(1, 'x')", [1, "x"]),
        ("typing.Literal['csv', 'json']", "'csv'", "'csv'", "csv"),
    ],
)
def test_literal_defaults(annotation: str, default: str, source: str, value: object) -> None:
    scan = scan_text(
        f"""\
        import typing
        from runtime import TaskInstance, task

        @task("Job")
        def job(task: TaskInstance, *, x: {annotation} = {default}) -> None: ...
        """
    )
    assert scan.diagnostics == ()
    (param,) = scan.tasks[0].params
    assert (param.default, param.default_value) == (source, value)
    assert not param.required


def test_required_parameters_have_no_default() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, task

        @task("Job")
        def job(task: TaskInstance, video_id: int, *, mode: str) -> None: ...
        """
    )
    params = scan.tasks[0].params
    assert [(p.name, p.type, p.required) for p in params] == [
        ("video_id", "int", True),
        ("mode", "str", True),
    ]


def test_infinite_float_default_has_no_json_form() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, task

        @task("Job")
        def job(task: TaskInstance, x: float = 1e999) -> None: ...
        """
    )
    assert [(d.code, d.line, d.col) for d in scan.diagnostics] == [("RSX010", 4, 40)]


# Task facts, scheduling and the file-level cases.


def test_task_facts_as_written() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, schedule, task

        @task("Transcode", queue="video", timeout=7200)
        def transcode(task: TaskInstance, video_id: int) -> None: ...

        @schedule("0 3 * * 7")
        @task("Nightly")
        def nightly(task: TaskInstance, dry_run: bool = False) -> None: ...

        def helper() -> None: ...
        """
    )
    assert scan.diagnostics == ()
    transcode, nightly = scan.tasks
    assert (transcode.name, transcode.description, transcode.queue, transcode.timeout) == (
        "transcode",
        "Transcode",
        "video",
        7200,
    )
    assert (transcode.at, transcode.queue_at, transcode.scheduled) == ((4, 5), (3, 26), False)
    assert nightly.cron_at == (6, 11)
    assert (nightly.queue, nightly.timeout, nightly.cron, nightly.scheduled) == (
        None,
        None,
        "0 3 * * 7",
        True,
    )


# Task options and results: retries, uniqueness, delay, return types.


def test_task_options_and_result_as_the_runtime_takes_them() -> None:
    scan = scan_text(
        """\
        import datetime

        from runtime import TaskInstance, schedule, task

        class Busy(ConnectionError): ...

        @task("All of them", retries=3, retry_backoff=2.5, retry_on=(Busy, TimeoutError, Busy),
              unique_key=("quality", "video_id"), unique_while="active", delay=30)
        def transcode(task: TaskInstance, video_id: int, quality: str = "high") -> list[int]: ...

        @task("Every parameter is the key", unique=True, retries=1, retry_on=KeyError)
        def again(task: TaskInstance, b: int, a: int) -> "datetime.date | None": ...

        @task("None of them")
        @schedule("0 * * * *")
        def plain(task: TaskInstance):
            return 1
        """
    )
    assert scan.diagnostics == ()
    transcode, again, plain = scan.tasks
    assert transcode.result == "list[int]"
    assert transcode.options == TaskOptions(
        retries=3,
        retry_backoff=2.5,
        retry_on=("services.example.Busy", "builtins.TimeoutError"),
        unique=("quality", "video_id"),
        unique_while="active",
        delay=30.0,
    )
    assert again.result == "datetime.date | None"
    assert (again.options.unique, again.options.retry_on) == (("b", "a"), ("builtins.KeyError",))
    assert again.options.retry_backoff == DEFAULT_RETRY_BACKOFF_SECONDS
    assert (plain.result, plain.options) == ("typing.Any", TaskOptions())


@pytest.mark.parametrize(
    ("header", "named", "qualified"),
    [
        ("from requests.exceptions import Timeout", "Timeout", "requests.exceptions.Timeout"),
        ("import requests", "requests.exceptions.Timeout", "requests.exceptions.Timeout"),
        ("import requests.exceptions as rex", "rex.Timeout", "requests.exceptions.Timeout"),
        ("from . import errors", "errors.Busy", "services.errors.Busy"),
        ("from .errors import Busy as B", "B", "services.errors.Busy"),
        ("from runtime import TaskError", "TaskError", "runtime.TaskError"),
        ("import runtime", "runtime.ParamsError", "runtime.ParamsError"),
        ("import builtins", "builtins.KeyError", "builtins.KeyError"),
        ("class E(OSError): ...\nclass F(E): ...", "F", "services.example.F"),
        ("from lib import Base\nclass E(Base, metaclass=M): ...", "E", "services.example.E"),
        ("class ValueError(Exception): ...", "ValueError", "services.example.ValueError"),
        ("import typing\nclass E(typing.Generic[T], KeyError): ...", "E", "services.example.E"),
    ],
)
def test_retry_on_names_resolve_to_qualified_exception_classes(
    header: str, named: str, qualified: str
) -> None:
    scan = _flaky(header, named)
    assert scan.diagnostics == ()
    assert scan.tasks[0].options.retry_on == (qualified,)


def _flaky(header: str, retry_on: str) -> FileScan:
    """The scan of a module of `header` lines and one task retrying on `retry_on`."""
    return scan_text(
        f"from runtime import TaskInstance, task\n{header}\n\n"
        f"@task('Flaky', retries=2, retry_on={retry_on})\n"
        "def flaky(task: TaskInstance) -> None: ...\n"
    )


@pytest.mark.parametrize(
    ("header", "named", "problem"),
    [
        ("", "len", "'len' is the builtin len, not an exception class"),
        ("", "Nope", "'Nope' is not defined before this task"),
        ("ValueError = 3", "ValueError", "'ValueError' is a variable, not an exception class"),
        ("class E: ...", "E", "class 'E' does not derive from an exception class"),
        ("class E(int): ...", "E", "class 'E' does not derive from an exception class"),
        ("class E(Exception):\n    class F(E): ...", "E.F", "'E.F' is an attribute of class 'E'"),
        ("try:\n    class E(Exception): ...\nexcept: pass", "E", "bound inside a block"),
        ("from .. import errors", "errors.Busy", "beyond the top-level package"),
        ("from runtime import TaskInstance as T", "T", "is runtime.TaskInstance, not an"),
        ("", "'ValueError'", "'ValueError' is a string; name the class itself"),
        ("", "None", "None is not an exception class"),
    ],
)
def test_retry_on_names_that_are_not_exception_classes_are_rsx019(
    header: str, named: str, problem: str
) -> None:
    (diagnostic,) = _flaky(header, f"[KeyError, {named}]").diagnostics
    assert diagnostic.code == "RSX019"
    assert (diagnostic.line, diagnostic.col) == (
        header.count("\n") + 4,
        len("@task('Flaky', retries=2, retry_on=[KeyError, ") + 1,
    )
    assert problem in diagnostic.message


def test_retry_on_names_are_what_is_bound_when_the_decorator_runs() -> None:
    scan = scan_text(
        """\
        from runtime import TaskInstance, task

        @task("Flaky", retries=2, retry_on=(Late, KeyError))
        def flaky(task: TaskInstance) -> None: ...

        class Late(Exception): ...
        class KeyError(Exception): ...
        """
    )
    assert [(d.code, d.line, d.col) for d in scan.diagnostics] == [("RSX019", 3, 37)]
    assert scan.tasks[0].options.retry_on == ("builtins.KeyError",)


def test_the_runtime_errors_the_scanner_knows_are_its_exception_classes() -> None:
    errors = {
        name
        for name in runtime.__all__
        if isinstance(getattr(runtime, name), type)
        and issubclass(getattr(runtime, name), BaseException)
    }
    assert errors == RUNTIME_ERRORS


def test_the_builtin_exceptions_are_python_311s() -> None:
    import builtins

    found = {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert BUILTIN_EXCEPTIONS <= found
    assert found - BUILTIN_EXCEPTIONS <= {"PythonFinalizationError", "_IncompleteInputError"}


@pytest.mark.parametrize(
    ("annotation", "spelling"),
    [
        ("", "typing.Any"),
        (" -> None", "None"),
        (" -> 'None'", "None"),
        (" -> dict", "dict[str, typing.Any]"),
        (" -> typing.Optional[typing.List[str]]", "list[str] | None"),
        (" -> typing.Literal['a', None]", "typing.Literal['a'] | None"),
    ],
)
def test_return_annotations_are_spelled_like_parameter_types(
    annotation: str, spelling: str
) -> None:
    scan = scan_text(
        "import typing\nfrom runtime import TaskInstance, task\n\n"
        f"@task('Typed')\ndef typed(task: TaskInstance){annotation}: ...\n"
    )
    assert scan.diagnostics == ()
    assert scan.tasks[0].result == spelling


def test_timeout_none_means_the_default() -> None:
    scan = scan_text(
        """\
        import runtime.decorators as d
        from runtime import TaskInstance

        @d.task("Job", timeout=None)
        def job(task: TaskInstance) -> None: ...
        """
    )
    assert scan.diagnostics == () and scan.tasks[0].timeout is None


def test_a_module_without_tasks_yields_none() -> None:
    assert scan_text("import os\n\ndef helper() -> int:\n    return 1\n").tasks == ()
    assert scan_text("from runtime import TaskInstance\n\nX = 1\n").tasks == ()


def test_syntax_errors_are_found_even_without_runtime() -> None:
    scan = scan_text("def broken(:\n    pass\n")
    assert [(d.code, d.line, d.col) for d in scan.diagnostics] == [("RSX014", 1, 12)]


def test_not_utf8_is_a_diagnostic_at_the_byte() -> None:
    scan = scan_file(b"x = 1\ny = '\xff'\n", "services/x.py", "x", "services.x")
    (diagnostic,) = scan.diagnostics
    assert (diagnostic.code, diagnostic.line, diagnostic.col) == ("RSX014", 2, 6)
    assert "UTF-8" in diagnostic.message


def test_null_byte_is_a_diagnostic() -> None:
    scan = scan_file(b"x = 1\ny = 2\0\n", "services/x.py", "x", "services.x")
    assert [(d.code, d.line, d.col) for d in scan.diagnostics] == [("RSX014", 2, 6)]


@pytest.mark.parametrize(
    "service", ["status", "cancel", "typing", "datetime", "_private", "status.sub"]
)
def test_service_names_the_client_needs_are_refused(service: str) -> None:
    source = b"from runtime import TaskInstance, task\n"
    path = f"services/{service.replace('.', '/')}.py"
    scan = scan_file(source, path, service, f"services.{service}")
    (diagnostic,) = scan.diagnostics
    assert (diagnostic.code, diagnostic.line, diagnostic.col) == ("RSX014", 1, 1)
    assert f"service name '{service.split('.')[0]}' is taken" in diagnostic.message


def test_a_utf8_bom_is_accepted() -> None:
    source = (
        b"\xef\xbb\xbffrom runtime import TaskInstance, task\n\n"
        b"@task('J')\ndef j(task: TaskInstance): ...\n"
    )
    scan = scan_file(source, "services/x.py", "x", "services.x")
    assert scan.diagnostics == () and scan.tasks[0].at == (4, 5)


@pytest.mark.parametrize("case", [*BAD_CASES, *GOOD_CASES])
def test_file_scan_round_trips_through_json_and_the_cache_check(case: str) -> None:
    """Every scan a fixture gives passes the check the build cache's entries get."""
    app = BAD / case if (BAD / case).is_dir() else REPO / "fixtures" / case
    for scan in scan_services(app, app / "services"):
        data = json.loads(json.dumps(scan.to_data()))
        assert FileScan.from_data(data, scan.path, scan.service, scan.module) == scan


# Cron expressions: what is accepted, croniter reads too.


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/15 * * * *",
        "0 */6 * * *",
        "0 9 * * 1-5",
        "30 2 1 * *",
        "0 0 * * 0",
        "0 0 * * 7",
        "0 0 * * 5-7",
        "0 0 * * sun,SAT",
        "0 0 1 jan-mar,dec *",
        "5/15 * * * *",
        "0 0 29 2 *",
        "0 0 31 2 1",
        "0-30/10 8-18/2 1,15 * mon-fri",
    ],
)
def test_accepted_cron_expressions_are_croniter_valid(expression: str) -> None:
    check_cron(expression)
    assert croniter.is_valid(expression)


@pytest.mark.parametrize(
    "expression, field",
    [
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * 32 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * 0 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * * mon-funday", "day-of-week"),
        ("1-60 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("* * * * * *", "5 fields"),
        ("* * * *", "5 fields"),
        ("@daily", "5 fields"),
        ("0 0 L * *", "day-of-month"),
        ("0 0 * * 1#2", "day-of-week"),
        ("0 0 30 2 *", "never"),
    ],
)
def test_rejected_cron_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        check_cron(expression)


# Validation: the manifest.


def test_validate_fills_queue_and_timeout_from_config_and_sorts(tmp_path: Path) -> None:
    (tmp_path / "rsx.toml").write_text(
        '[tasks]\ndefault_timeout = 900\ntimezone = "Europe/Paris"\n\n'
        "[tasks.queues]\nvideo = { max_workers = 3 }\n"
    )
    services = tmp_path / "services"
    (services / "media").mkdir(parents=True)
    (services / "media" / "video.py").write_text(
        "from runtime import TaskInstance, schedule, task\n\n"
        "@task('Zed', queue='video', timeout=60)\ndef zed(task: TaskInstance) -> None: ...\n\n"
        "@task('Alpha')\n@schedule('0 1 * * *')\ndef alpha(task: TaskInstance) -> None: ...\n"
    )
    (services / "audio.py").write_text(
        "from runtime import TaskInstance, task\n\n"
        "@task('Mix')\ndef mix(task: TaskInstance) -> None: ...\n"
    )
    (services / "empty.py").write_text("X = 1\n")
    config = parse_config(tmp_path / "rsx.toml")
    manifest, diagnostics = validate(scan_services(tmp_path, services), config, "services")
    assert diagnostics == [] and manifest is not None
    assert [s.name for s in manifest.services] == ["audio", "cleanup_service", "media.video"]
    video = manifest.services[2]
    assert [(t.name, t.queue, t.timeout, t.cron) for t in video.tasks] == [
        ("alpha", "scheduled", 900, "0 1 * * *"),
        ("zed", "video", 60, None),
    ]
    assert (video.tasks[0].module, video.tasks[0].source, video.tasks[0].line) == (
        "services.media.video",
        "services/media/video.py",
        8,
    )
    assert manifest.services[0].tasks[0].queue == "default"
    assert manifest.queues == (("default", 1), ("scheduled", 1), ("video", 3))
    assert (manifest.source, manifest.timezone) == ("services", "Europe/Paris")


def test_app_cleanup_service_joins_the_builtin_one() -> None:
    manifest, rendered = check_app(REPO / "fixtures" / "demo")
    assert rendered == "" and manifest is not None
    (cleanup,) = [s for s in manifest.services if s.name == "cleanup_service"]
    assert [(t.name, t.module) for t in cleanup.tasks] == [
        ("clean_thumbnails", "services.cleanup_service"),
        ("cleanup_old_tasks", "runtime.cleanup_service"),
        ("cleanup_temp_directories", "runtime.cleanup_service"),
    ]


def test_queue_suggestion_only_when_close(tmp_path: Path) -> None:
    (tmp_path / "rsx.toml").write_text("[tasks.queues]\nvideo = { max_workers = 1 }\n")
    config = parse_config(tmp_path / "rsx.toml")
    for queue, hint in (("vidoe", "; did you mean 'video'?"), ("zzz", "")):
        scan = scan_text(
            f"from runtime import TaskInstance, task\n\n@task('J', queue='{queue}')\n"
            "def j(task: TaskInstance): ...\n"
        )
        _, diagnostics = validate([scan], config, "services")
        (diagnostic,) = diagnostics
        assert diagnostic.message == (
            f"queue '{queue}' is not defined in rsx.toml (defined: default, scheduled, video){hint}"
        )


def _app_with(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """Validate an app made of `files` (path below services/ → source); rendered diagnostics."""
    (tmp_path / "rsx.toml").write_text("")
    services = tmp_path / "services"
    for name, source in files.items():
        (services / name).parent.mkdir(parents=True, exist_ok=True)
        (services / name).write_text("from runtime import TaskInstance, task\n\n" + source)
    config = parse_config(tmp_path / "rsx.toml")
    _, diagnostics = validate(scan_services(tmp_path, services), config, "services")
    return [d.render() for d in diagnostics]


def test_tasks_whose_generated_names_would_clash_are_rsx013(tmp_path: Path) -> None:
    rendered = _app_with(
        tmp_path,
        {
            "a.py": "@task('One')\ndef b_c(task: TaskInstance) -> None: ...\n",
            "a_b.py": "@task('Two')\ndef c(task: TaskInstance) -> None: ...\n",
        },
    )
    assert rendered == [
        "services/a_b.py:4:5: error[RSX013]: task 'a_b.c' and task 'a.b_c' would share "
        "the generated name ABCParams; rename one of them"
    ]


def test_service_namespaces_whose_class_names_would_clash_are_rsx013(tmp_path: Path) -> None:
    rendered = _app_with(
        tmp_path,
        {
            "x/y.py": "@task('One')\ndef one(task: TaskInstance) -> None: ...\n",
            "x_y.py": "@task('Two')\ndef two(task: TaskInstance) -> None: ...\n",
        },
    )
    assert rendered == [
        "services/x_y.py:4:5: error[RSX013]: service 'x_y' and service 'x.y' would share "
        "the generated class name of their namespace; rename one of them"
    ]

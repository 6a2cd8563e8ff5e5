"""The emitted package: snapshots of every file, and what its modules do when imported.

The snapshot tests build each good fixture app with the real pipeline; the behaviour
tests render a hand-made manifest (every parameter type, awkward descriptions) so they
exercise the templates independently of the scanner.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest
from syrupy.assertion import SnapshotAssertion

import runtime
from rsxgen.cli import main
from rsxgen.manifest import Manifest, Param, ServiceDef, TaskDef
from rsxgen.render import OUTPUT_FILES, render
from rsxgen.scanner.facts import TaskOptions
from runtime.config import parse_config
from runtime.registry import ScheduleEntry
from runtime.state import ExecutionMode, Status, TaskStatus
from tests.compiler.apps import GOOD_FIXTURES, copy_fixture


@pytest.fixture(autouse=True)
def _debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let an unexpected error in the CLI raise with its traceback instead of exit 2."""
    monkeypatch.setenv("RSXGEN_DEBUG", "1")
    monkeypatch.delenv("RSX_CONFIG", raising=False)


@pytest.mark.parametrize("fixture", GOOD_FIXTURES)
def test_fixture_output_matches_snapshots(
    fixture: str, tmp_path: Path, snapshot: SnapshotAssertion, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_fixture(fixture, tmp_path)
    assert main(["build", "--config", str(config)]) == 0, capsys.readouterr().err
    output = parse_config(config).output
    assert sorted(p.name for p in output.iterdir()) == sorted(OUTPUT_FILES)
    for name in OUTPUT_FILES:
        assert (output / name).read_text(encoding="utf-8") == snapshot(name=name)


def _task(service: str, name: str, *params: Param, **fields: Any) -> TaskDef:
    module = "runtime.cleanup_service" if service == "cleanup_service" else f"services.{service}"
    values: dict[str, Any] = {
        "description": f"{name} of {service}",
        "queue": "default",
        "timeout": 1800,
        "module": module,
        "function": name,
    }
    values.update(fields)
    return TaskDef(service=service, name=name, params=tuple(params), **values)


AWKWARD = 'Says "hi" with a \\ backslash,\nover two lines'

CATALOG = Manifest(
    services=(
        ServiceDef(
            "billing.invoice",
            (
                _task(
                    "billing.invoice",
                    "charge",
                    Param("invoice_id", "int"),
                    Param("amount", "float"),
                    Param("currency", "typing.Literal['EUR', 'USD']", "'EUR'", "EUR"),
                    Param("capture", "bool", "True", True),
                    Param("note", "str | None", "None", None),
                    Param("due", "datetime.date | None", "None", None),
                    queue="billing",
                    timeout=120,
                    result="dict[str, datetime.datetime]",
                    options=TaskOptions(
                        retries=2,
                        retry_backoff=2.5,
                        retry_on=("builtins.ConnectionError", "services.billing.invoice.Busy"),
                        unique=("invoice_id",),
                        unique_while="active",
                        delay=1.5,
                    ),
                ),
            ),
        ),
        ServiceDef(
            "cleanup_service",
            (
                _task(
                    "cleanup_service",
                    "cleanup_old_tasks",
                    queue="scheduled",
                    cron="0 2 * * *",
                ),
                _task(
                    "cleanup_service",
                    "reconcile",
                    Param("since", "datetime.datetime | None", "None", None),
                    Param("batches", "dict[str, list[int]]", "{'a': [1, 2]}", {"a": [1, 2]}),
                    Param("extra", "typing.Any", "None", None),
                    queue="scheduled",
                    cron="30 2 * * 1-5",
                    module="services.cleanup_service",
                ),
            ),
        ),
        ServiceDef("greeter", (_task("greeter", "hello", description=AWKWARD),)),
    ),
    queues=(("billing", 2), ("default", 1), ("scheduled", 1)),
)


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    """The catalog manifest rendered to disk as package `catalog_pkg`, its three modules
    imported (as an app imports them: `tasks.status` reads its sibling `registry`)."""
    out = tmp_path / "catalog_pkg"
    out.mkdir()
    for name, text in render(CATALOG).items():
        (out / name).write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield {stem: importlib.import_module(f"catalog_pkg.{stem}") for stem in PACKAGE_MODULES}
    for name in [name for name in sys.modules if name.startswith("catalog_pkg")]:
        del sys.modules[name]


PACKAGE_MODULES = ("tasks", "registry", "schedule")


class _Recorder:
    """Stands in for `runtime.Task` to see what the generated client passes it."""

    calls: list[tuple[str, str, str, Any]] = []
    state: TaskStatus[Any] = TaskStatus(
        41,
        Status.COMPLETED,
        "billing.invoice",
        "charge",
        "billing",
        ExecutionMode.QUEUED,
        result={"at": "2024-05-01T12:00:00+00:00"},
    )

    @classmethod
    def dispatch(cls, service: str, task: str, params: dict[str, Any], **when: Any) -> int:
        cls.calls.append(("dispatch", service, task, (params, when)))
        return 41

    @classmethod
    def dispatch_many(cls, service: str, task: str, items: Any, **when: Any) -> list[int]:
        cls.calls.append(("dispatch_many", service, task, (list(items), when)))
        return [41, 42]

    @classmethod
    def run(cls, service: str, task: str, params: dict[str, Any]) -> Any:
        cls.calls.append(("run", service, task, params))
        return {"ran": task}

    @classmethod
    def status(cls, task_id: int) -> TaskStatus[Any]:
        cls.calls.append(("status", "", "", task_id))
        return cls.state

    @classmethod
    def cancel(cls, task_id: int) -> bool:
        cls.calls.append(("cancel", "", "", task_id))
        return True


def test_client_passes_service_task_and_every_param_to_the_runtime(
    catalog: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(vars(runtime), "Task", _Recorder)
    _Recorder.calls = []
    tasks = catalog["tasks"]
    later = datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC)
    assert tasks.billing.invoice.charge.dispatch(invoice_id=7, amount=9.5, delay=3) == 41
    assert tasks.cleanup_service.reconcile.run(extra=[1]) == {"ran": "reconcile"}
    assert tasks.greeter.hello.dispatch(run_at=later) == 41
    assert tasks.greeter.hello.dispatch_many([{}, {}]) == [41, 42]
    assert tasks.cancel(41) is True
    assert _Recorder.calls == [
        (
            "dispatch",
            "billing.invoice",
            "charge",
            (
                {
                    "invoice_id": 7,
                    "amount": 9.5,
                    "currency": "EUR",
                    "capture": True,
                    "note": None,
                    "due": None,
                },
                {"delay": 3, "run_at": None},
            ),
        ),
        (
            "run",
            "cleanup_service",
            "reconcile",
            {"since": None, "batches": {"a": [1, 2]}, "extra": [1]},
        ),
        ("dispatch", "greeter", "hello", ({}, {"delay": None, "run_at": later})),
        ("dispatch_many", "greeter", "hello", ([{}, {}], {"delay": None, "run_at": None})),
        ("cancel", "", "", 41),
    ]


def test_client_status_gives_a_completed_result_in_its_declared_type(
    catalog: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(vars(runtime), "Task", _Recorder)
    state = catalog["tasks"].status(41)
    assert state.result == {"at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)}
    assert state.log == _Recorder.state.log and state.id == 41
    failed = dataclasses.replace(_Recorder.state, status=Status.FAILED)
    monkeypatch.setattr(_Recorder, "state", dataclasses.replace(failed, result={"error": "x"}))
    assert catalog["tasks"].status(41).result == {"error": "x"}


def test_client_methods_take_keyword_arguments_only(catalog: dict[str, ModuleType]) -> None:
    with pytest.raises(TypeError, match="positional"):
        catalog["tasks"].billing.invoice.charge.dispatch(7, 9.5)
    with pytest.raises(TypeError, match="invoice_id"):
        catalog["tasks"].billing.invoice.charge.dispatch(amount=9.5)


def test_registry_models_validate_coerce_and_fill_defaults(catalog: dict[str, ModuleType]) -> None:
    entry = catalog["registry"].TASKS[("billing.invoice", "charge")]
    assert (entry.module, entry.function, entry.queue, entry.timeout, entry.cron) == (
        "services.billing.invoice",
        "charge",
        "billing",
        120,
        None,
    )
    assert (entry.retries, entry.retry_backoff, entry.retry_on, entry.delay) == (
        2,
        2.5,
        ("builtins.ConnectionError", "services.billing.invoice.Busy"),
        1.5,
    )
    assert (entry.unique, entry.unique_while) == (("invoice_id",), "active")
    assert entry.result == dict[str, datetime.datetime]
    hello = catalog["registry"].TASKS[("greeter", "hello")]
    assert (hello.retries, hello.retry_on, hello.unique, hello.delay, hello.result) == (
        0,
        (),
        None,
        0.0,
        typing.Any,
    )
    params = entry.params(invoice_id="7", amount=1, due="2024-05-01")
    assert params.model_dump(mode="json") == {
        "invoice_id": 7,
        "amount": 1.0,
        "currency": "EUR",
        "capture": True,
        "note": None,
        "due": "2024-05-01",
    }
    with pytest.raises(pydantic.ValidationError, match="videoid"):
        entry.params(invoice_id=1, amount=1, videoid=3)
    with pytest.raises(pydantic.ValidationError, match="currency"):
        entry.params(invoice_id=1, amount=1, currency="GBP")
    reconcile = catalog["registry"].TASKS[("cleanup_service", "reconcile")].params()
    assert reconcile.model_dump() == {"since": None, "batches": {"a": [1, 2]}, "extra": None}


def test_registry_lists_every_task_sorted(catalog: dict[str, ModuleType]) -> None:
    assert list(catalog["registry"].TASKS) == [
        ("billing.invoice", "charge"),
        ("cleanup_service", "cleanup_old_tasks"),
        ("cleanup_service", "reconcile"),
        ("greeter", "hello"),
    ]


def test_schedule_table_holds_scheduled_tasks_with_their_defaults(
    catalog: dict[str, ModuleType],
) -> None:
    assert catalog["schedule"].SCHEDULES == (
        ScheduleEntry("cleanup_service", "cleanup_old_tasks", "0 2 * * *", "scheduled", 1800, {}),
        ScheduleEntry(
            "cleanup_service",
            "reconcile",
            "30 2 * * 1-5",
            "scheduled",
            1800,
            {"since": None, "batches": {"a": [1, 2]}, "extra": None},
        ),
    )


def test_descriptions_survive_quotes_backslashes_and_newlines(
    catalog: dict[str, ModuleType],
) -> None:
    assert catalog["registry"].TASKS[("greeter", "hello")].description == AWKWARD
    assert type(catalog["tasks"].greeter.hello).__doc__ == AWKWARD
    assert type(catalog["tasks"].billing.invoice.charge).__doc__ == "charge of billing.invoice"


def test_every_file_carries_the_header_and_manifest_the_marker() -> None:
    files = render(CATALOG)
    assert sorted(files) == sorted(OUTPUT_FILES)
    for name, text in files.items():
        if name.endswith(".py"):
            assert text.startswith("# Generated by rsxgen from services — do not edit.\n")
    data = json.loads(files["manifest.json"])
    assert data["generated_by"] == "rsxgen"
    assert [s["name"] for s in data["services"]] == [
        "billing.invoice",
        "cleanup_service",
        "greeter",
    ]


def test_registry_imports_only_what_the_parameters_and_results_use() -> None:
    plain = Manifest(
        services=(ServiceDef("greeter", (_task("greeter", "hello", result="list[str]"),)),)
    )
    files = render(plain)
    assert "import datetime" not in files["registry.py"]
    assert "import typing" not in files["registry.py"]
    assert "\nimport datetime\n" in files["tasks.py"]  # dispatch's run_at
    dated = _task("greeter", "hello", result="datetime.date")
    dated_files = render(Manifest(services=(ServiceDef("greeter", (dated,)),)))
    assert "\nimport datetime\n" in dated_files["registry.py"]
    catalog = render(CATALOG)
    assert "\nimport datetime\n" in catalog["registry.py"]
    assert "\nimport typing\n" in catalog["registry.py"]


def test_a_result_type_named_like_a_parameter_is_spelled_through_the_alias() -> None:
    task = _task("greeter", "hello", Param("int", "int", "1", 1), result="dict[str, int]")
    files = render(Manifest(services=(ServiceDef("greeter", (task,)),)))
    assert "result=dict[str, _rsx_builtins.int]," in files["registry.py"]
    assert "import builtins as _rsx_builtins" in files["registry.py"]
    assert ") -> dict[str, int]:" in files["tasks.py"]

"""The emitted package: snapshots of every file, and what its modules do when imported.

The snapshot tests build each good fixture app with the real pipeline; the behaviour
tests render a hand-made manifest (every parameter type, awkward descriptions) so they
exercise the templates independently of the scanner.
"""

from __future__ import annotations

import importlib.util
import json
import sys
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
from runtime.config import parse_config
from runtime.registry import ScheduleEntry
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
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The catalog manifest rendered to disk and its three modules imported."""
    out = tmp_path / "catalog_pkg"
    out.mkdir()
    for name, text in render(CATALOG).items():
        (out / name).write_text(text, encoding="utf-8")
    modules = {}
    for stem in ("tasks", "registry", "schedule"):
        spec = importlib.util.spec_from_file_location(f"catalog_{stem}", out / f"{stem}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        modules[stem] = module
    return modules


class _Recorder:
    """Stands in for `runtime.Task` to see what the generated client passes it."""

    calls: list[tuple[str, str, str, Any]] = []

    @classmethod
    def dispatch(cls, service: str, task: str, params: dict[str, Any]) -> int:
        cls.calls.append(("dispatch", service, task, params))
        return 41

    @classmethod
    def run(cls, service: str, task: str, params: dict[str, Any]) -> Any:
        cls.calls.append(("run", service, task, params))
        return {"ran": task}

    @classmethod
    def status(cls, task_id: int) -> str:
        cls.calls.append(("status", "", "", task_id))
        return "the status"


def test_client_passes_service_task_and_every_param_to_the_runtime(
    catalog: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(vars(runtime), "Task", _Recorder)
    _Recorder.calls = []
    tasks = catalog["tasks"]
    assert tasks.billing.invoice.charge.dispatch(invoice_id=7, amount=9.5) == 41
    assert tasks.cleanup_service.reconcile.run(extra=[1]) == {"ran": "reconcile"}
    assert tasks.greeter.hello.dispatch() == 41
    assert tasks.status(41) == "the status"
    assert _Recorder.calls == [
        (
            "dispatch",
            "billing.invoice",
            "charge",
            {
                "invoice_id": 7,
                "amount": 9.5,
                "currency": "EUR",
                "capture": True,
                "note": None,
                "due": None,
            },
        ),
        (
            "run",
            "cleanup_service",
            "reconcile",
            {"since": None, "batches": {"a": [1, 2]}, "extra": [1]},
        ),
        ("dispatch", "greeter", "hello", {}),
        ("status", "", "", 41),
    ]


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


def test_imports_only_what_the_parameters_use() -> None:
    plain = Manifest(services=(ServiceDef("greeter", (_task("greeter", "hello"),)),))
    files = render(plain)
    assert "import datetime" not in files["tasks.py"]
    assert "import datetime" not in files["registry.py"]
    assert "import typing" not in files["registry.py"]
    catalog = render(CATALOG)
    assert "\nimport datetime\n" in catalog["registry.py"]
    assert "\nimport typing\n" in catalog["registry.py"]

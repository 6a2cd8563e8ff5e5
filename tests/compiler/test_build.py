"""`rsxgen build` as a user runs it: exit codes, messages, what is written and what is not.

Every test runs the real CLI in a subprocess against a copy of a fixture app.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compiler.apps import BIN, REPO, copy_fixture, read_tree, rsxgen

FIX_COMMAND = "rsxgen build --config fixtures/demo/rsx.toml"
SUMMARY = re.compile(
    r"^built (\d+) tasks? in (\d+) services? \((\d+) scheduled\) → (\S+) in \d+\.\d\d s$"
)


def _app(tmp_path: Path, fixture: str = "minimal") -> Path:
    """A copy of a fixture app; returns its root (the folder of rsx.toml)."""
    return copy_fixture(fixture, tmp_path).parent


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_generated_folder_is_up_to_date_with_the_demo(tmp_path: Path) -> None:
    app = _app(tmp_path, "demo")
    result = rsxgen("build", cwd=app)
    assert result.returncode == 0, result.stderr
    fresh = read_tree(tmp_path / "generated")
    committed = read_tree(REPO / "generated")
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"generated/ is out of date ({', '.join(stale)}); run: {FIX_COMMAND}"


def test_build_writes_the_package_and_prints_one_summary_line(tmp_path: Path) -> None:
    app = _app(tmp_path)
    result = rsxgen("build", cwd=app)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert match.groups() == ("3", "2", "2", "generated/")
    assert sorted(read_tree(app / "generated")) == [
        "__init__.py",
        "manifest.json",
        "registry.py",
        "schedule.py",
        "tasks.py",
    ]


def test_summary_counts_the_demo_and_names_its_output_relative_to_the_app(tmp_path: Path) -> None:
    app = _app(tmp_path, "demo")
    result = rsxgen("build", "--config", "fixtures/demo/rsx.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip())
    assert match, result.stdout
    assert match.groups() == ("8", "5", "3", "../../generated/")
    assert (app.parent.parent / "generated" / "tasks.py").is_file()


def test_console_script_and_module_entry_point_agree(tmp_path: Path) -> None:
    app = _app(tmp_path)
    script = subprocess.run(
        [str(BIN / "rsxgen"), "build", "--check"], cwd=app, capture_output=True, text=True
    )
    assert script.returncode == 1
    assert "generated/tasks.py: missing" in script.stderr
    module = rsxgen("build", "--check", cwd=app)
    assert (module.returncode, module.stderr) == (script.returncode, script.stderr)


@pytest.mark.parametrize("seeds", [("1", "2")])
def test_output_is_byte_identical_across_hash_seeds_and_with_the_cache(
    tmp_path: Path, seeds: tuple[str, str]
) -> None:
    trees = []
    for seed in seeds:
        app = _app(tmp_path / f"seed{seed}", "nested")
        result = rsxgen("build", cwd=app, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        trees.append(read_tree(app / "generated"))
    assert trees[0] == trees[1]
    # The second app again, its output deleted: built from cached scans, same bytes.
    shutil.rmtree(app / "generated")
    result = rsxgen("build", cwd=app, env={"PYTHONHASHSEED": "3"})
    assert result.returncode == 0, result.stderr
    assert read_tree(app / "generated") == trees[0]


def test_a_process_pool_scan_gives_the_serial_result(tmp_path: Path) -> None:
    trees, errors = [], []
    for jobs in ("1", "2"):
        app = _app(tmp_path / f"jobs{jobs}")
        for i in range(40):
            (app / "services" / f"s{i:02d}.py").write_text(
                "from runtime import TaskInstance, task\n\n\n"
                f'@task("Task {i}", timeout={i + 1})\n'
                f"def t{i}(task: TaskInstance, n: int = {i}) -> int:\n    return n\n"
            )
        result = rsxgen("build", cwd=app, env={"RSXGEN_JOBS": jobs})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("built 43 tasks in 42 services (2 scheduled)")
        trees.append(read_tree(app / "generated"))
        (app / "services" / "s07.py").write_text("def broken(:\n")
        shutil.rmtree(app / "storage")
        result = rsxgen("build", cwd=app, env={"RSXGEN_JOBS": jobs})
        assert result.returncode == 1
        errors.append(result.stderr)
    assert trees[0] == trees[1]
    assert errors[0] == errors[1]
    assert errors[0].startswith("services/s07.py:1:")


def test_check_is_clean_after_a_build_and_writes_nothing(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (app / "generated").iterdir()}
    result = rsxgen("build", "--check", cwd=app)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "generated/ is up to date"
    assert {p: p.stat().st_mtime_ns for p in (app / "generated").iterdir()} == before


def test_check_names_every_missing_changed_and_stale_file(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    out = app / "generated"
    (out / "registry.py").unlink()
    (out / "tasks.py").write_text((out / "tasks.py").read_text() + "# edited by hand\n")
    (out / "old.py").write_text("# Generated by rsxgen from services — do not edit.\n")
    before = read_tree(out)
    result = rsxgen("build", "--check", cwd=app)
    assert result.returncode == 1
    _no_traceback(result.stderr)
    assert result.stderr.splitlines() == [
        "generated/registry.py: missing",
        "generated/tasks.py: out of date",
        "generated/old.py: stale (no longer generated)",
        "rsxgen: error: generated/ is out of date; run: rsxgen build",
    ]
    assert read_tree(out) == before


def test_check_on_a_service_change_reports_the_files_it_changes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    hello = app / "services" / "hello.py"
    hello.write_text(hello.read_text().replace('"Say hello"', '"Say hello politely"'))
    result = rsxgen("build", "--check", cwd=app)
    assert result.returncode == 1
    assert "generated/registry.py: out of date" in result.stderr
    assert "generated/tasks.py: out of date" in result.stderr
    assert "generated/schedule.py" not in result.stderr


def test_rebuild_follows_service_and_config_changes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    tasks_py = app / "generated" / "tasks.py"
    unchanged = tasks_py.stat().st_mtime_ns
    assert rsxgen("build", cwd=app).returncode == 0
    assert tasks_py.stat().st_mtime_ns == unchanged, "a no-change build rewrote tasks.py"

    good = tasks_py.read_text()
    tasks_py.write_text(good.replace("def dispatch", "def dispatch_renamed"))
    assert rsxgen("build", cwd=app).returncode == 0
    assert tasks_py.read_text() == good, "a hand edit of the output survived a build"

    hello = app / "services" / "hello.py"
    hello.write_text(hello.read_text().replace('name: str = "world"', 'name: str = "moon"'))
    assert rsxgen("build", cwd=app).returncode == 0
    assert "name: str = 'moon'" in tasks_py.read_text()

    (app / "rsx.toml").write_text("[tasks]\ndefault_timeout = 42\n")
    assert rsxgen("build", cwd=app).returncode == 0
    assert "timeout=42," in (app / "generated" / "registry.py").read_text()


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    cache = app / "storage" / ".rsxgen-cache.json"
    assert cache.is_file()
    expected = read_tree(app / "generated")
    shutil.rmtree(app / "generated")
    cache.write_text('{"code": "x", "scans": [')
    result = rsxgen("build", cwd=app)
    assert result.returncode == 0, result.stderr
    assert read_tree(app / "generated") == expected


def test_build_deletes_stale_generated_files_and_keeps_the_users(tmp_path: Path) -> None:
    app = _app(tmp_path)
    out = app / "generated"
    out.mkdir()
    (out / "old.py").write_text("# Generated by rsxgen from services — do not edit.\nX = 1\n")
    (out / "notes.py").write_text("# my own notes\n")
    assert rsxgen("build", cwd=app).returncode == 0
    assert not (out / "old.py").exists()
    assert (out / "notes.py").read_text() == "# my own notes\n"


def test_a_foreign_file_in_the_way_stops_the_build(tmp_path: Path) -> None:
    app = _app(tmp_path)
    out = app / "generated"
    out.mkdir()
    (out / "tasks.py").write_text("print('mine')\n")
    result = rsxgen("build", cwd=app)
    assert result.returncode == 2
    _no_traceback(result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert "tasks.py exists and was not written by rsxgen" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tasks.py"]
    assert (out / "tasks.py").read_text() == "print('mine')\n"


def test_errors_are_printed_sorted_exit_1_and_nothing_is_written(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert rsxgen("build", cwd=app).returncode == 0
    before = read_tree(app / "generated")
    (app / "services" / "zeta.py").write_text(
        "from runtime import TaskInstance, task\n\n\n"
        '@task("Use a queue nobody defined", queue="vidoe")\n'
        "def work(task: TaskInstance) -> None: ...\n"
    )
    (app / "services" / "alpha.py").write_text("def broken(:\n")
    result = rsxgen("build", cwd=app)
    assert result.returncode == 1
    assert result.stdout == ""
    _no_traceback(result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert re.match(r"services/alpha\.py:1:\d+: error\[RSX014\]: ", lines[0]), lines[0]
    assert re.match(r"services/zeta\.py:4:\d+: error\[RSX001\]: ", lines[1]), lines[1]
    assert read_tree(app / "generated") == before


def test_a_fresh_app_with_errors_gets_no_output_folder(tmp_path: Path) -> None:
    app = _app(tmp_path)
    (app / "services" / "hello.py").write_text(
        "from runtime import TaskInstance, task\n\n\n"
        '@task("")\ndef greet(task: TaskInstance) -> None: ...\n'
    )
    result = rsxgen("build", cwd=app)
    assert result.returncode == 1
    assert "error[RSX003]" in result.stderr
    assert not (app / "generated").exists()


def test_a_service_file_that_is_not_utf8_is_a_diagnostic(tmp_path: Path) -> None:
    app = _app(tmp_path)
    (app / "services" / "latin.py").write_bytes(b'GREETING = "caf\xe9"\n')
    result = rsxgen("build", cwd=app)
    assert result.returncode == 1
    _no_traceback(result.stderr)
    assert re.match(r"services/latin\.py:\d+:\d+: error\[RSX014\]: ", result.stderr), result.stderr


def test_missing_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = rsxgen("build", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("rsxgen: error: no rsx.toml")
    result = rsxgen("build", "--config", "nope/rsx.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "rsxgen: error: config file not found: nope/rsx.toml\n"


def test_missing_services_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "rsx.toml").write_text('[tasks]\nservices = "app/services"\n')
    result = rsxgen("build", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "rsxgen: error: services folder not found: app/services (the 'services' key of rsx.toml)\n"
    )


def test_config_error_is_rsx015_at_its_line_and_exit_1(tmp_path: Path) -> None:
    app = _app(tmp_path)
    (app / "rsx.toml").write_text("[tasks]\n\n[tasks.queues]\nvideo = { max_workers = 0 }\n")
    result = rsxgen("build", cwd=app)
    assert result.returncode == 1
    assert result.stderr == (
        "rsx.toml:4:1: error[RSX015]: 'tasks.queues.video.max_workers' must be >= 1\n"
    )
    assert not (app / "generated").exists()


def test_config_is_found_from_a_subfolder(tmp_path: Path) -> None:
    app = _app(tmp_path)
    result = rsxgen("build", cwd=app / "services")
    assert result.returncode == 0, result.stderr
    assert (app / "generated" / "tasks.py").is_file()


@pytest.mark.parametrize(
    "args",
    [(), ("build", "--bogus"), ("compile",), ("build", "--config")],
    ids=["no-command", "unknown-option", "unknown-command", "option-without-value"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = rsxgen(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: rsxgen")
    _no_traceback(result.stderr)

"""Fixtures of the runtime tests: a fresh database and app folder per test.

Every test runs once per backend of `tests.databases.BACKENDS` (SQLite, PostgreSQL,
MariaDB), each in a fresh database; the servers come from `RSX_TEST_POSTGRES_URL` /
`RSX_TEST_MYSQL_URL` and are skipped without them (a failure under `CI=true`).
`RSX_RUNTIME_BACKENDS=sqlite` (or any comma-separated subset) narrows that while iterating.
The test app's services (`tests/runtime/app/services`) are built by `rsxgen build` once per
session; each test gets its own `rsx.toml`, storage folder and database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runtime.api
from tests.databases import BACKENDS, fresh_database
from tests.runtime.helpers import QUEUES, App, write_rsx_toml

APP_SOURCE = Path(__file__).parent / "app"
RUNTIME_BACKENDS = tuple(os.environ.get("RSX_RUNTIME_BACKENDS", ",".join(BACKENDS)).split(","))


@pytest.fixture(params=RUNTIME_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend in turn, as the shared `db_url` fixture gives."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def app_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the test app's `services/` and the `generated/` package that
    `rsxgen build` makes of them (built once per session, as a user would)."""
    root = tmp_path_factory.mktemp("package")
    shutil.copytree(APP_SOURCE / "services", root / "services")
    lines = ["[tasks]", "", "[tasks.queues]"]
    lines += [f"{name} = {{ max_workers = {count} }}" for name, count in QUEUES.items()]
    (root / "rsx.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    built = subprocess.run(
        [sys.executable, "-m", "rsxgen", "build", "--config", str(root / "rsx.toml")],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, f"rsxgen build failed:\n{built.stdout}{built.stderr}"
    return root


def _forget_app_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("generated", "services"):
            del sys.modules[name]


@pytest.fixture
def make_app(
    tmp_path: Path, database_url: str, app_package: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., App]]:
    """Make the test's app (optionally with other queue limits or settings)."""
    for variable in ("RSX_CONFIG", "RSX_DATABASE_URL", "RSX_SERVER_ID"):
        monkeypatch.delenv(variable, raising=False)
    _forget_app_modules()
    made: list[App] = []

    def make(queues: dict[str, int] | None = None, **settings: Any) -> App:
        root = tmp_path / "app"
        root.mkdir(exist_ok=True)
        settings.setdefault("global_max_workers", 4)
        settings.setdefault("worker_idle_seconds", 0)
        config = write_rsx_toml(root, app_package, database_url, queues or QUEUES, **settings)
        app = App(root, config)
        runtime.api.use_config(config, app.store)
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop_processes()
        app.store.dispose()
    runtime.api._installed = None
    _forget_app_modules()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    """The test app with the default queues: video (2), other (2), slow (1)."""
    return make_app()

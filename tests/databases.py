"""Fresh databases for tests: a SQLite file, or a new PostgreSQL / MariaDB database per test.

The server URLs come from `RSX_TEST_POSTGRES_URL` and `RSX_TEST_MYSQL_URL`. Without them the
tests of that backend are skipped with the reason, except under `CI=true`, where a missing or
unreachable server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql", "mysql")
ENV = {"postgresql": "RSX_TEST_POSTGRES_URL", "mysql": "RSX_TEST_MYSQL_URL"}


def _server_url(backend: str) -> str:
    variable = ENV[backend]
    url = os.environ.get(variable)
    if not url:
        message = f"{backend} tests need {variable} (e.g. set by .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; under CI=true a missing database is a failure")
        pytest.skip(message)
    return url


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database of `backend`, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(_server_url(backend))
    name = f"rsx_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        admin.dispose()
        safe = server.render_as_string(hide_password=True)
        message = f"{backend} server at {safe} unreachable: {type(exc).__name__}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()

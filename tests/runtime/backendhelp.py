"""Helpers for the backend, schema, connection and multi-server tests.

Child-process entry points live here (importable under the `spawn` start method), next to
a small helper that writes an app config. Polling with a deadline is `helpers.wait_until`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.config import Config, parse_config


def write_config(root: Path, db_url: str, **tasks: Any) -> Config:
    """An rsx.toml in `root` using `db_url` plus any `[tasks]` keys given; parsed."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[tasks]", f"database_url = {json.dumps(db_url)}"]
    queues = tasks.pop("queues", {})
    lines += [f"{key} = {json.dumps(value)}" for key, value in tasks.items()]
    if queues:
        lines.append("\n[tasks.queues]")
        lines += [f"{name} = {{ max_workers = {count} }}" for name, count in queues.items()]
    (root / "rsx.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return parse_config(root / "rsx.toml")


def backend_name(url: str) -> str:
    """`sqlite`, `postgresql` or `mysql` for a test database URL."""
    from sqlalchemy.engine import make_url

    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name

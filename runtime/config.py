"""Finding, reading and validating the application's `rsx.toml`.

Shared by the compiler and the runtime. Validation is a dozen explicit checks rather than
a pydantic model so that the processor, started by cron every minute, does not pay for
importing pydantic when it has nothing to run.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

CONFIG_NAME = "rsx.toml"
PYPROJECT_NAME = "pyproject.toml"
BUILTIN_QUEUES = ("default", "scheduled")

_STR_KEYS = {
    "services": "services",
    "output": "generated",
    "database_url": "sqlite:///storage/tasks.db",
    "storage": "storage",
    "timezone": "UTC",
}
_INT_KEYS = {
    "server_id": 1,
    "global_max_workers": 1,
    "default_timeout": 1800,
    "cleanup_stuck_after": 1800,
    "temp_directory_default_ttl": 3600,
    "task_retention_days": 30,
    "worker_idle_seconds": 10,
}
_MIN_ONE = {"global_max_workers", "default_timeout", "server_id"}
_MIN_ZERO = {
    "cleanup_stuck_after",
    "temp_directory_default_ttl",
    "task_retention_days",
    "worker_idle_seconds",
}
_DEFAULT_QUEUES = {"default": 1, "scheduled": 1}


@dataclass(frozen=True)
class QueueConfig:
    """One queue's limits."""

    name: str
    max_workers: int = 1


@dataclass(frozen=True)
class Config:
    """The validated configuration, every path absolute."""

    path: Path
    services: Path
    output: Path
    database_url: str
    storage: Path
    server_id: int = 1
    timezone: str = "UTC"
    global_max_workers: int = 1
    default_timeout: int = 1800
    cleanup_stuck_after: int = 1800
    temp_directory_default_ttl: int = 3600
    task_retention_days: int = 30
    worker_idle_seconds: int = 10
    queues: Mapping[str, QueueConfig] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The app root: the folder holding the config file."""
        return self.path.parent

    def queue(self, name: str) -> QueueConfig | None:
        return self.queues.get(name)


def find_config(start: Path | None = None, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate the config: explicit path, then `RSX_CONFIG`, then the nearest folder upward."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}", path=str(path), missing=True)
        return path.resolve()
    env = os.environ.get("RSX_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from RSX_CONFIG)", missing=True)
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
        pyproject = folder / PYPROJECT_NAME
        if pyproject.is_file() and _has_tool_rsx(pyproject):
            return pyproject
    raise ConfigError(
        f"no {CONFIG_NAME} (or pyproject.toml with [tool.rsx]) in {here} or its parents",
        missing=True,
    )


def load_config(
    explicit: str | os.PathLike[str] | None = None, start: Path | None = None
) -> Config:
    """Find and validate the config, applying `RSX_DATABASE_URL` and `RSX_SERVER_ID`."""
    return parse_config(find_config(start, explicit))


def _has_tool_rsx(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "rsx" in data["tool"]


def parse_config(path: Path) -> Config:
    """Read and validate one config file (rsx.toml or pyproject.toml)."""
    path = path.resolve()
    shown = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {shown}: {exc}", path=shown) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"invalid TOML: {exc}", path=shown, line=line) from None

    is_pyproject = path.name == PYPROJECT_NAME
    prefix = "tool.rsx." if is_pyproject else ""
    if is_pyproject:
        root_table: Any = data.get("tool", {}).get("rsx", {})
        allowed_top = {"tasks"}
    else:
        root_table = data
        allowed_top = {"tasks"}
    locate = _Locator(text, shown)

    for key in root_table:
        if key not in allowed_top:
            raise locate.error(f"{prefix}{key}", f"unknown key '{prefix}{key}'")
    tasks = root_table.get("tasks", {})
    if not isinstance(tasks, dict):
        raise locate.error(f"{prefix}tasks", f"'{prefix}tasks' must be a table")

    values: dict[str, Any] = {}
    for key, value in tasks.items():
        dotted = f"{prefix}tasks.{key}"
        if key == "queues":
            continue
        if key in _STR_KEYS:
            if not isinstance(value, str) or not value:
                raise locate.error(dotted, f"'{dotted}' must be a non-empty string")
            values[key] = value
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise locate.error(dotted, f"'{dotted}' must be an integer")
            minimum = 1 if key in _MIN_ONE else 0
            if value < minimum:
                raise locate.error(dotted, f"'{dotted}' must be >= {minimum}")
            values[key] = value
        else:
            raise locate.error(dotted, f"unknown key '{dotted}'")

    queues = dict(_DEFAULT_QUEUES)
    raw_queues = tasks.get("queues", {})
    if not isinstance(raw_queues, dict):
        raise locate.error(f"{prefix}tasks.queues", f"'{prefix}tasks.queues' must be a table")
    for name, spec in raw_queues.items():
        dotted = f"{prefix}tasks.queues.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
            raise locate.error(dotted, f"queue name '{name}' is not a valid name")
        if not isinstance(spec, dict):
            raise locate.error(dotted, f"'{dotted}' must be a table like {{ max_workers = 1 }}")
        for sub in spec:
            if sub != "max_workers":
                raise locate.error(dotted, f"unknown key '{dotted}.{sub}'")
        workers = spec.get("max_workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise locate.error(dotted, f"'{dotted}.max_workers' must be an integer")
        if workers < 1:
            raise locate.error(dotted, f"'{dotted}.max_workers' must be >= 1")
        queues[name] = workers

    env_url = os.environ.get("RSX_DATABASE_URL")
    if env_url:
        values["database_url"] = env_url
    env_server = os.environ.get("RSX_SERVER_ID")
    if env_server:
        try:
            server_id = int(env_server)
        except ValueError:
            raise ConfigError(f"RSX_SERVER_ID must be an integer, got {env_server!r}") from None
        if server_id < 1:
            raise ConfigError("RSX_SERVER_ID must be >= 1")
        values["server_id"] = server_id

    timezone = values.get("timezone", _STR_KEYS["timezone"])
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise locate.error(
            f"{prefix}tasks.timezone",
            f"'{prefix}tasks.timezone' is not a known timezone: '{timezone}' "
            "(use an IANA name such as 'Europe/London')",
        ) from None

    root = path.parent
    merged = {**_STR_KEYS, **_INT_KEYS, **values}
    return Config(
        path=path,
        services=(root / merged["services"]).resolve(),
        output=(root / merged["output"]).resolve(),
        database_url=absolute_sqlite_url(merged["database_url"], root),
        storage=(root / merged["storage"]).resolve(),
        server_id=merged["server_id"],
        timezone=timezone,
        global_max_workers=merged["global_max_workers"],
        default_timeout=merged["default_timeout"],
        cleanup_stuck_after=merged["cleanup_stuck_after"],
        temp_directory_default_ttl=merged["temp_directory_default_ttl"],
        task_retention_days=merged["task_retention_days"],
        worker_idle_seconds=merged["worker_idle_seconds"],
        queues={name: QueueConfig(name, queues[name]) for name in sorted(queues)},
    )


def absolute_sqlite_url(url: str, root: Path) -> str:
    """Make the file of a relative `sqlite:///path` URL relative to `root`."""
    match = re.match(r"^(sqlite(?:\+\w+)?):///(.*)$", url)
    if not match:
        return url
    scheme, rest = match.groups()
    file_part, sep, query = rest.partition("?")
    if not file_part or file_part == ":memory:" or file_part.startswith("/"):
        return url
    absolute = (root / file_part).resolve()
    return f"{scheme}:///{absolute}{sep}{query}"


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


class _Locator:
    """Finds the line of a dotted key in the TOML text, for error messages."""

    def __init__(self, text: str, shown: str) -> None:
        self.lines = text.splitlines()
        self.shown = shown

    def line_of(self, dotted: str) -> int | None:
        parts = dotted.split(".")
        for split in range(len(parts) - 1, -1, -1):
            table, keys = parts[:split], parts[split:]
            line = self._find(table, keys)
            if line is not None:
                return line
        return None

    def _find(self, table: list[str], keys: list[str]) -> int | None:
        current: list[str] = []
        header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
        for number, raw in enumerate(self.lines, start=1):
            match = header.match(raw)
            if match:
                current = [p.strip().strip('"') for p in match.group(1).split(".")]
                if current == table + keys:
                    return number
                continue
            if current == table and keys:
                first = re.escape(keys[0])
                if re.match(rf'^\s*"?{first}"?\s*[.=]', raw):
                    return number
        return None

    def error(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.shown, line=self.line_of(dotted), key=dotted)

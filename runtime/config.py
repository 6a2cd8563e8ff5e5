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

from runtime import limits, urls
from runtime.errors import ConfigError
from runtime.text import escape_controls, first_control, shorten

CONFIG_NAME = "rsx.toml"
PYPROJECT_NAME = "pyproject.toml"

_STR_KEYS = {
    "services": "services",
    "output": "generated",
    "database_url": "sqlite:///storage/tasks.db",
    "storage": "storage",
    "timezone": "UTC",
}
_INT_KEYS: dict[str, tuple[int, int, int]] = {
    # key: (default, minimum, maximum)
    "server_id": (1, 1, limits.INT32_MAX),
    "global_max_workers": (1, 1, limits.INT32_MAX),
    "default_timeout": (1800, 1, limits.MAX_DURATION_SECONDS),
    "cleanup_stuck_after": (1800, 0, limits.MAX_DURATION_SECONDS),
    "temp_directory_default_ttl": (3600, 0, limits.MAX_DURATION_SECONDS),
    "task_retention_days": (30, 0, limits.MAX_RETENTION_DAYS),
    "worker_idle_seconds": (10, 0, limits.MAX_WORKER_IDLE_SECONDS),
    "max_log_bytes": (4_000_000, limits.MIN_OUTPUT_BYTES, limits.MAX_OUTPUT_BYTES),
    "max_result_bytes": (4_000_000, limits.MIN_OUTPUT_BYTES, limits.MAX_OUTPUT_BYTES),
    "cancel_grace_seconds": (10, 0, limits.MAX_DURATION_SECONDS),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
_DEFAULT_LOG_LEVEL = "info"
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
    log_level: str = "INFO"
    max_log_bytes: int = 4_000_000
    max_result_bytes: int = 4_000_000
    cancel_grace_seconds: int = 10
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

    locate = _Locator(text, shown)
    prefix = "tool.rsx." if path.name == PYPROJECT_NAME else ""
    root_table: Any = data
    if prefix:
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise locate.error("tool", "'tool' must be a table")
        root_table = tool.get("rsx", {})
        if not isinstance(root_table, dict):
            raise locate.error("tool.rsx", "'tool.rsx' must be a table")

    for key in root_table:
        if key != "tasks":
            raise locate.error(f"{prefix}{key}", f"unknown key '{prefix}{_shown(key)}'")
    tasks = root_table.get("tasks", {})
    if not isinstance(tasks, dict):
        raise locate.error(f"{prefix}tasks", f"'{prefix}tasks' must be a table")

    values: dict[str, Any] = {}
    for key, value in tasks.items():
        dotted = f"{prefix}tasks.{key}"
        if key == "queues":
            continue
        if key in _STR_KEYS:
            values[key] = _string(locate, dotted, value)
        elif key in _INT_KEYS:
            _, minimum, maximum = _INT_KEYS[key]
            values[key] = _integer(locate, dotted, value, minimum, maximum)
        elif key == "log_level":
            level = _string(locate, dotted, value).lower()
            if level not in LOG_LEVELS:
                raise locate.error(
                    dotted,
                    f"'{dotted}' must be one of {', '.join(LOG_LEVELS)}, got {_quoted(value)}",
                )
            values[key] = level
        else:
            raise locate.error(dotted, f"unknown key '{prefix}tasks.{_shown(key)}'")

    queues = dict(_DEFAULT_QUEUES)
    raw_queues = tasks.get("queues", {})
    if not isinstance(raw_queues, dict):
        raise locate.error(f"{prefix}tasks.queues", f"'{prefix}tasks.queues' must be a table")
    for name, spec in raw_queues.items():
        dotted = f"{prefix}tasks.queues.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
            raise locate.error(dotted, f"queue name {_quoted(name)} is not a valid name")
        if not isinstance(spec, dict):
            raise locate.error(dotted, f"'{dotted}' must be a table like {{ max_workers = 1 }}")
        for sub in spec:
            if sub != "max_workers":
                raise locate.error(dotted, f"unknown key '{dotted}.{_shown(sub)}'")
        workers = spec.get("max_workers", 1)
        queues[name] = _integer(
            locate, f"{dotted}.max_workers", workers, 1, limits.INT32_MAX, line_of=dotted
        )

    env_url = os.environ.get("RSX_DATABASE_URL")
    if env_url:
        values["database_url"] = _string(None, "RSX_DATABASE_URL", env_url)
    env_server = os.environ.get("RSX_SERVER_ID")
    if env_server:
        try:
            server_id = int(env_server)
        except ValueError:
            raise ConfigError(
                f"RSX_SERVER_ID must be an integer, got {_quoted(env_server)}"
            ) from None
        values["server_id"] = _integer(None, "RSX_SERVER_ID", server_id, 1, limits.INT32_MAX)

    url = values.get("database_url", _STR_KEYS["database_url"])
    problem = urls.check(url)
    if problem is not None:
        where = "RSX_DATABASE_URL" if env_url else f"{prefix}tasks.database_url"
        message = f"'{where}' is not a valid database URL: {problem}"
        raise ConfigError(message) if env_url else locate.error(where, message)

    timezone = values.get("timezone", _STR_KEYS["timezone"])
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise locate.error(
            f"{prefix}tasks.timezone",
            f"'{prefix}tasks.timezone' is not a known timezone: {_quoted(timezone)} "
            "(use an IANA name such as 'Europe/London')",
        ) from None

    root = path.parent
    merged = {**_STR_KEYS, **{key: spec[0] for key, spec in _INT_KEYS.items()}, **values}
    return Config(
        path=path,
        services=(root / merged["services"]).resolve(),
        output=(root / merged["output"]).resolve(),
        database_url=absolute_sqlite_url(url, root),
        storage=(root / merged["storage"]).resolve(),
        server_id=merged["server_id"],
        timezone=timezone,
        global_max_workers=merged["global_max_workers"],
        default_timeout=merged["default_timeout"],
        cleanup_stuck_after=merged["cleanup_stuck_after"],
        temp_directory_default_ttl=merged["temp_directory_default_ttl"],
        task_retention_days=merged["task_retention_days"],
        worker_idle_seconds=merged["worker_idle_seconds"],
        log_level=values.get("log_level", _DEFAULT_LOG_LEVEL).upper(),
        max_log_bytes=merged["max_log_bytes"],
        max_result_bytes=merged["max_result_bytes"],
        cancel_grace_seconds=merged["cancel_grace_seconds"],
        queues={name: QueueConfig(name, queues[name]) for name in sorted(queues)},
    )


def _string(locate: _Locator | None, dotted: str, value: object) -> str:
    """A non-empty string without control characters (they could reach generated code)."""
    if not isinstance(value, str) or not value:
        raise _error(locate, dotted, f"'{dotted}' must be a non-empty string")
    control = first_control(value)
    if control is not None:
        raise _error(
            locate, dotted, f"'{dotted}' must not contain control characters (found {control})"
        )
    return value


def _integer(
    locate: _Locator | None,
    dotted: str,
    value: object,
    minimum: int,
    maximum: int,
    line_of: str | None = None,
) -> int:
    """An integer (not a bool) from `minimum` to `maximum`, or an error naming `dotted`."""
    where = line_of or dotted
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(locate, where, f"'{dotted}' must be an integer")
    if value < minimum:
        raise _error(locate, where, f"'{dotted}' must be >= {minimum}")
    if value > maximum:
        shown = limits.MAX_DURATION_TEXT if maximum == limits.MAX_DURATION_SECONDS else str(maximum)
        raise _error(locate, where, f"'{dotted}' must be <= {shown}, got {value}")
    return value


def _error(locate: _Locator | None, dotted: str, message: str) -> ConfigError:
    """The error at `dotted`'s line in the file, or without a place (environment values)."""
    return ConfigError(message) if locate is None else locate.error(dotted, message)


def _quoted(value: object) -> str:
    """A value for a message: quoted, control characters escaped, at most 200 characters."""
    return f"'{shorten(escape_controls(str(value)))}'"


def _shown(key: str) -> str:
    """A key for a message, control characters escaped."""
    return escape_controls(key)


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

"""Checking task parameters against the generated pydantic model (imports pydantic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from runtime.errors import ParamsError
from runtime.registry import TaskEntry


def describe(exc: ValidationError) -> str:
    """Every bad field of a validation error in one line: `a: why; b: why`."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "params"
        if error["type"] == "extra_forbidden":
            reason = "unknown parameter"
        elif error["type"] == "missing":
            reason = "missing (required)"
        else:
            reason = f"{error['msg']} (got {error['input']!r})"
        parts.append(f"{field}: {reason}")
    return "; ".join(parts)


def validate(entry: TaskEntry, params: Mapping[str, Any] | None) -> BaseModel:
    """The params as the task's model (lax coercion, unknown names rejected)."""
    if params is not None and not isinstance(params, Mapping):
        raise ParamsError(
            f"params of {entry.service}.{entry.task} must be a dict, not {type(params).__name__}"
        )
    try:
        return entry.params.model_validate(dict(params or {}))
    except ValidationError as exc:
        name = f"{entry.service}.{entry.task}"
        raise ParamsError(f"invalid params for {name}: {describe(exc)}") from None

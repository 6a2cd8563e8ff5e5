"""Checking task parameters against the generated pydantic model (imports pydantic).

A validated model holds only values that strict JSON can carry: finite numbers, text that
UTF-8 can encode, at most `MAX_DEPTH` levels of lists and dicts. Anything else is a
`ParamsError` naming the field, raised before the task is queued or run, instead of a
`ValueError` when the row is written or a NaN silently stored as null.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from runtime.errors import ParamsError
from runtime.limits import MAX_INT_BITS
from runtime.registry import TaskEntry
from runtime.text import escape_controls, shorten

MAX_DEPTH = 100
"""The deepest nesting of lists and dicts a parameter may have."""

MAX_REPORTED = 10
"""A ParamsError names at most this many bad fields, then counts the rest."""

ECHO_LIMIT = 200
"""Echoed input is cut to about this many characters, with its full length."""


def describe(exc: ValidationError) -> str:
    """Every bad field of a validation error in one line: `a: why; b: why`."""
    parts = []
    for error in exc.errors():
        field = _field(error["loc"])
        if error["type"] == "extra_forbidden":
            reason = "unknown parameter"
        elif error["type"] == "missing":
            reason = "missing (required)"
        else:
            reason = f"{error['msg']} (got {echo(error['input'])})"
        parts.append(f"{field}: {reason}")
    return _joined(parts)


def echo(value: object) -> str:
    """`repr(value)` for a message, cut to about 200 characters, saying how long it was."""
    if isinstance(value, str) and len(value) > ECHO_LIMIT:
        return f"{value[:ECHO_LIMIT]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"<{type(value).__name__}>"
    return shorten(text, ECHO_LIMIT)


def validate(entry: TaskEntry, params: Mapping[str, Any] | None) -> BaseModel:
    """The params as the task's model (lax coercion, unknown names rejected).

    Raises `ParamsError` naming each bad field, including values strict JSON cannot hold.
    """
    return _validated(entry, params)[0]


def json_params(entry: TaskEntry, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The validated params as JSON values, what a dispatch stores; raises like `validate`.
    Plain scalars are their own JSON form, so only other values go through pydantic's
    serializer."""
    model, plain = _validated(entry, params)
    return dict(model.__dict__) if plain else model.model_dump(mode="json")


_SCALARS = (int, float, str, bool)
"""The field types `ScalarParams` knows (each may also take None)."""
_SCALAR_TYPES = frozenset({*_SCALARS, type(None)})
"""Types of values that cannot nest (checked in C before looking for containers)."""


def _validated(entry: TaskEntry, params: Mapping[str, Any] | None) -> tuple[BaseModel, bool]:
    """`validate`'s model, and whether its values are all plain scalars (`_plain`)."""
    name = f"{entry.service}.{entry.task}"
    if type(params) is dict:
        values = params
    elif params is not None and not isinstance(params, Mapping):
        raise ParamsError(f"params of {name} must be a dict, not {type(params).__name__}")
    else:
        values = dict(params or {})
    if not _SCALAR_TYPES.issuperset(map(type, values.values())) and any(
        isinstance(value, Mapping | list | tuple) for value in values.values()
    ):
        too_deep = [
            f"{_field(path)}: nested more than {MAX_DEPTH} levels deep" for path in _deep(values)
        ]
        if too_deep:
            raise ParamsError(f"invalid params for {name}: {_joined(too_deep)}")
    try:
        model = entry.params.model_validate(values)
    except ValidationError as exc:
        raise ParamsError(f"invalid params for {name}: {describe(exc)}") from None
    except (ValueError, RecursionError) as exc:
        raise ParamsError(f"invalid params for {name}: {shorten(str(exc), ECHO_LIMIT)}") from None
    if _plain(model.__dict__):
        return model, True
    problems = [f"{_field(path)}: {why}" for path, why in _not_json(model.model_dump())]
    if problems:
        raise ParamsError(f"invalid params for {name}: {_joined(problems)}")
    return model, False


def _plain(values: Mapping[str, Any]) -> bool:
    """Whether every value is a scalar that strict JSON surely carries (None, a bool, an
    ASCII string, a finite float, an int within bounds), as most params are: then
    `_not_json` has nothing to find, and its walk is skipped."""
    for value in values.values():
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is int:
            if value.bit_length() > MAX_INT_BITS:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif value is not None and kind is not bool:
            return False
    return True


def _deep(values: dict[str, Any]) -> Iterator[tuple[object, ...]]:
    """The path of each top-level parameter nested deeper than `MAX_DEPTH` (no recursion)."""
    for key, value in values.items():
        stack: list[tuple[object, int]] = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, Mapping):
                children: Any = item.values()
            elif isinstance(item, list | tuple):
                children = item
            else:
                continue
            if depth > MAX_DEPTH:
                yield (key,)
                break
            stack.extend((child, depth + 1) for child in children)


def _not_json(
    value: object, path: tuple[object, ...] = ()
) -> Iterator[tuple[tuple[object, ...], str]]:
    """Each place of a validated value that strict JSON (UTF-8, no NaN) cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, f"must be a finite number, not {value!r}"
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        yield path, f"is an integer of {value.bit_length()} bits (more than {MAX_INT_BITS})"
    elif isinstance(value, str):
        problem = _not_utf8(value)
        if problem:
            yield path, problem
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problem = _not_utf8(key) if isinstance(key, str) else None
            if problem:
                yield (*path, key), f"the key {problem}"
            yield from _not_json(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _not_json(item, (*path, index))


def _not_utf8(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode text (lone surrogate {text[exc.start]!a} at {exc.start})"
    return None


def _field(loc: tuple[object, ...] | list[object]) -> str:
    """A field path like `names.3` for a message: each part escaped and shortened."""
    text = ".".join(str(part) for part in loc) or "params"
    return shorten(escape_controls(text), ECHO_LIMIT)


def _joined(parts: list[str]) -> str:
    shown = parts[:MAX_REPORTED]
    more = len(parts) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "")


_REQUIRED = object()


class ScalarParams:
    """The fields of a params model made of plain scalars only, which tell without pydantic
    that params validate unchanged, as the params a worker reads back from a row usually
    do (see `scalar_params`)."""

    def __init__(self, fields: Mapping[str, tuple[type, bool, Any]]) -> None:
        self.fields = fields
        """Each field's type, whether it takes None, and its default (`_REQUIRED` when
        it has none)."""

    def values(self, params: Any) -> dict[str, Any] | None:
        """The values `validate` would give for `params`, when each given value already
        has its field's exact type and is a scalar strict JSON surely carries, no name is
        unknown and none required is missing; None when only pydantic can say (then
        `validate` decides, with its messages)."""
        if type(params) is not dict or not _plain(params):
            return None
        values: dict[str, Any] = {}
        given = 0
        for name, (kind, nullable, default) in self.fields.items():
            if name in params:
                value = params[name]
                if type(value) is not kind and not (value is None and nullable):
                    return None
                values[name] = value
                given += 1
            elif default is _REQUIRED:
                return None
            else:
                values[name] = default
        return values if given == len(params) else None


def scalar_params(model: type[BaseModel]) -> ScalarParams | None:
    """The `ScalarParams` of a model whose fields are all `int`, `float`, `str` or `bool`
    (each optionally `| None`, with a plain default if any); None for any other model: one
    with aliases, constraints, validators, a configuration beyond `extra="forbid"`, or
    other types."""
    if dict(model.model_config) not in ({}, {"extra": "forbid"}):
        return None
    decorators = model.__pydantic_decorators__
    if any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
        )
    ):
        return None
    fields: dict[str, tuple[type, bool, Any]] = {}
    for name, info in model.model_fields.items():
        kind: Any = info.annotation
        nullable = False
        args = typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 2:
            if type(None) not in args:
                return None
            kind = args[0] if args[1] is type(None) else args[1]
            nullable = True
        if (
            kind not in _SCALARS
            or info.metadata
            or info.alias is not None
            or info.validation_alias is not None
            or info.default_factory is not None
            or info.validate_default
        ):
            return None
        if info.is_required():
            default: Any = _REQUIRED
        elif info.default is None or _plain({name: info.default}):
            default = info.default
        else:
            return None
        fields[name] = (kind, nullable, default)
    return ScalarParams(fields)

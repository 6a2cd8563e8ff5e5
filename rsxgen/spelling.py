"""Parameter types as data, their canonical spelling, and reading a spelling back.

`JsonType` is what the scanner makes of an annotation; its `spelling` (`list[int]`,
`datetime.date | None`, `typing.Literal['a', 1]`) is stored in the manifest and the build
cache. `parse_spelling` reads a spelling back and accepts only canonical ones, so a cache
entry can be checked without rescanning. `JsonType.spell` writes a type for a class body
whose field names shadow `int`, `datetime` and the like, through module aliases no
parameter can take. Nothing here imports libcst.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

SCALARS = ("str", "int", "float", "bool")
MODULES = ("datetime", "typing")
SHADOWABLE = frozenset({*SCALARS, "list", "dict", *MODULES})
"""Names a type spelling uses; a field of the same name hides them in a class body."""

ALIASES = {"builtins": "_rsx_builtins", "datetime": "_rsx_datetime", "typing": "_rsx_typing"}
"""Modules as registry.py imports them when a field name hides them (underscore names
cannot be parameters, so no field can hide these)."""


class SpellingError(ValueError):
    """The text is not the canonical spelling of a parameter type."""


@dataclass(frozen=True)
class JsonType:
    """A parameter type: `kind` is a scalar name, `list`, `dict`, `optional` or `literal`."""

    kind: str
    args: tuple[JsonType, ...] = ()
    values: tuple[Any, ...] = ()

    @property
    def spelling(self) -> str:
        """The annotation as written in generated code."""
        return self.spell()

    def spell(self, shadowed: frozenset[str] = frozenset()) -> str:
        """The annotation, naming each of `shadowed` through its module alias."""

        def builtin(name: str) -> str:
            return f"{ALIASES['builtins']}.{name}" if name in shadowed else name

        def module(name: str) -> str:
            return ALIASES[name] if name in shadowed else name

        if self.kind == "any":
            return f"{module('typing')}.Any"
        if self.kind == "list":
            return f"{builtin('list')}[{self.args[0].spell(shadowed)}]"
        if self.kind == "dict":
            return f"{builtin('dict')}[{builtin('str')}, {self.args[0].spell(shadowed)}]"
        if self.kind == "optional":
            return f"{self.args[0].spell(shadowed)} | None"
        if self.kind == "literal":
            listed = ", ".join(repr(value) for value in self.values)
            return f"{module('typing')}.Literal[{listed}]"
        if self.kind in ("datetime.datetime", "datetime.date"):
            return f"{module('datetime')}.{self.kind.split('.')[1]}"
        if self.kind in SCALARS:
            return builtin(self.kind)
        return self.kind

    def names(self) -> frozenset[str]:
        """The shadowable names the spelling uses (`dict[str, int]`: dict, str, int)."""
        own = {
            "any": {"typing"},
            "literal": {"typing"},
            "list": {"list"},
            "dict": {"dict", "str"},
            "datetime.datetime": {"datetime"},
            "datetime.date": {"datetime"},
        }.get(self.kind, {self.kind} & SHADOWABLE)
        return frozenset(own).union(*(arg.names() for arg in self.args))

    def accepts(self, value: Any) -> bool:
        """Whether a literal default has this type (as mypy would see it)."""
        if self.kind == "any":
            return True
        if self.kind == "optional":
            return value is None or self.args[0].accepts(value)
        if self.kind == "literal":
            return any(type(value) is type(known) and value == known for known in self.values)
        if self.kind == "list":
            return isinstance(value, list) and all(self.args[0].accepts(item) for item in value)
        if self.kind == "dict":
            return isinstance(value, dict) and all(
                self.args[0].accepts(item) for item in value.values()
            )
        if self.kind == "None":
            return value is None
        if isinstance(value, bool):
            return self.kind == "bool"
        if self.kind == "int":
            return isinstance(value, int)
        if self.kind == "float":
            return isinstance(value, int | float)
        if self.kind == "str":
            return isinstance(value, str)
        return False


NONE = JsonType("None")


def parse_spelling(text: str) -> JsonType:
    """The type a canonical spelling denotes; `SpellingError` for any other text."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SpellingError(f"not a type spelling: {text!r}") from None
    try:
        kind = _read(tree.body)
    except RecursionError:
        raise SpellingError("a type spelling nested too deeply") from None
    if kind.spelling != text:
        raise SpellingError(f"not the canonical spelling of {kind.spelling}: {text!r}")
    return kind


def _read(node: ast.expr) -> JsonType:
    if isinstance(node, ast.Constant) and node.value is None:
        return NONE
    if isinstance(node, ast.Name) and node.id in SCALARS:
        return JsonType(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        dotted = f"{node.value.id}.{node.attr}"
        if dotted in ("datetime.datetime", "datetime.date"):
            return JsonType(dotted)
        if dotted == "typing.Any":
            return JsonType("any")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        inner = _read(node.left)
        if _read(node.right) == NONE and inner.kind not in ("optional", "None"):
            return JsonType("optional", (inner,))
    if isinstance(node, ast.Subscript):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        head = node.value
        if isinstance(head, ast.Name) and head.id == "list" and len(items) == 1:
            return JsonType("list", (_read(items[0]),))
        if isinstance(head, ast.Name) and head.id == "dict" and len(items) == 2:
            if _read(items[0]) == JsonType("str"):
                return JsonType("dict", (_read(items[1]),))
        if (
            isinstance(head, ast.Attribute)
            and isinstance(head.value, ast.Name)
            and (head.value.id, head.attr) == ("typing", "Literal")
        ):
            return JsonType("literal", values=tuple(_literal(item) for item in items))
    raise SpellingError(f"not a parameter type: {ast.unparse(node)!r}")


def _literal(node: ast.expr) -> Any:
    """One value of `typing.Literal[...]`: a string, an integer, a bool or None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, int) and not isinstance(value, bool):
            return -value
    elif isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, str | int)
    ):
        return node.value
    raise SpellingError(f"not a Literal value: {ast.unparse(node)!r}")


def to_json(value: Any) -> Any:
    """The JSON-ready form of a literal value: tuples become lists."""
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value

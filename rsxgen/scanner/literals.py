"""Reading literal constants from the syntax tree, without evaluating any code.

Decorator arguments and parameter defaults must be literals: numbers (a leading minus
included), strings, True/False/None, and list, tuple and dict displays of those.
"""

from __future__ import annotations

import math
from typing import Any

import libcst as cst

from rsxgen.spelling import to_json
from runtime.limits import MAX_INT_BITS

__all__ = ["NotJson", "NotLiteral", "literal_value", "string_value", "to_json"]


class NotLiteral(Exception):
    """The expression is not a literal constant; the message says what it is instead."""


class NotJson(Exception):
    """The expression is a literal but has no JSON form (bytes, complex, set, inf...)."""


def literal_value(node: cst.BaseExpression) -> Any:
    """The value of a literal expression; raises `NotLiteral` or `NotJson` otherwise."""
    if isinstance(node, cst.Name):
        if node.value in _NAMED:
            return _NAMED[node.value]
        raise NotLiteral(f"the name '{node.value}'")
    if isinstance(node, cst.Integer):
        number = node.evaluated_value
        if number.bit_length() > MAX_INT_BITS:
            raise NotJson(f"an integer of {number.bit_length()} bits (more than {MAX_INT_BITS})")
        return number
    if isinstance(node, cst.Float):
        return _finite(node.evaluated_value, node.value)
    if isinstance(node, cst.Imaginary):
        raise NotJson(f"the complex number {node.value}")
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus | cst.Plus):
        inner = literal_value(node.expression)
        if isinstance(inner, bool) or not isinstance(inner, int | float):
            raise NotLiteral("a signed expression that is not a number")
        return -inner if isinstance(node.operator, cst.Minus) else inner
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        if isinstance(node, cst.ConcatenatedString) and _has_fstring(node):
            raise NotLiteral("an f-string")
        value = string_value(node)
        if not isinstance(value, str):
            raise NotJson("a bytes literal")
        return value
    if isinstance(node, cst.FormattedString):
        raise NotLiteral("an f-string")
    if isinstance(node, cst.List | cst.Tuple):
        items = []
        for element in node.elements:
            if isinstance(element, cst.StarredElement):
                raise NotLiteral("an unpacking (*)")
            items.append(literal_value(element.value))
        return items if isinstance(node, cst.List) else tuple(items)
    if isinstance(node, cst.Dict):
        result: dict[Any, Any] = {}
        for entry in node.elements:
            if isinstance(entry, cst.StarredDictElement):
                raise NotLiteral("an unpacking (**)")
            assert isinstance(entry, cst.DictElement)
            key = literal_value(entry.key)
            if not isinstance(key, str):
                raise NotJson("a dict with keys that are not strings")
            result[key] = literal_value(entry.value)
        return result
    if isinstance(node, cst.Set):
        raise NotJson("a set")
    raise NotLiteral(_describe(node))


def string_value(node: cst.SimpleString | cst.ConcatenatedString) -> str | bytes | None:
    """The string's value (None for an f-string); a plain one-line string is read directly."""
    if isinstance(node, cst.SimpleString):
        raw = node.value
        if raw[0] in "'\"" and "\\" not in raw and raw[:3] not in ('"""', "'''"):
            return raw[1:-1]
    return node.evaluated_value


_NAMED: dict[str, Any] = {"True": True, "False": False, "None": None}


def _finite(value: float, written: str) -> float:
    if not math.isfinite(value):
        raise NotJson(f"the number {written}")
    return value


def _has_fstring(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.ConcatenatedString):
        return _has_fstring(node.left) or _has_fstring(node.right)
    return isinstance(node, cst.FormattedString)


_KINDS: tuple[tuple[type[cst.CSTNode], str], ...] = (
    (cst.Call, "a call"),
    (cst.Attribute, "an attribute"),
    (cst.BinaryOperation, "an arithmetic expression"),
    (cst.BooleanOperation, "a boolean expression"),
    (cst.Comparison, "a comparison"),
    (cst.Subscript, "a subscript"),
    (cst.Lambda, "a lambda"),
    (cst.IfExp, "a conditional expression"),
    (cst.ListComp, "a comprehension"),
    (cst.DictComp, "a comprehension"),
    (cst.SetComp, "a comprehension"),
    (cst.GeneratorExp, "a generator"),
)


def _describe(node: cst.CSTNode) -> str:
    for kind, label in _KINDS:
        if isinstance(node, kind):
            return label
    return "an expression"

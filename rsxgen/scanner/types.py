"""JSON-compatible parameter types: reading an annotation and spelling it canonically.

Accepted: `str int float bool None`, `list[T]`, `dict[str, T]`, `T | None`,
`Optional[T]`, `Union[T, None]`, `Literal[...]` of literals, `datetime.datetime`,
`datetime.date`, `typing.Any` (and `List`/`Dict` from typing; a bare `list`/`dict` means
`list[typing.Any]`/`dict[str, typing.Any]`). The spelling, used verbatim in generated
code, names only builtins, `datetime` and `typing`.
"""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from rsxgen.scanner.literals import NotJson, NotLiteral, literal_value, string_value
from rsxgen.scanner.report import code_of as _code
from rsxgen.spelling import NONE, JsonType

__all__ = ["NONE", "JsonType", "Resolve", "TypeProblem", "json_type"]

Resolve = Callable[[cst.CSTNode | str], "str | None"]
"""Maps a name or attribute node (or a dotted string) to the dotted name it refers to."""

_SCALARS = {
    "builtins.str": "str",
    "builtins.int": "int",
    "builtins.float": "float",
    "builtins.bool": "bool",
    "datetime.datetime": "datetime.datetime",
    "datetime.date": "datetime.date",
    "typing.Any": "any",
    "typing_extensions.Any": "any",
}
_LISTS = {"builtins.list", "typing.List"}
_DICTS = {"builtins.dict", "typing.Dict"}
_OPTIONALS = {"typing.Optional", "typing_extensions.Optional"}
_UNIONS = {"typing.Union", "typing_extensions.Union"}
_LITERALS = {"typing.Literal", "typing_extensions.Literal"}


class TypeProblem(Exception):
    """The annotation is not a JSON-compatible type; the message says which part."""


def json_type(node: cst.BaseExpression, resolve: Resolve) -> JsonType:
    """The JSON type an annotation expression denotes, or `TypeProblem`."""
    if isinstance(node, cst.Name) and node.value == "None":
        return NONE
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        return _forward(node, resolve)
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr):
        return _union([*_union_members(node.left), *_union_members(node.right)], resolve)
    if isinstance(node, cst.Subscript):
        return _generic(node, resolve)
    if isinstance(node, cst.Name | cst.Attribute):
        name = resolve(node)
        if name in _SCALARS:
            return JsonType(_SCALARS[name])
        if name in _LISTS:
            return JsonType("list", (JsonType("any"),))
        if name in _DICTS:
            return JsonType("dict", (JsonType("any"),))
    raise TypeProblem(f"'{_code(node)}' is not a JSON-compatible type")


def _generic(node: cst.Subscript, resolve: Resolve) -> JsonType:
    name = resolve(node.value)
    items: list[cst.BaseExpression] = []
    for element in node.slice:
        if not isinstance(element.slice, cst.Index) or element.slice.star is not None:
            raise TypeProblem(f"'{_code(node)}' is not a JSON-compatible type")
        items.append(element.slice.value)
    if name in _LITERALS:
        return _literal(node, items)
    if name in _LISTS and len(items) == 1:
        return JsonType("list", (json_type(items[0], resolve),))
    if name in _DICTS and len(items) == 2:
        if json_type(items[0], resolve).kind != "str":
            raise TypeProblem(
                f"'{_code(node)}' has keys that are not str (JSON objects have string keys)"
            )
        return JsonType("dict", (json_type(items[1], resolve),))
    if name in _OPTIONALS and len(items) == 1:
        return _union(items + [cst.Name("None")], resolve)
    if name in _UNIONS:
        return _union(items, resolve)
    raise TypeProblem(f"'{_code(node)}' is not a JSON-compatible type")


def _union(members: list[cst.BaseExpression], resolve: Resolve) -> JsonType:
    """`T | None` in any spelling; a union of two real types has no single JSON type."""
    kinds = [json_type(member, resolve) for member in members]
    real = {kind.args[0] if kind.kind == "optional" else kind for kind in kinds} - {NONE}
    if not real:
        return NONE
    if len(real) > 1:
        names = " | ".join(kind.spelling for kind in kinds)
        raise TypeProblem(f"'{names}' joins several types; use one type, optionally with | None")
    (only,) = real
    optional = any(kind == NONE or kind.kind == "optional" for kind in kinds)
    return JsonType("optional", (only,)) if optional else only


def _union_members(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    if (
        isinstance(node, cst.BinaryOperation)
        and isinstance(node.operator, cst.BitOr)
        and not node.lpar
    ):
        return [*_union_members(node.left), *_union_members(node.right)]
    return [node]


def _literal(node: cst.Subscript, items: list[cst.BaseExpression]) -> JsonType:
    """`Literal[...]`; a listed None is spelled `Literal[...] | None`, as linters want."""
    values = []
    for item in items:
        try:
            value = literal_value(item)
        except (NotLiteral, NotJson):
            value = _UNUSABLE
        if value is not None and not isinstance(value, str | int):
            raise TypeProblem(f"'{_code(node)}' may only list strings, integers, booleans and None")
        values.append(value)
    if None not in values:
        return JsonType("literal", values=tuple(values))
    rest = tuple(value for value in values if value is not None)
    return JsonType("optional", (JsonType("literal", values=rest),)) if rest else NONE


_UNUSABLE = object()


def _forward(node: cst.SimpleString | cst.ConcatenatedString, resolve: Resolve) -> JsonType:
    """A string annotation: the expression inside, read like any other annotation."""
    text = string_value(node)
    if not isinstance(text, str):
        raise TypeProblem(f"'{_code(node)}' is not a JSON-compatible type")
    try:
        inner = cst.parse_expression(text.strip())
    except cst.ParserSyntaxError:
        raise TypeProblem(f"the annotation string {text!r} is not a valid expression") from None
    return json_type(inner, resolve)

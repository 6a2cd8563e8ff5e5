"""1-based line and column of the nodes a diagnostic can point at.

libcst nodes carry no positions; its `PositionProvider` computes them for every node by
re-generating the code, which costs about twice the parse. The standard library's `ast`
(in C, a tenth of the libcst parse) carries them on every node, and the file is parsed
with it anyway to check that this Python can compile it. So the statements of both trees
are paired in source order and a libcst node's position is read from its `ast` twin.
Columns count characters, as `PositionProvider` does. The tests check that both agree
on every node this module locates; `provider_positions` is that reference and also the
fallback should the two trees ever pair up differently.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from rsxgen.scanner.names import suites

Position = tuple[int, int]

_NEWLINE = re.compile(r"\r\n|\r|\n")


class Positions:
    """Positions of the header nodes of functions, classes and assignments."""

    def __init__(self, text: str, module: cst.Module, tree: ast.Module) -> None:
        self._lines = _NEWLINE.split(text)
        self._twins: dict[cst.CSTNode, ast.AST] = {}
        self._known: dict[cst.CSTNode, Position] = {}
        self._fallback: dict[cst.CSTNode, Position] | None = None
        left = list(_cst_statements(module.body))
        right = list(_ast_statements(tree.body))
        pairs = list(zip(left, right, strict=False))
        if len(left) != len(right) or not all(map(_same_kind, pairs)):
            self._fallback = provider_positions(module)
        else:
            self._twins = dict(pairs)

    def of(self, node: cst.CSTNode, statement: cst.CSTNode) -> Position:
        """The position of `node`, which lies in the header of `statement`."""
        if self._fallback is not None:
            return self._fallback[node]
        if node not in self._known:
            self._index(statement)
        return self._known[node]

    def _index(self, statement: cst.CSTNode) -> None:
        twin = self._twins[statement]
        if isinstance(statement, cst.FunctionDef | cst.ClassDef):
            assert isinstance(twin, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            self._name(statement, twin)
            for decorator, expr in zip(statement.decorators, twin.decorator_list, strict=True):
                self._decorator(decorator, expr)
            if isinstance(statement, cst.FunctionDef):
                assert isinstance(twin, ast.FunctionDef | ast.AsyncFunctionDef)
                self._parameters(statement.params, twin.args)
                if statement.returns is not None and twin.returns is not None:
                    self._at(statement.returns.annotation, twin.returns)
        else:
            self._at(statement, twin)
            if isinstance(statement, cst.Assign):
                assert isinstance(twin, ast.Assign)
                for target, expr in zip(statement.targets, twin.targets, strict=True):
                    self._at(target.target, expr)
            elif isinstance(statement, cst.AnnAssign):
                assert isinstance(twin, ast.AnnAssign)
                self._at(statement.target, twin.target)

    def _name(self, statement: cst.FunctionDef | cst.ClassDef, twin: ast.stmt) -> None:
        """The name follows `def`/`class` (and `async`) and their whitespace."""
        line, column = self._convert(twin.lineno, twin.col_offset)
        if isinstance(statement, cst.FunctionDef):
            gaps = [statement.whitespace_after_def]
            if statement.asynchronous is not None:
                gaps.insert(0, statement.asynchronous.whitespace_after)
            skip = len("def") + (len("async") if statement.asynchronous is not None else 0)
        else:
            gaps = [statement.whitespace_after_class]
            skip = len("class")
        if all(isinstance(gap, cst.SimpleWhitespace) and "\\" not in gap.value for gap in gaps):
            column += skip + sum(
                len(gap.value) for gap in gaps if isinstance(gap, cst.SimpleWhitespace)
            )
        self._known[statement.name] = (line, column)
        self._known[statement] = (line, column)

    def _decorator(self, decorator: cst.Decorator, expr: ast.expr) -> None:
        line, column = self._at(decorator.decorator, expr)
        gap = decorator.whitespace_after_at
        self._known[decorator] = (line, column - 1 - len(gap.value))
        if isinstance(decorator.decorator, cst.Call) and isinstance(expr, ast.Call):
            self._arguments(decorator.decorator.args, expr)

    def _arguments(self, args: Sequence[cst.Arg], call: ast.Call) -> None:
        """Each argument's value, and the elements of a tuple or list value (`unique_key`
        and `retry_on` name parameters and classes one element at a time)."""
        positional = iter(call.args)
        keywords = iter(call.keywords)
        for arg in args:
            if arg.keyword is not None or arg.star == "**":
                twin = next(keywords).value
            else:
                twin = next(positional)
            self._at(arg.value, twin)
            if isinstance(arg.value, cst.Tuple | cst.List) and isinstance(
                twin, ast.Tuple | ast.List
            ):
                for element, item in zip(arg.value.elements, twin.elts, strict=True):
                    node = element if isinstance(element, cst.StarredElement) else element.value
                    self._at(node, item)

    def _parameters(self, params: cst.Parameters, args: ast.arguments) -> None:
        pairs: list[tuple[cst.Param, ast.arg]] = [
            *zip(params.posonly_params, args.posonlyargs, strict=True),
            *zip(params.params, args.args, strict=True),
            *zip(params.kwonly_params, args.kwonlyargs, strict=True),
        ]
        if isinstance(params.star_arg, cst.Param) and args.vararg is not None:
            pairs.append((params.star_arg, args.vararg))
        if params.star_kwarg is not None and args.kwarg is not None:
            pairs.append((params.star_kwarg, args.kwarg))
        for param, arg in pairs:
            line, column = self._convert(arg.lineno, arg.col_offset)
            self._known[param] = (
                line,
                column - len(param.star) if isinstance(param.star, str) else column,
            )
        positional = [*params.posonly_params, *params.params]
        with_default = [param for param in positional if param.default is not None]
        for param, expr in zip(with_default, args.defaults, strict=True):
            assert param.default is not None
            self._at(param.default, expr)
        for param, default in zip(params.kwonly_params, args.kw_defaults, strict=True):
            if param.default is not None and default is not None:
                self._at(param.default, default)

    def _at(self, node: cst.CSTNode, twin: ast.AST) -> Position:
        line, column = self._convert(twin.lineno, twin.col_offset)  # type: ignore[attr-defined]
        if isinstance(node, cst.Tuple) and node.lpar:
            # `ast` starts a tuple at its innermost parenthesis, libcst after all of them.
            gap = node.lpar[-1].whitespace_after
            if isinstance(gap, cst.SimpleWhitespace) and "\\" not in gap.value:
                column += 1 + len(gap.value)
        self._known[node] = (line, column)
        return line, column

    def _convert(self, line: int, byte_column: int) -> Position:
        text = self._lines[line - 1] if line <= len(self._lines) else ""
        if not text.isascii():
            byte_column = len(text.encode("utf-8")[:byte_column].decode("utf-8", "ignore"))
        return line, byte_column + 1


def provider_positions(module: cst.Module) -> dict[cst.CSTNode, Position]:
    """Every node's 1-based start from libcst's `PositionProvider` (slow, exact)."""
    computed = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return {node: (where.start.line, where.start.column + 1) for node, where in computed.items()}


def _cst_statements(body: Sequence[cst.BaseStatement]) -> Iterator[cst.CSTNode]:
    """Small and compound statements in source order, nested blocks included."""
    for statement in body:
        if isinstance(statement, cst.SimpleStatementLine):
            yield from statement.body
        else:
            yield from _compound_statements(statement)


def _compound_statements(statement: cst.BaseStatement) -> Iterator[cst.CSTNode]:
    """The statement, then its blocks; an `elif` is an `If` of its own, as in `ast`."""
    yield statement
    if isinstance(statement, cst.If):
        yield from _suite_statements(statement.body)
        if isinstance(statement.orelse, cst.If):
            yield from _compound_statements(statement.orelse)
        elif isinstance(statement.orelse, cst.Else):
            yield from _suite_statements(statement.orelse.body)
        return
    for suite in suites(statement):
        yield from _suite_statements(suite)


def _suite_statements(suite: cst.BaseSuite) -> Iterator[cst.CSTNode]:
    if isinstance(suite, cst.SimpleStatementSuite):
        yield from suite.body
    elif isinstance(suite, cst.IndentedBlock):
        yield from _cst_statements(suite.body)


_AST_BLOCKS = ("body", "handlers", "orelse", "finalbody", "cases")


def _ast_statements(body: Sequence[ast.AST]) -> Iterator[ast.AST]:
    for statement in body:
        yield statement
        for name in _AST_BLOCKS:
            for child in getattr(statement, name, ()):
                if isinstance(child, ast.stmt):
                    yield from _ast_statements([child])
                else:
                    yield from _ast_statements(child.body)


_KINDS: dict[type[cst.CSTNode], tuple[type[ast.AST], ...]] = {
    cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef),
    cst.ClassDef: (ast.ClassDef,),
    cst.Assign: (ast.Assign,),
    cst.AnnAssign: (ast.AnnAssign,),
    cst.Expr: (ast.Expr,),
}


def _same_kind(pair: tuple[cst.CSTNode, ast.AST]) -> bool:
    kinds = _KINDS.get(type(pair[0]))
    return kinds is None or isinstance(pair[1], kinds)

"""What the names in decorators and annotations refer to, from a module's import bindings.

`@task` counts only when the name resolves to `runtime.task` through the module's imports
(`from runtime import task [as t]`, `import runtime [as rt]`); a local `def task` or
Celery's `app.task` does not. This is the subset of libcst's `QualifiedNameProvider` that
decorators and annotations need, read from the statements alone: the provider's scope
analysis visits every node and costs several times the parse itself, which the build's
time budget (twice a bare parse) cannot carry. Two refinements over the provider:
module-level bindings are ordered, so a decorator sees the last binding *before* its
`def` (`from runtime import task` followed by a local `def task` is not ours), and
annotations, which may be forward references, fall back to any binding of the module.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.helpers import get_full_name_for_node

from rsxgen.names import normal

RUNTIME_EXPORTS = (
    "BackendError",
    "ConfigError",
    "ParamsError",
    "ResultError",
    "Task",
    "TaskError",
    "TaskId",
    "TaskInstance",
    "TaskNotFoundError",
    "TaskStatus",
    "UnknownTaskError",
    "schedule",
    "task",
)
"""What `from runtime import *` binds (`runtime.__all__`, kept here so nothing is imported)."""

RUNTIME_ERRORS = frozenset(name for name in RUNTIME_EXPORTS if name.endswith("Error"))
"""The exception classes among `RUNTIME_EXPORTS`."""

LOCAL = None
"""A binding that is not an import (def, class, assignment, parameter): not resolvable."""


class Scope:
    """Names bound in the body of function or class `owner`: name → import target or `LOCAL`.

    The bindings are read on first use: most bodies never need them.
    """

    def __init__(
        self, kind: str, owner: str, body: cst.BaseSuite, params: Iterable[str] = ()
    ) -> None:
        self.kind = kind
        self.owner = owner
        self._body = body
        self._params = params
        self._names: dict[str, str | None] | None = None

    @property
    def names(self) -> dict[str, str | None]:
        if self._names is None:
            self._names = {normal(name): LOCAL for name in self._params}
            for name, target in _suite_bindings(self._body):
                self._names[normal(name)] = _normal_target(target)
        return self._names


@dataclass
class ModuleNames:
    """The module's bindings in statement order: name → [(top-level index, target)]."""

    bindings: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)

    @classmethod
    def of(cls, module: cst.Module) -> ModuleNames:
        table = cls()
        for index, statement in enumerate(module.body):
            for name, target in bindings_of((statement,)):
                entry = (index, _normal_target(target))
                table.bindings.setdefault(normal(name), []).append(entry)
        return table

    def qualified(
        self,
        node: cst.CSTNode | str,
        top: int,
        scopes: Sequence[Scope] = (),
        *,
        forward: bool = False,
    ) -> str | None:
        """The dotted name `node` refers to, or None when it is local or unknown.

        `top` is the index of the top-level statement that uses it; `scopes` are the
        enclosing function/class bodies, innermost last. With `forward`, a module name
        bound only after `top` still counts (annotations may be forward references);
        without, a builtin it shadows only later is still the builtin at `top`.
        """
        dotted = node if isinstance(node, str) else get_full_name_for_node(node)
        if dotted is None:
            return None
        dotted = normal(dotted)
        head, _, rest = dotted.partition(".")
        for depth, scope in enumerate(reversed(scopes)):
            if scope.kind == "class" and depth > 0:
                continue
            if head in scope.names:
                return _join(scope.names[head], rest)
        entries = self.bindings.get(head)
        if entries:
            before = [target for index, target in entries if index < top]
            if before:
                return _join(before[-1], rest)
            if forward:
                return _join(entries[-1][1], rest)
        if hasattr(builtins, head):
            return f"builtins.{dotted}"
        return None


def bindings_of(statements: Iterable[cst.BaseStatement]) -> Iterator[tuple[str, str | None]]:
    """Every (name, target) bound by these statements in their own scope, in order."""
    for statement in statements:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                yield from _small_bindings(small)
        elif isinstance(statement, cst.FunctionDef | cst.ClassDef):
            yield statement.name.value, LOCAL
        else:
            yield from _compound_bindings(statement)


def _small_bindings(small: cst.BaseSmallStatement) -> Iterator[tuple[str, str | None]]:
    if isinstance(small, cst.Import):
        for alias in small.names:
            full = get_full_name_for_node(alias.name) or ""
            if alias.asname is not None:
                yield _alias_name(alias), full
            else:
                head = full.split(".")[0]
                yield head, head
    elif isinstance(small, cst.ImportFrom):
        module = "." * len(small.relative) + (
            get_full_name_for_node(small.module) or "" if small.module is not None else ""
        )
        prefix = module if module.endswith(".") else f"{module}."
        if isinstance(small.names, cst.ImportStar):
            if module == "runtime":
                for name in RUNTIME_EXPORTS:
                    yield name, f"runtime.{name}"
            return
        for alias in small.names:
            name = get_full_name_for_node(alias.name) or ""
            yield (_alias_name(alias) if alias.asname else name), prefix + name
    elif isinstance(small, cst.Assign):
        for target in small.targets:
            yield from ((name, LOCAL) for name in _target_names(target.target))
    elif isinstance(small, cst.AnnAssign | cst.AugAssign):
        if not isinstance(small, cst.AnnAssign) or small.value is not None:
            yield from ((name, LOCAL) for name in _target_names(small.target))


def _compound_bindings(statement: cst.BaseStatement) -> Iterator[tuple[str, str | None]]:
    if isinstance(statement, cst.For):
        yield from ((name, LOCAL) for name in _target_names(statement.target))
    elif isinstance(statement, cst.With):
        for item in statement.items:
            if item.asname is not None:
                yield from ((name, LOCAL) for name in _target_names(item.asname.name))
    for suite in suites(statement):
        yield from _suite_bindings(suite)


def _suite_bindings(suite: cst.BaseSuite) -> Iterator[tuple[str, str | None]]:
    if isinstance(suite, cst.SimpleStatementSuite):
        for small in suite.body:
            yield from _small_bindings(small)
    elif isinstance(suite, cst.IndentedBlock):
        yield from bindings_of(suite.body)


def suites(statement: cst.BaseStatement) -> list[cst.BaseSuite]:
    """The blocks of a compound statement, in source order (elif chains included)."""
    found: list[cst.BaseSuite] = []
    body = getattr(statement, "body", None)
    if isinstance(body, cst.BaseSuite):
        found.append(body)
    for handler in getattr(statement, "handlers", ()):
        found.append(handler.body)
    for case in getattr(statement, "cases", ()):
        found.append(case.body)
    orelse = getattr(statement, "orelse", None)
    if isinstance(orelse, cst.If):
        found.extend(suites(orelse))
    elif isinstance(orelse, cst.Else):
        found.append(orelse.body)
    final = getattr(statement, "finalbody", None)
    if isinstance(final, cst.Finally):
        found.append(final.body)
    return found


def _target_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, cst.Tuple | cst.List):
        for element in target.elements:
            yield from _target_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _target_names(target.value)


def _alias_name(alias: cst.ImportAlias) -> str:
    assert alias.asname is not None
    return get_full_name_for_node(alias.asname.name) or ""


def _normal_target(target: str | None) -> str | None:
    return target if target is None else normal(target)


def _join(target: str | None, rest: str) -> str | None:
    if target is None:
        return None
    return f"{target}.{rest}" if rest else target

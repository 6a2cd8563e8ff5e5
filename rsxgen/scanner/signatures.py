"""The signature gatherer: each task's parameters as `ParamFacts`s, its result type, and
their problems.

Checks RSX007-RSX011: the first parameter is the `TaskInstance`; every other one has a
JSON-compatible annotation and, if any, a literal default of that type (required for a
scheduled task, which runs without arguments); no `*args`, `**kwargs` or `/`. And RSX021:
the return annotation, if any, is a JSON-compatible type too (or None).
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from rsxgen.names import normal, reserved_param
from rsxgen.scanner.decorators import Decorated
from rsxgen.scanner.facts import ParamFacts
from rsxgen.scanner.literals import NotJson, NotLiteral, literal_value, string_value, to_json
from rsxgen.scanner.names import ModuleNames
from rsxgen.scanner.report import Report, code_of
from rsxgen.scanner.types import JsonType, Resolve, TypeProblem, json_type

ANY = JsonType("any")

TASK_INSTANCE = frozenset({"runtime.TaskInstance", "runtime.instance.TaskInstance"})


class SignatureGatherer:
    """For each task (by function name): `params`, its parameters after the TaskInstance
    that are valid; `param_names`, the names of all of them; `results`, the spelling of
    its return type (`typing.Any` without annotation, None when it is not JSON-compatible).
    """

    def __init__(self, names: ModuleNames, report: Report) -> None:
        self.names = names
        self.report = report
        self.params: dict[str, tuple[ParamFacts, ...]] = {}
        self.param_names: dict[str, tuple[str, ...]] = {}
        self.results: dict[str, str | None] = {}
        self._resolve: Resolve = lambda part: None

    def gather(self, found: Decorated) -> None:
        node = found.function
        name = node.name.value
        params = node.params

        def resolve(part: cst.CSTNode | str) -> str | None:
            return self.names.qualified(part, found.top, found.scopes, forward=True)

        self._resolve = resolve
        if params.posonly_params or isinstance(params.posonly_ind, cst.ParamSlash):
            self._error(
                node.name,
                node,
                "RSX009",
                f"task '{name}' has positional-only parameters (/); "
                "its parameters are passed by name",
            )
        if isinstance(params.star_arg, cst.Param):
            self._error(
                node.name,
                node,
                "RSX009",
                f"task '{name}' takes *{params.star_arg.name.value}; "
                "declare each parameter by name",
            )
        if params.star_kwarg is not None:
            self._error(
                node.name,
                node,
                "RSX009",
                f"task '{name}' takes **{params.star_kwarg.name.value}; "
                "declare each parameter by name",
            )
        positional = [*params.posonly_params, *params.params]
        everything = [*positional, *params.kwonly_params]
        instance = next((p for p in everything if self._annotated_task_instance(p)), None)
        if positional and positional[0] is instance:
            rest = everything[1:]
        else:
            self._misplaced_instance(node, positional[0] if positional else None, instance)
            if instance is not None:
                rest = [p for p in everything if p is not instance]
            else:
                rest = everything[1:] if positional else everything
        self.params[name] = tuple(
            param
            for param in (self._param(p, node, found.schedule is not None) for p in rest)
            if param
        )
        self.param_names[name] = tuple(normal(p.name.value) for p in rest)
        self.results[name] = self._result(node)

    def _result(self, node: cst.FunctionDef) -> str | None:
        """The return type's spelling; RSX021 when it has no JSON form."""
        if node.returns is None:
            return ANY.spelling
        annotation = node.returns.annotation
        try:
            return json_type(annotation, self._resolve).spelling
        except TypeProblem as problem:
            self._error(
                annotation,
                node,
                "RSX021",
                f"the return annotation of task '{normal(node.name.value)}': {problem} "
                "(a result is stored as JSON: use a parameter type, None or typing.Any)",
            )
        return None

    def _misplaced_instance(
        self, node: cst.FunctionDef, first: cst.Param | None, instance: cst.Param | None
    ) -> None:
        """RSX007, once: at the first parameter, or at the name when there is none."""
        name = node.name.value
        if instance is not None:
            hint = f"; move '{instance.name.value}: TaskInstance' to the front"
        else:
            hint = f": def {name}(task: TaskInstance, ...)"
        if first is None:
            self._error(
                node.name,
                node,
                "RSX007",
                f"task '{name}' must take the task instance as its first parameter{hint}",
            )
            return
        annotation = first.annotation.annotation if first.annotation is not None else None
        shown = f": {code_of(annotation)}" if annotation is not None else " (no annotation)"
        self._error(
            first,
            node,
            "RSX007",
            f"the first parameter '{first.name.value}'{shown} must be annotated TaskInstance{hint}",
        )

    def _annotated_task_instance(self, param: cst.Param) -> bool:
        return param.annotation is not None and self._is_task_instance(param.annotation.annotation)

    def _is_task_instance(self, annotation: cst.BaseExpression) -> bool:
        if isinstance(annotation, cst.SimpleString | cst.ConcatenatedString):
            text = string_value(annotation)
            if not isinstance(text, str):
                return False
            try:
                annotation = cst.parse_expression(text.strip())
            except cst.ParserSyntaxError:
                return False
        return self._resolve(annotation) in TASK_INSTANCE

    def _param(self, param: cst.Param, node: cst.FunctionDef, scheduled: bool) -> ParamFacts | None:
        name = normal(param.name.value)
        kind: JsonType | None = None
        reserved = reserved_param(name)
        if reserved is not None:
            self._error(param, node, "RSX016", f"parameter '{name}' {reserved}; rename it")
        if param.annotation is None:
            self._error(
                param,
                node,
                "RSX008",
                f"parameter '{name}' needs a type annotation (e.g. int, str, list[str])",
            )
        else:
            try:
                kind = json_type(param.annotation.annotation, self._resolve)
            except TypeProblem as problem:
                self._error(param, node, "RSX008", f"parameter '{name}': {problem}")
        if param.default is None:
            if scheduled:
                self._error(
                    param,
                    node,
                    "RSX011",
                    f"parameter '{name}' needs a default: a scheduled task runs without arguments",
                )
            return ParamFacts(name, kind.spelling) if kind and reserved is None else None
        value = self._default(param, param.default, node)
        if value is _MISSING or kind is None or reserved is not None:
            return None
        if not kind.accepts(value):
            self._error(
                param.default,
                node,
                "RSX010",
                f"the default {code_of(param.default)} of '{name}' "
                f"does not match its type {kind.spelling}",
            )
            return None
        return ParamFacts(name, kind.spelling, repr(value), to_json(value))

    def _default(self, param: cst.Param, default: cst.BaseExpression, node: cst.FunctionDef) -> Any:
        try:
            return literal_value(default)
        except NotLiteral as problem:
            self._error(
                default,
                node,
                "RSX010",
                f"the default of '{param.name.value}' must be a literal constant, not {problem}",
            )
        except NotJson as problem:
            self._error(
                default,
                node,
                "RSX010",
                f"the default of '{param.name.value}' is {problem}, which has no JSON form",
            )
        return _MISSING

    def _error(self, node: cst.CSTNode, statement: cst.CSTNode, code: str, message: str) -> None:
        self.report.error(node, statement, code, message)


_MISSING = object()

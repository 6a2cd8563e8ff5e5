"""The decorator gatherer: which functions carry `@task`/`@schedule`, and what their arguments say.

It walks statements only (never into expressions), so its cost is a small fraction of
the parse. It checks RSX002-RSX006 and RSX012; signatures are the next gatherer's concern,
and `@task`'s keyword-only options (retries, uniqueness, delay) the options gatherer's.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from rsxgen.scanner.cron import CronError, check_cron
from rsxgen.scanner.literals import NotJson, NotLiteral, literal_value
from rsxgen.scanner.names import ModuleNames, Scope, suites
from rsxgen.scanner.report import Report, code_of
from runtime.limits import MAX_DURATION_SECONDS, MAX_DURATION_TEXT

TASK = frozenset({"runtime.task", "runtime.decorators.task"})
SCHEDULE = frozenset({"runtime.schedule", "runtime.decorators.schedule"})
TASK_ARGUMENTS = ("description", "queue", "timeout")
TASK_OPTIONS = (
    "retries",
    "retry_backoff",
    "retry_on",
    "unique",
    "unique_key",
    "unique_while",
    "delay",
)
"""`@task`'s keyword-only arguments, checked by `rsxgen.scanner.options`."""
SCHEDULE_ARGUMENTS = ("cron",)
_KINDS = {**dict.fromkeys(TASK, "task"), **dict.fromkeys(SCHEDULE, "schedule")}


@dataclass
class Decorated:
    """A function with `@task` and/or `@schedule`, and what its decorators say.

    `misplaced` says why it cannot be a task (RSX012) or is None for a module-level
    sync def; `scopes` are the bodies around it, for resolving its annotations. `options`
    are the keyword-only `@task` arguments written, by name (see `TASK_OPTIONS`).
    """

    function: cst.FunctionDef
    top: int
    scopes: tuple[Scope, ...]
    task: cst.Decorator | None = None
    schedule: cst.Decorator | None = None
    misplaced: str | None = None
    description: str = ""
    queue: str | None = None
    queue_node: cst.BaseExpression | None = None
    timeout: int | None = None
    cron: str | None = None
    cron_node: cst.BaseExpression | None = None
    options: dict[str, cst.BaseExpression] = field(default_factory=dict)


class DecoratorGatherer:
    """Fills `decorated` (in source order) and reports decorator problems to `report`.

    It walks statements by hand rather than as a `cst.CSTVisitor`: libcst's traversal
    rebuilds and re-validates every node it passes, which would cost half a parse.
    """

    def __init__(self, names: ModuleNames, report: Report) -> None:
        self.names = names
        self.report = report
        self.decorated: list[Decorated] = []
        self._top = 0
        self._scopes: list[Scope] = []
        self._blocks = 0

    def gather(self, module: cst.Module) -> None:
        for index, statement in enumerate(module.body):
            self._top = index
            self._visit(statement)

    def _visit(self, statement: cst.BaseStatement) -> None:
        if isinstance(statement, cst.SimpleStatementLine):
            self._visit_small(statement.body)
        elif isinstance(statement, cst.FunctionDef):
            self.visit_FunctionDef(statement)
        elif isinstance(statement, cst.ClassDef):
            self.visit_ClassDef(statement)
        else:
            self._blocks += 1
            for suite in suites(statement):
                self._visit_suite(suite)
            self._blocks -= 1

    def _visit_suite(self, suite: cst.BaseSuite) -> None:
        if isinstance(suite, cst.SimpleStatementSuite):
            self._visit_small(suite.body)
        else:
            assert isinstance(suite, cst.IndentedBlock)
            for statement in suite.body:
                self._visit(statement)

    def _visit_small(self, statements: Sequence[cst.BaseSmallStatement]) -> None:
        for small in statements:
            self._applied_by_call(small)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        """Record the function if `@task`/`@schedule` decorate it, then look inside."""
        found = self._decorators(node, node.decorators)
        if found is not None:
            self._check(found)
        params = [p.name.value for p in _all_params(node.params)]
        self._scopes.append(Scope("function", node.name.value, node.body, params))
        self._visit_suite(node.body)
        self._scopes.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        """A class cannot be a task; its methods are looked at (and cannot be either)."""
        for decorator in node.decorators:
            kind = self._kind(decorator)
            if kind is not None:
                self.report.error(
                    node.name,
                    node,
                    "RSX012",
                    f"@{kind} decorates class '{node.name.value}'; a task is a module-level def",
                )
        self._scopes.append(Scope("class", node.name.value, node.body))
        self._visit_suite(node.body)
        self._scopes.pop()

    def _kind(self, decorator: cst.Decorator) -> str | None:
        """'task', 'schedule' or None: what the decorator resolves to."""
        expr = decorator.decorator
        return self._resolve_kind(expr.func if isinstance(expr, cst.Call) else expr)

    def _resolve_kind(self, target: cst.BaseExpression) -> str | None:
        if not isinstance(target, cst.Name | cst.Attribute):
            return None
        return _KINDS.get(self.names.qualified(target, self._top, self._scopes) or "")

    def _decorators(
        self, node: cst.FunctionDef, decorators: Sequence[cst.Decorator]
    ) -> Decorated | None:
        found: Decorated | None = None
        for decorator in decorators:
            kind = self._kind(decorator)
            if kind is None:
                continue
            if found is None:
                found = Decorated(
                    node, self._top, tuple(self._scopes), misplaced=self._misplaced(node)
                )
            if getattr(found, kind) is not None:
                self.report.error(
                    decorator,
                    node,
                    "RSX013",
                    f"'{node.name.value}' has a second @{kind}; a task takes one of each",
                )
                continue
            setattr(found, kind, decorator)
        if found is not None:
            self.decorated.append(found)
        return found

    def _misplaced(self, node: cst.FunctionDef) -> str | None:
        if self._scopes and self._scopes[-1].kind == "class":
            return f"it is a method of class '{self._scopes[-1].owner}'"
        if self._scopes:
            return f"it is nested in function '{self._scopes[-1].owner}'"
        if self._blocks:
            return "it is defined inside a block (if/try/with/for/while/match)"
        if node.asynchronous is not None:
            return "it is an async def"
        return None

    def _check(self, found: Decorated) -> None:
        node = found.function
        if found.task is None:
            self.report.error(
                node.name,
                node,
                "RSX006",
                f"'{node.name.value}' has @schedule but no @task; add @task(\"description\")",
            )
        elif found.misplaced is not None:
            self.report.error(
                node.name,
                node,
                "RSX012",
                f"task '{node.name.value}' must be a module-level sync def: {found.misplaced}",
            )
        if found.task is not None:
            self._task_arguments(found, found.task)
        if found.schedule is not None:
            self._schedule_argument(found, found.schedule)

    def _task_arguments(self, found: Decorated, decorator: cst.Decorator) -> None:
        bound = self._bind(decorator, found.function, "task", TASK_ARGUMENTS, TASK_OPTIONS)
        description = bound.get("description")
        if description is None:
            self.report.error(
                decorator,
                found.function,
                "RSX003",
                '@task needs a description, e.g. @task("Resize uploaded images")',
            )
        else:
            self._description(found, description)
        if "queue" in bound:
            self._queue(found, bound["queue"])
        if "timeout" in bound:
            self._timeout(found, bound["timeout"])
        found.options = {name: bound[name] for name in TASK_OPTIONS if name in bound}

    def _description(self, found: Decorated, expr: cst.BaseExpression) -> None:
        value = self._literal(expr, found.function, "the description", "a string")
        if value is _MISSING:
            return
        if not isinstance(value, str):
            message = f"the description must be a non-empty string, got {code_of(expr)}"
            self.report.error(expr, found.function, "RSX003", message)
        elif not value.strip():
            self.report.error(expr, found.function, "RSX003", "the description is empty")
        else:
            found.description = value

    def _queue(self, found: Decorated, expr: cst.BaseExpression) -> None:
        value = self._literal(expr, found.function, "the queue", "a string")
        if isinstance(value, str):
            found.queue, found.queue_node = value, expr
        elif value is not _MISSING:
            message = f"the queue must be a string literal naming a queue, got {code_of(expr)}"
            self.report.error(expr, found.function, "RSX002", message)

    def _timeout(self, found: Decorated, expr: cst.BaseExpression) -> None:
        """A positive int up to the duration bound; `timeout=None` means the config's."""
        value = self._literal(expr, found.function, "the timeout", "an integer")
        if value is _MISSING or value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            message = (
                f"the timeout must be a positive integer number of seconds, got {code_of(expr)}"
            )
            self.report.error(expr, found.function, "RSX004", message)
        elif value > MAX_DURATION_SECONDS:
            message = f"the timeout must be at most {MAX_DURATION_TEXT}, got {code_of(expr)}"
            self.report.error(expr, found.function, "RSX004", message)
        else:
            found.timeout = value

    def _schedule_argument(self, found: Decorated, decorator: cst.Decorator) -> None:
        node = found.function
        cron = self._bind(decorator, node, "schedule", SCHEDULE_ARGUMENTS).get("cron")
        if cron is None:
            self.report.error(
                decorator,
                node,
                "RSX005",
                '@schedule needs a cron expression, e.g. @schedule("0 3 * * *")',
            )
            return
        value = self._literal(cron, node, "the cron expression", "a string")
        if value is _MISSING:
            return
        if not isinstance(value, str):
            self.report.error(
                cron,
                node,
                "RSX005",
                f'the cron expression must be a string like "0 3 * * *", got {code_of(cron)}',
            )
            return
        found.cron, found.cron_node = value, cron
        try:
            check_cron(value)
        except CronError as problem:
            self.report.error(cron, node, "RSX005", f"invalid cron expression '{value}': {problem}")

    def _bind(
        self,
        decorator: cst.Decorator,
        node: cst.FunctionDef,
        kind: str,
        names: tuple[str, ...],
        keyword_only: tuple[str, ...] = (),
    ) -> dict[str, cst.BaseExpression]:
        """The decorator's arguments by parameter name (`names` may be given by position,
        `keyword_only` only by keyword); misuse is RSX002 at the value."""
        call = decorator.decorator
        bound: dict[str, cst.BaseExpression] = {}
        if not isinstance(call, cst.Call):
            return bound
        positional = 0
        for arg in call.args:
            if arg.star:
                self.report.error(
                    arg.value,
                    node,
                    "RSX002",
                    f"@{kind} takes literal arguments, not an unpacking ({arg.star})",
                )
                continue
            if arg.keyword is None:
                if positional >= len(names):
                    self.report.error(
                        arg.value,
                        node,
                        "RSX002",
                        f"@{kind} takes at most {len(names)} positional argument"
                        + ("s" if len(names) > 1 else "")
                        + f" ({', '.join(names)})",
                    )
                    continue
                name = names[positional]
                positional += 1
            else:
                name = arg.keyword.value
                if name not in names and name not in keyword_only:
                    known = names + keyword_only
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    self.report.error(
                        arg.value,
                        node,
                        "RSX002",
                        f"@{kind} has no argument '{name}' (it takes {', '.join(known)}){hint}",
                    )
                    continue
            if name in bound:
                self.report.error(arg.value, node, "RSX002", f"@{kind} got '{name}' twice")
                continue
            bound[name] = arg.value
        return bound

    def _literal(
        self, expr: cst.BaseExpression, node: cst.FunctionDef, what: str, kind: str
    ) -> object:
        """The literal's value, or `_MISSING` after reporting RSX002 for a non-literal."""
        try:
            return literal_value(expr)
        except (NotLiteral, NotJson) as problem:
            self.report.error(expr, node, "RSX002", f"{what} must be {kind} literal, not {problem}")
        return _MISSING

    def _applied_by_call(self, small: cst.BaseSmallStatement) -> None:
        """`name = task("...")(lambda t: ...)`: a task made by calling the decorator (RSX012)."""
        if not isinstance(small, cst.Assign | cst.AnnAssign | cst.Expr):
            return
        value = small.value
        if not (isinstance(value, cst.Call) and isinstance(value.func, cst.Call)):
            return
        kind = self._resolve_kind(value.func.func)
        if kind is None:
            return
        where: cst.CSTNode = small
        if isinstance(small, cst.Assign):
            where = small.targets[0].target
        elif isinstance(small, cst.AnnAssign):
            where = small.target
        applied = value.args[0].value if value.args else None
        what = "a lambda" if isinstance(applied, cst.Lambda) else "a function by calling it"
        self.report.error(
            where,
            small,
            "RSX012",
            f"@{kind} is applied to {what}; a task is a module-level def decorated with @{kind}",
        )


_MISSING = object()


def _all_params(params: cst.Parameters) -> list[cst.Param]:
    found = [*params.posonly_params, *params.params, *params.kwonly_params]
    if isinstance(params.star_arg, cst.Param):
        found.append(params.star_arg)
    if params.star_kwarg is not None:
        found.append(params.star_kwarg)
    return found

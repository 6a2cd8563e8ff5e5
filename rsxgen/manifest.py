"""The intermediate representation between the scanner and the templates.

The scanner produces `ServiceScan`s; validation merges them into a `Manifest`, the only
value the templates see. Everything a template needs (class names, type spellings, import
lists) is a property here, so the templates stay free of logic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rsxgen.scanner.facts import ParamFacts, TaskOptions
from rsxgen.spelling import ALIASES, SHADOWABLE, JsonType, parse_spelling
from runtime.text import escape_controls

HEADER_SOURCE_DEFAULT = "services"


def camel(dotted: str) -> str:
    """`billing.invoice` + `send_mail` style names to `BillingInvoice` / `SendMail`."""
    parts = dotted.replace(".", "_").split("_")
    return "".join(part[:1].upper() + part[1:] for part in parts if part)


@dataclass(frozen=True)
class Param(ParamFacts):
    """One task parameter as generated code spells it (see `ParamFacts` for the fields)."""

    @classmethod
    def of(cls, facts: ParamFacts) -> Param:
        """The manifest's view of a scanned parameter."""
        return cls(facts.name, facts.type, facts.default, facts.default_value)

    @property
    def signature(self) -> str:
        """`name: type` or `name: type = default`, as written in the client."""
        if self.default is None:
            return f"{self.name}: {self.type}"
        return f"{self.name}: {self.type} = {self.default}"

    @property
    def client_line(self) -> str:
        """The parameter's line in a client method, marking a mutable default as intended.

        The client only forwards the value to the runtime, which validates a copy, so a
        list or dict default is safe here; ruff's B006 is told so.
        """
        mutable = self.default is not None and self.default[:1] in ("[", "{")
        return f"{self.signature},  # noqa: B006" if mutable else f"{self.signature},"

    @cached_property
    def kind(self) -> JsonType:
        """The type `type` spells."""
        return parse_spelling(self.type)

    def field(self, shadowed: frozenset[str] = frozenset()) -> str:
        """The pydantic model field line (without indentation), naming each of `shadowed`
        through its module alias (a field called `int` hides `int` in the class body)."""
        spelled = f"{self.name}: {self.kind.spell(shadowed)}"
        return spelled if self.default is None else f"{spelled} = {self.default}"


@dataclass(frozen=True)
class TaskDef:
    """One task: where it is defined, how it runs, what it takes and returns.

    `result` is the return type's canonical spelling (`typing.Any` without annotation);
    `options` the retry, uniqueness and delay options."""

    service: str
    name: str
    description: str
    queue: str
    timeout: int
    module: str
    function: str
    params: tuple[Param, ...] = ()
    cron: str | None = None
    source: str = ""
    line: int = 0
    col: int = 0
    result: str = "typing.Any"
    options: TaskOptions = TaskOptions()

    @property
    def scheduled(self) -> bool:
        return self.cron is not None

    @cached_property
    def result_kind(self) -> JsonType:
        """The type `result` spells."""
        return parse_spelling(self.result)

    @property
    def result_alias(self) -> str:
        """Name of the alias of the result type in tasks.py, which a method body can use
        whatever its parameters are called (they never start with `_`)."""
        return f"_{camel(self.service)}{camel(self.name)}Result"

    @property
    def registry_options(self) -> tuple[str, ...]:
        """The `TaskEntry` arguments of the options, as registry.py writes them (a tuple
        of names one per line, at the indentation of an argument)."""
        options = self.options
        unique = "None" if options.unique is None else _strings(options.unique)
        return (
            f"retries={options.retries}",
            f"retry_backoff={options.retry_backoff!r}",
            f"retry_on={_strings(options.retry_on)}",
            f"unique={unique}",
            f'unique_while="{options.unique_while}"',
            f"delay={options.delay!r}",
        )

    @property
    def model_name(self) -> str:
        """Name of the pydantic parameter model in registry.py."""
        return f"{camel(self.service)}{camel(self.name)}Params"

    @property
    def client_class(self) -> str:
        """Name of the client class in tasks.py."""
        return f"_{camel(self.service)}{camel(self.name)}Task"

    @property
    def docstring(self) -> str:
        """The description as the client class's docstring: triple-quoted when that is safe."""
        text = self.description
        if text.isprintable() and '"' not in text and "\\" not in text:
            return f'"""{text}"""'
        return repr(text)

    @property
    def batch_type(self) -> str:
        """Name of the TypedDict of one item of `dispatch_many` in tasks.py."""
        return f"_{camel(self.service)}{camel(self.name)}Item"

    @property
    def batch_fields(self) -> tuple[tuple[str, str], ...]:
        """The TypedDict's keys and value types; a parameter without default is Required.

        tasks.py spells it in the functional form: in a class body, a field named like a
        type (`int`) would hide that type from the annotations after it."""
        return tuple(
            (p.name, f"typing.Required[{p.type}]" if p.required else p.type) for p in self.params
        )

    @property
    def defaults_literal(self) -> str:
        """The defaults as a Python dict literal, for the schedule table."""
        items = (f"{p.name!r}: {p.default}" for p in self.params if not p.required)
        return "{" + ", ".join(items) + "}"


@dataclass(frozen=True)
class ServiceDef:
    """One service: a dotted name and its tasks, sorted by name."""

    name: str
    tasks: tuple[TaskDef, ...]

    @property
    def client_class(self) -> str:
        return f"_{camel(self.name)}Service"


@dataclass(frozen=True)
class Namespace:
    """A node of the client's attribute tree: `tasks.billing.invoice.charge`.

    `tasks` are the tasks of the service whose dotted name is `path` (if any); `children`
    are the next dotted components.
    """

    path: str
    attr: str
    tasks: tuple[TaskDef, ...] = ()
    children: tuple[Namespace, ...] = ()

    @property
    def class_name(self) -> str:
        return f"_{camel(self.path)}Namespace"


@dataclass(frozen=True)
class Manifest:
    """Every service and task of an app, sorted; the single input of the templates."""

    services: tuple[ServiceDef, ...]
    source: str = HEADER_SOURCE_DEFAULT
    timezone: str = "UTC"
    queues: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    @property
    def header(self) -> str:
        """The first line of every file; the source label's control characters are escaped,
        so a folder name cannot end the comment and add a line of code."""
        return f"# Generated by rsxgen from {escape_controls(self.source)} — do not edit."

    @property
    def tasks(self) -> tuple[TaskDef, ...]:
        return tuple(t for s in self.services for t in s.tasks)

    @property
    def scheduled(self) -> tuple[TaskDef, ...]:
        return tuple(t for t in self.tasks if t.scheduled)

    @cached_property
    def namespaces(self) -> tuple[Namespace, ...]:
        """The top-level attributes of the client: one node per first component of a service."""
        return _namespace_nodes("", {s.name: s.tasks for s in self.services})

    @cached_property
    def namespace_classes(self) -> tuple[Namespace, ...]:
        """Every node of the client tree, children before their parent (definition order)."""
        ordered: list[Namespace] = []

        def visit(node: Namespace) -> None:
            for child in node.children:
                visit(child)
            ordered.append(node)

        for node in self.namespaces:
            visit(node)
        return tuple(ordered)

    @cached_property
    def shadowed(self) -> frozenset[str]:
        """Names the registry's annotations use that some parameter is also called.

        In a class body a field `int: int = 1` hides the builtin from every later
        annotation (pydantic then fails at import, mypy rejects it), so registry.py
        spells these names through module aliases, for every model alike.
        """
        return frozenset(p.name for t in self.tasks for p in t.params) & SHADOWABLE

    @cached_property
    def used_names(self) -> frozenset[str]:
        """The builtins and modules the parameter and result annotations use."""
        return frozenset().union(
            *(p.kind.names() for t in self.tasks for p in t.params),
            *(t.result_kind.names() for t in self.tasks),
        )

    @property
    def registry_models(self) -> tuple[tuple[TaskDef, tuple[str, ...]], ...]:
        """Each task with the field lines of its parameter model in registry.py."""
        return tuple((t, tuple(p.field(self.shadowed) for p in t.params)) for t in self.tasks)

    @property
    def registry_results(self) -> tuple[tuple[TaskDef, str], ...]:
        """Each task with its result type as registry.py spells it (through the module
        aliases when a parameter hides a name, as the models do)."""
        return tuple((t, t.result_kind.spell(self.shadowed)) for t in self.tasks)

    @property
    def registry_imports(self) -> tuple[str, ...]:
        """The import lines registry.py needs for its annotations, sorted by module."""
        lines = []
        if self.used_names & (self.shadowed - {"datetime", "typing"}):
            lines.append(f"import builtins as {ALIASES['builtins']}")
        for module in ("datetime", "typing"):
            if module in self.used_names:
                alias = f" as {ALIASES[module]}" if module in self.shadowed else ""
                lines.append(f"import {module}{alias}")
        return tuple(lines)

    def to_data(self) -> dict[str, Any]:
        """The manifest.json content."""
        return {
            "generated_by": "rsxgen",
            "source": self.source,
            "timezone": self.timezone,
            "queues": {name: {"max_workers": workers} for name, workers in self.queues},
            "services": [
                {
                    "name": s.name,
                    "tasks": [
                        {
                            "name": t.name,
                            "description": t.description,
                            "module": t.module,
                            "function": t.function,
                            "queue": t.queue,
                            "timeout": t.timeout,
                            "cron": t.cron,
                            "params": [
                                {"name": p.name, "type": p.type, "required": p.required}
                                | ({} if p.required else {"default": p.default_value})
                                for p in t.params
                            ],
                            "result": t.result,
                        }
                        | t.options.to_data()
                        for t in s.tasks
                    ],
                }
                for s in self.services
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _strings(values: tuple[str, ...]) -> str:
    """A tuple of names as Python source: `()`, or one name a line, indented as the
    arguments of a `TaskEntry(...)` (names hold no quotes or backslashes)."""
    if not values:
        return "()"
    return "(\n" + "".join(f'            "{value}",\n' for value in values) + "        )"


def _namespace_nodes(prefix: str, by_path: dict[str, tuple[TaskDef, ...]]) -> tuple[Namespace, ...]:
    """The nodes for dotted paths relative to `prefix` ('' for the root), sorted by attribute."""
    groups: dict[str, dict[str, tuple[TaskDef, ...]]] = {}
    for path, tasks in by_path.items():
        head, _, rest = path.partition(".")
        groups.setdefault(head, {})[rest] = tasks
    nodes = []
    for attr in sorted(groups):
        below = groups[attr]
        path = f"{prefix}.{attr}" if prefix else attr
        own = below.pop("", ())
        nodes.append(Namespace(path, attr, own, _namespace_nodes(path, below)))
    return tuple(nodes)

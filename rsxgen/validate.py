"""From the scans of every service file and the config to the manifest, or to diagnostics.

The checks here are the ones that need the config or more than one file: a task's queue
must be defined (RSX001), the queue and timeout not written default to the config's,
services made of two files (the built-in `cleanup_service` joined by an app's own
`cleanup_service.py`) must not define a task twice, and no task may share its name with a
sub-service, since `tasks.billing.invoice` cannot be both (RSX013).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from rsxgen.diagnostics import Diagnostic
from rsxgen.manifest import Manifest, Param, ServiceDef, TaskDef, camel
from rsxgen.scanner import FileScan, TaskFacts
from runtime.config import Config
from runtime.errors import ConfigError

BUILTIN_PREFIX = "runtime."
"""Modules of built-in services; their tasks come first when a service spans two files."""


def validate(
    scans: Sequence[FileScan], config: Config, source_label: str
) -> tuple[Manifest | None, list[Diagnostic]]:
    """The sorted manifest and no diagnostics, or None and every diagnostic sorted."""
    diagnostics = [d for scan in scans for d in scan.diagnostics]
    services: dict[str, dict[str, TaskDef]] = {}
    where: dict[tuple[str, str], tuple[str, int]] = {}
    ordered = sorted(
        scans, key=lambda scan: (not scan.module.startswith(BUILTIN_PREFIX), scan.path)
    )
    service_paths = {scan.service: scan.path for scan in scans if scan.tasks}
    for scan in ordered:
        tasks = services.setdefault(scan.service, {})
        for facts in scan.tasks:
            problem = _queue_problem(facts, config, scan.path)
            if problem is not None:
                diagnostics.append(problem)
            inner = f"{scan.service}.{facts.name}"
            if inner in service_paths:
                diagnostics.append(
                    Diagnostic(
                        scan.path,
                        *facts.at,
                        "RSX013",
                        f"task '{facts.name}' of service '{scan.service}' has the name of service "
                        f"'{inner}' ({service_paths[inner]}); tasks.{inner} cannot be both",
                    )
                )
            if facts.name in tasks:
                first_path, first_line = where[(scan.service, facts.name)]
                diagnostics.append(
                    Diagnostic(
                        scan.path,
                        *facts.at,
                        "RSX013",
                        f"task '{facts.name}' is already defined in service '{scan.service}' "
                        f"({first_path}:{first_line})",
                    )
                )
                continue
            where[(scan.service, facts.name)] = (scan.path, facts.at[0])
            tasks[facts.name] = _task(facts, scan, config, facts.at[1])
    diagnostics.extend(_generated_name_clashes(services))
    if diagnostics:
        return None, sorted(set(diagnostics))
    manifest = Manifest(
        services=tuple(
            ServiceDef(name, tuple(tasks[task] for task in sorted(tasks)))
            for name, tasks in sorted(services.items())
            if tasks
        ),
        source=source_label,
        timezone=config.timezone,
        queues=tuple((name, config.queues[name].max_workers) for name in sorted(config.queues)),
    )
    return manifest, []


def config_diagnostic(error: ConfigError) -> Diagnostic:
    """RSX015 for an invalid config file, at the offending key's line when known."""
    return Diagnostic(error.path or "rsx.toml", error.line or 1, 1, "RSX015", error.message)


def _generated_name_clashes(services: dict[str, dict[str, TaskDef]]) -> list[Diagnostic]:
    """RSX013 when two tasks, or two service namespaces, would get one generated class name.

    Class names join the dotted and underscored parts in CamelCase, so `a.b_c` and `a_b.c`
    would both be `ABC...`; the later one in (service, task) order is reported.
    """
    found: list[Diagnostic] = []
    models: dict[str, TaskDef] = {}
    spaces: dict[str, str] = {}
    for service in sorted(name for name, tasks in services.items() if tasks):
        parts = service.split(".")
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            first = spaces.setdefault(camel(path), path)
            if first != path:
                task = services[service][min(services[service])]
                found.append(
                    _at(
                        task,
                        "RSX013",
                        f"service '{path}' and service '{first}' would share the generated "
                        "class name of their namespace; rename one of them",
                    )
                )
        for name in sorted(services[service]):
            task = services[service][name]
            other = models.setdefault(task.model_name, task)
            if other is not task:
                found.append(
                    _at(
                        task,
                        "RSX013",
                        f"task '{service}.{name}' and task '{other.service}.{other.name}' "
                        f"would share the generated name {task.model_name}; rename one of them",
                    )
                )
    return found


def _at(task: TaskDef, code: str, message: str) -> Diagnostic:
    """A diagnostic at a task's function name."""
    return Diagnostic(task.source, task.line, task.col, code, message)


def _task(facts: TaskFacts, scan: FileScan, config: Config, col: int) -> TaskDef:
    queue = (
        facts.queue if facts.queue is not None else ("scheduled" if facts.scheduled else "default")
    )
    return TaskDef(
        service=scan.service,
        name=facts.name,
        description=facts.description,
        queue=queue,
        timeout=facts.timeout if facts.timeout is not None else config.default_timeout,
        module=scan.module,
        function=facts.name,
        params=tuple(Param.of(p) for p in facts.params),
        cron=facts.cron,
        source=scan.path,
        line=facts.at[0],
        col=col,
        result=facts.result,
        options=facts.options,
    )


def _queue_problem(facts: TaskFacts, config: Config, path: str) -> Diagnostic | None:
    """RSX001 when the written queue is not in the config, with the closest defined name."""
    if facts.queue is None or facts.queue in config.queues:
        return None
    defined = sorted(config.queues)
    message = (
        f"queue '{facts.queue}' is not defined in {config.path.name} "
        f"(defined: {', '.join(defined)})"
    )
    close = difflib.get_close_matches(facts.queue, defined, n=1)
    if close:
        message += f"; did you mean '{close[0]}'?"
    line, col = facts.queue_at or facts.at
    return Diagnostic(path, line, col, "RSX001", message)

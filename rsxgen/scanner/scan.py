"""Scanning one service file: its tasks and every problem that needs no config.

`scan_file` is pure (same bytes and names, same result) so the build can cache it by
content and run it in a process pool. Nothing from the file is imported or executed.

The file is read with the standard library's `ast` first: that checks that this Python
can compile it (RSX014 otherwise) and provides the positions of nodes (see
`positions`). Files that never mention `runtime` cannot declare a task and stop there.
Otherwise libcst parses it, the decorator gatherer finds the decorated functions and
checks their arguments, the signature gatherer checks each task's parameters and return
type, and the options gatherer its retry, uniqueness and delay options.
"""

from __future__ import annotations

import ast
import keyword
import warnings

import libcst as cst

from rsxgen.diagnostics import Diagnostic
from rsxgen.names import normal
from rsxgen.scanner.decorators import Decorated, DecoratorGatherer
from rsxgen.scanner.exceptions import ExceptionNames
from rsxgen.scanner.facts import FileScan, Position, TaskFacts, TaskOptions
from rsxgen.scanner.names import ModuleNames
from rsxgen.scanner.options import OptionsGatherer
from rsxgen.scanner.positions import Positions
from rsxgen.scanner.report import Report
from rsxgen.scanner.signatures import SignatureGatherer

RESERVED_SERVICE_NAMES = frozenset({"status", "cancel", "typing", "datetime"})
"""Top-level names the generated `tasks.py` defines or imports itself."""


def scan_file(source: bytes, path: str, service: str, module: str) -> FileScan:
    """Scan one service file; `path` is relative to the app root (used in diagnostics)."""
    problem = _bad_name(service, path)
    if problem is not None:
        return FileScan(path, service, module, diagnostics=(problem,))
    try:
        text = source.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return FileScan(path, service, module, diagnostics=(_not_utf8(source, error, path),))
    tree = _compile_check(text, path)
    if isinstance(tree, Diagnostic):
        return FileScan(path, service, module, diagnostics=(tree,))
    if "runtime" not in text:
        return FileScan(path, service, module)
    try:
        parsed = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        line, col = error.raw_line, error.raw_column + 1
        message = f"the file does not parse: {error.message}"
        return FileScan(
            path, service, module, diagnostics=(Diagnostic(path, line, col, "RSX014", message),)
        )
    return _analyse(parsed, tree, text, path, service, module)


def _analyse(
    parsed: cst.Module, tree: ast.Module, text: str, path: str, service: str, module: str
) -> FileScan:
    names = ModuleNames.of(parsed)
    report = Report(path, Positions(text, parsed, tree))
    decorators = DecoratorGatherer(names, report)
    decorators.gather(parsed)
    signatures = SignatureGatherer(names, report)
    options = OptionsGatherer(ExceptionNames(parsed.body, names, module), report)
    tasks: list[TaskFacts] = []
    defined: dict[str, Position] = {}
    spelled: dict[str, str] = {}
    for found in decorators.decorated:
        if found.task is None:
            continue
        if found.misplaced is not None:
            options.gather(found, None)
            continue
        signatures.gather(found)
        chosen = options.gather(found, signatures.param_names[found.function.name.value])
        facts = _facts(found, report, signatures, chosen)
        if facts.name in defined:
            line, _ = defined[facts.name]
            both = {spelled[facts.name], found.function.name.value}
            same = (
                f" ({' and '.join(sorted(both))} are one name to Python)" if len(both) > 1 else ""
            )
            report.error(
                found.function.name,
                found.function,
                "RSX013",
                f"task '{facts.name}' is already defined at line {line} of this file{same}",
            )
            continue
        defined[facts.name] = facts.at
        spelled[facts.name] = found.function.name.value
        tasks.append(facts)
    _redefinitions(parsed, defined, {found.function for found in decorators.decorated}, report)
    return FileScan(path, service, module, tuple(tasks), tuple(sorted(report.diagnostics)))


def _facts(
    found: Decorated, report: Report, signatures: SignatureGatherer, options: TaskOptions
) -> TaskFacts:
    """The task as written; its name as Python reads it (`ﬁnd` defines `find`)."""
    function = found.function
    queue_at = report.at(found.queue_node, function) if found.queue_node is not None else None
    cron_at = report.at(found.cron_node, function) if found.cron_node is not None else None
    return TaskFacts(
        name=normal(function.name.value),
        description=found.description,
        at=report.at(function.name, function),
        queue=found.queue,
        queue_at=queue_at,
        timeout=found.timeout,
        scheduled=found.schedule is not None,
        cron=found.cron,
        cron_at=cron_at,
        params=signatures.params.get(function.name.value, ()),
        result=signatures.results.get(function.name.value) or "typing.Any",
        options=options,
    )


def _redefinitions(
    parsed: cst.Module, tasks: dict[str, Position], decorated: set[cst.FunctionDef], report: Report
) -> None:
    """A later plain top-level def or class with a task's name replaces the task (RSX013)."""
    for statement in parsed.body:
        if not isinstance(statement, cst.FunctionDef | cst.ClassDef) or statement in decorated:
            continue
        name = normal(statement.name.value)
        if name in tasks and report.at(statement.name, statement) > tasks[name]:
            kind = "def" if isinstance(statement, cst.FunctionDef) else "class"
            report.error(
                statement.name,
                statement,
                "RSX013",
                f"this {kind} replaces task '{name}' defined at line {tasks[name][0]}",
            )


def _compile_check(text: str, path: str) -> ast.Module | Diagnostic:
    """The file's `ast`, or RSX014 where this Python's parser or compiler stops.

    Compiling the tree finds what parses but cannot be imported: a parameter named twice
    (also as `ﬁnd` and `find`, one identifier to Python), `return` outside a function.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as error:
        line, col = getattr(error, "lineno", None), getattr(error, "offset", None)
        if line is None and "\0" in text:
            at = text.index("\0")
            line, col = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        message = error.msg if isinstance(error, SyntaxError) else str(error)
        return Diagnostic(
            path, line or 1, max(col or 1, 1), "RSX014", f"the file does not parse: {message}"
        )
    except (RecursionError, MemoryError):
        return Diagnostic(path, 1, 1, "RSX014", "the file does not parse: it is nested too deeply")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(tree, path, "exec", dont_inherit=True)
    except SyntaxError as error:
        line = error.lineno or 1
        return Diagnostic(
            path,
            line,
            _char_column(text, line, error.offset),
            "RSX014",
            f"the file does not compile: {error.msg}",
        )
    except (RecursionError, MemoryError, ValueError):
        return Diagnostic(
            path, 1, 1, "RSX014", "the file does not compile: it is nested too deeply"
        )
    return tree


def _char_column(text: str, line: int, offset: int | None) -> int:
    """The 1-based character column of a compiler error's 1-based UTF-8 byte offset."""
    lines = text.splitlines()
    if offset is None or not 0 < line <= len(lines):
        return 1
    return len(lines[line - 1].encode()[: offset - 1].decode("utf-8", "replace")) + 1


def _not_utf8(source: bytes, error: UnicodeDecodeError, path: str) -> Diagnostic:
    start = error.start
    line_start = source.rfind(b"\n", 0, start) + 1
    line = source.count(b"\n", 0, start) + 1
    col = len(source[line_start:start].decode("utf-8", "replace")) + 1
    return Diagnostic(
        path,
        line,
        col,
        "RSX014",
        f"the file is not valid UTF-8 (byte 0x{source[start]:02x}); save it as UTF-8",
    )


def _bad_name(service: str, path: str) -> Diagnostic | None:
    """A file whose dotted service name is not importable cannot be a service (RSX014)."""
    for part in service.split("."):
        if not part.isidentifier() or keyword.iskeyword(part):
            return Diagnostic(
                path,
                1,
                1,
                "RSX014",
                f"'{part}' is not a valid Python module name, so service '{service}' "
                "cannot be imported; rename it with letters, digits and underscores",
            )
        if normal(part) != part:
            return Diagnostic(
                path,
                1,
                1,
                "RSX014",
                f"'{part}' is '{normal(part)}' in Python code (NFKC), so service '{service}' "
                f"would be reached by another name; rename it '{normal(part)}'",
            )
    top = service.split(".")[0]
    if top in RESERVED_SERVICE_NAMES or top.startswith("_"):
        return Diagnostic(
            path,
            1,
            1,
            "RSX014",
            f"service name '{top}' is taken by the generated client "
            f"(`tasks.{top}` is not a service there); rename the file or folder",
        )
    return None

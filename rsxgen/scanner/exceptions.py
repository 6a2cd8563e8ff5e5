"""Which names in `@task(retry_on=...)` are exception classes, read without running the module.

A name is resolved as a decorator is, through the module's bindings before the task's
`def` (the decorator runs there), and counts when it is
- a builtin exception class (`BUILTIN_EXCEPTIONS`): `builtins.ConnectionError`;
- a class defined at the top level of the same file, before the task, one of whose bases
  counts (recursively): `services.video_service.TransientError`;
- a name imported from another module, which cannot be checked without importing it, so
  it is taken as its import makes it: `requests.exceptions.Timeout` (a relative import is
  made absolute from the task's module). Of `runtime`'s own exports only its errors count.
Anything else (an unknown name, a function, a variable, a class that is not an exception,
`len`, `int`) is `NotAnException`, whose message says what the name is instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.helpers import get_full_name_for_node

from rsxgen.names import normal
from rsxgen.scanner.names import RUNTIME_ERRORS, RUNTIME_EXPORTS, ModuleNames
from rsxgen.scanner.report import code_of

BUILTIN_EXCEPTIONS = frozenset(
    {
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "BaseException",
        "BaseExceptionGroup",
        "BlockingIOError",
        "BrokenPipeError",
        "BufferError",
        "BytesWarning",
        "ChildProcessError",
        "ConnectionAbortedError",
        "ConnectionError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "DeprecationWarning",
        "EOFError",
        "EncodingWarning",
        "EnvironmentError",
        "Exception",
        "ExceptionGroup",
        "FileExistsError",
        "FileNotFoundError",
        "FloatingPointError",
        "FutureWarning",
        "GeneratorExit",
        "IOError",
        "ImportError",
        "ImportWarning",
        "IndentationError",
        "IndexError",
        "InterruptedError",
        "IsADirectoryError",
        "KeyError",
        "KeyboardInterrupt",
        "LookupError",
        "MemoryError",
        "ModuleNotFoundError",
        "NameError",
        "NotADirectoryError",
        "NotImplementedError",
        "OSError",
        "OverflowError",
        "PendingDeprecationWarning",
        "PermissionError",
        "ProcessLookupError",
        "RecursionError",
        "ReferenceError",
        "ResourceWarning",
        "RuntimeError",
        "RuntimeWarning",
        "StopAsyncIteration",
        "StopIteration",
        "SyntaxError",
        "SyntaxWarning",
        "SystemError",
        "SystemExit",
        "TabError",
        "TimeoutError",
        "TypeError",
        "UnboundLocalError",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "UnicodeError",
        "UnicodeTranslateError",
        "UnicodeWarning",
        "UserWarning",
        "ValueError",
        "Warning",
        "ZeroDivisionError",
    }
)
"""Python 3.11's builtin exception classes, written out so the result does not depend on
the Python that runs the build."""

MAX_BASE_DEPTH = 50
"""How many classes deep a chain of local bases is followed before giving up."""


class NotAnException(Exception):
    """The name is not an exception class rsxgen can vouch for; the message says why."""


class ExceptionNames:
    """Resolves `retry_on` names of one module (`module` is its import path)."""

    def __init__(self, body: Sequence[cst.BaseStatement], names: ModuleNames, module: str):
        self.body = body
        self.names = names
        self.module = module

    def qualified(self, node: cst.BaseExpression, top: int) -> str:
        """The exception class `node` names at top-level statement `top`, fully qualified."""
        return self._resolve(node, top, 0)

    def _resolve(self, node: cst.BaseExpression, top: int, depth: int) -> str:
        dotted = (
            get_full_name_for_node(node) if isinstance(node, cst.Name | cst.Attribute) else None
        )
        if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
            raise NotAnException(f"{code_of(node)} is a string; name the class itself")
        if dotted is None or dotted in ("None", "True", "False"):
            raise NotAnException(f"{code_of(node)} is not an exception class")
        dotted = normal(dotted)
        target = self.names.qualified(dotted, top)
        if target is not None:
            return self._imported(dotted, target)
        head = dotted.partition(".")[0]
        before = [index for index, _ in self.names.bindings.get(head, ()) if index < top]
        if not before:
            raise NotAnException(f"'{dotted}' is not defined before this task")
        statement = self.body[before[-1]]
        if not (isinstance(statement, cst.ClassDef) and normal(statement.name.value) == head):
            raise NotAnException(f"'{head}' is {_what(statement, head)}, not an exception class")
        if dotted != head:
            raise NotAnException(
                f"'{dotted}' is an attribute of class '{head}'; "
                "define the exception at the top level of the module"
            )
        if not self._derives(statement, before[-1], depth):
            raise NotAnException(f"class '{head}' does not derive from an exception class")
        return f"{self.module}.{head}"

    def _derives(self, statement: cst.ClassDef, index: int, depth: int) -> bool:
        """Whether one of the class's bases is an exception class (read where it is defined)."""
        if depth >= MAX_BASE_DEPTH:
            raise NotAnException(
                f"class '{statement.name.value}' derives from more than {MAX_BASE_DEPTH} "
                "classes of this module in a row; rsxgen does not follow them further"
            )
        for base in statement.bases:
            if base.keyword is not None or base.star:
                continue
            try:
                self._resolve(base.value, index, depth + 1)
            except NotAnException:
                continue
            return True
        return False

    def _imported(self, dotted: str, target: str) -> str:
        """An imported name as an absolute dotted name; builtins and runtime are checked."""
        if target.startswith("builtins."):
            name = target.removeprefix("builtins.")
            if name not in BUILTIN_EXCEPTIONS:
                raise NotAnException(f"'{dotted}' is the builtin {name}, not an exception class")
            return target
        head, _, name = target.partition(".")
        if head == "runtime" and name in RUNTIME_EXPORTS and name not in RUNTIME_ERRORS:
            raise NotAnException(f"'{dotted}' is runtime.{name}, not an exception class")
        if not target.startswith("."):
            return target
        rest = target.lstrip(".")
        up = len(target) - len(rest)
        package = self.module.split(".")[:-up]
        if not package:
            raise NotAnException(
                f"'{dotted}' is imported from beyond the top-level package of {self.module}"
            )
        return ".".join([*package, rest])


def _what(statement: cst.BaseStatement, name: str) -> str:
    """What the top-level `statement` that binds `name` makes of it, for a message."""
    if isinstance(statement, cst.FunctionDef) and normal(statement.name.value) == name:
        return "a function"
    if isinstance(statement, cst.SimpleStatementLine):
        return "a variable"
    return "bound inside a block (if/try/with/for/while/match) that rsxgen does not run"

"""Property-based tests: the command line, parameter validation, the scanner and URL masking
on generated input. Each property says what a user can rely on whatever they type.

Runs are derandomised (the same examples every run, so CI is stable, and no example
database) with modest example counts; the whole module takes a few seconds.
`fixtures/typed` has one task per parameter type, each taking `value`; its registry is
built once, in this process, without a database.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsxgen.diagnostics import CODES
from rsxgen.scanner import FileScan, scan_file
from runtime.cli import UsageError
from runtime.errors import ParamsError, ResultError
from runtime.registry import TaskEntry
from runtime.run import convert_all, parse_options
from runtime.urls import masked_url, redact
from runtime.validation import MAX_DEPTH, validate
from tests.compiler.apps import built_registry

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Mapping[tuple[str, str], TaskEntry]:
    return built_registry("typed", tmp_path_factory.mktemp("typed"))


def strict_json(value: Any) -> bool:
    """Whether strict JSON (no NaN, UTF-8 text) can carry `value`."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError):
        return False
    return True


# (a) `python -m runtime.run` arguments: a value written as the CLI expects parses back to
# the same value; only values strict JSON cannot carry are refused, in one line.

texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
floats = st.floats(allow_nan=True, allow_infinity=True)
ints = st.integers(min_value=-(10**30), max_value=10**30)
json_scalars = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.none() | offsets)


def as_json(value: Any) -> str:
    return json.dumps(value)


def as_bool(value: bool) -> str:
    return "true" if value else "false"


def as_optional(write: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda value: "null" if value is None else write(value)


def as_literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


CLI_CASES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]] = {
    "text": (texts, str),
    "count": (ints, str),
    "ratio": (floats, repr),
    "flag": (st.booleans(), as_bool),
    "nothing": (st.none(), lambda _: "null"),
    "names": (st.lists(texts, max_size=5), as_json),
    "scores": (st.dictionaries(texts, floats, max_size=4), as_json),
    "maybe": (st.none() | ints, as_optional(str)),
    "maybe_text": (st.none() | texts.filter(lambda text: text != "null"), as_optional(str)),
    "mode": (st.sampled_from(["fast", "slow"]), str),
    "mixed": (st.sampled_from(["a", 2, False, None]), as_literal),
    "when": (moments, datetime.isoformat),
    "day": (st.dates(min_value=date(1000, 1, 1)), date.isoformat),
    "anything": (json_values, as_json),
    "nested": (
        st.dictionaries(texts, st.lists(st.none() | ints, max_size=4), max_size=3),
        as_json,
    ),
    "maybe_list": (st.none() | st.lists(floats, max_size=4), as_optional(as_json)),
}


def parse_cli(entry: TaskEntry, tokens: list[str]) -> dict[str, Any]:
    """What `python -m runtime.run kinds TASK TOKENS...` validates, without running it."""
    options = parse_options(tokens)
    return dict(validate(entry, convert_all(entry.params.model_fields, options)))


def same(parsed: Any, value: Any) -> bool:
    """Equal as values, a float NaN aside (NaN never validates)."""
    if isinstance(value, float) and isinstance(parsed, float):
        return parsed == value or (math.isnan(parsed) and math.isnan(value))
    return bool(parsed == value)


@pytest.mark.parametrize("task", list(CLI_CASES))
def test_a_value_written_for_the_command_line_parses_back_or_is_refused_in_one_line(
    kinds: Mapping[tuple[str, str], TaskEntry], task: str
) -> None:
    strategy, write = CLI_CASES[task]
    entry = kinds[("kinds", task)]

    @SETTINGS
    @given(value=strategy, spaced=st.booleans())
    def check(value: Any, spaced: bool) -> None:
        text = write(value)
        tokens = ["--value", text] if spaced and not text.startswith("--") else [f"--value={text}"]
        try:
            parsed = parse_cli(entry, tokens)
        except (ParamsError, UsageError) as error:
            assert "\n" not in str(error)
            assert len(str(error)) < 1000
            assert not strict_json(value), f"{value!r} written as {text!r} was refused: {error}"
            return
        assert same(parsed["value"], value), (value, text, parsed)

    check()


@SETTINGS
@given(
    tokens=st.lists(
        st.text(max_size=12) | st.sampled_from(["--", "--=", "--value", "-x"]), max_size=6
    )
)
def test_any_command_line_is_parameters_or_a_one_line_error(
    kinds: Mapping[tuple[str, str], TaskEntry], tokens: list[str]
) -> None:
    for task in ("count", "names", "anything", "flag", "mixed"):
        try:
            parse_cli(kinds[("kinds", task)], tokens)
        except (ParamsError, UsageError) as error:
            assert "\n" not in str(error)


def test_json_nested_beyond_the_parser_or_numbers_beyond_conversion_are_refused(
    kinds: Mapping[tuple[str, str], TaskEntry],
) -> None:
    for task, text in [
        ("names", "[" * 100_000),
        ("anything", "[" * 100_000),
        ("anything", "1" * 5000),
        ("count", "1" * 5000),
    ]:
        with pytest.raises(ParamsError) as raised:
            parse_cli(kinds[("kinds", task)], [f"--value={text}"])
        assert len(str(raised.value)) < 400


# (b) Dispatch parameters: any JSON-ish value against any model validates to strict JSON
# or is a ParamsError; nothing else escapes.

hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([20_000, 70]).map(lambda bits: -(2**bits))
    | st.floats()
    | st.sampled_from(["NaN", "inf", "-Infinity", "1e999", "\ud800", "2024-02-30", "", "null"])
    | texts
)
hostile = st.recursive(
    hostile_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(texts | st.integers(), inner, max_size=4)
    ),
    max_leaves=16,
)


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep = st.builds(
    nested, st.integers(min_value=MAX_DEPTH - 3, max_value=MAX_DEPTH + 300), hostile_scalars
)


@SETTINGS
@given(
    params=st.dictionaries(
        st.sampled_from(["value", "other", "\x1b", ""]) | texts, hostile | deep, max_size=3
    )
    | st.builds(lambda value: {"value": value}, hostile | deep)
)
def test_any_params_validate_to_strict_json_or_are_a_params_error(
    kinds: Mapping[tuple[str, str], TaskEntry], params: dict[Any, Any]
) -> None:
    for entry in kinds.values():
        try:
            model = validate(entry, params)
        except ParamsError as error:
            assert "\n" not in str(error)
            continue
        dumped = model.model_dump(mode="json")
        assert strict_json(dumped), dumped
        assert json.loads(json.dumps(dumped)) == dumped


# (b2) Results: whatever a task returns, its entry checks it to JSON-ready data that loads
# back into the declared type and checks to the same data again, or refuses it in one line.


@SETTINGS
@given(value=hostile | deep)
def test_any_result_checks_to_json_that_loads_back_or_is_a_one_line_result_error(
    kinds: Mapping[tuple[str, str], TaskEntry], value: Any
) -> None:
    for entry in kinds.values():
        try:
            data = entry.check_result(value)
        except ResultError as error:
            assert "\n" not in str(error)
            continue
        if entry.result is Any:
            assert data is value  # unchecked; the worker's JSON check applies
            continue
        try:
            text = json.dumps(data, allow_nan=False)
        except ValueError:  # an integer too long for decimal: the worker's JSON check refuses it
            continue
        assert entry.check_result(entry.load_result(json.loads(text))) == data


# (c) The scanner: any module text made of plausible and broken pieces gives a scan (tasks
# and one-line diagnostics) that survives the build cache's check; it never raises.

NAMES = [
    "x",
    "value",
    "_private",
    "model_config",
    "datetime",
    "typing",
    "int",
    "ﬁnd",
    "find",
    "self",
    "copy",
]
ANNOTATIONS = [
    "int",
    "str",
    "float",
    "bool",
    "None",
    "list[int]",
    "dict[str, float]",
    "dict[int, str]",
    "int | None",
    "Optional[str]",
    "Union[int, str]",
    "Literal['a', 1, None]",
    "Literal[1.5]",
    "datetime.date",
    "datetime.datetime",
    "Any",
    "'list[str]'",
    "'not valid ('",
    "set[int]",
    "typing.List[int]",
    "TaskInstance",
    "bytes",
    "tuple[int, int]",
    "lambda: 1",
    "List",
]
DEFAULTS = [
    "1",
    "-2",
    "1.5",
    "1e999",
    "'s'",
    '"t"',
    "None",
    "True",
    "[1, 2]",
    "{'a': 1}",
    "(1,)",
    "{1}",
    "b'x'",
    "1j",
    "f'x'",
    "LIMIT",
    "len('x')",
    "0x" + "f" * 4000,
    "[*x]",
    "{**x}",
]
PAIRS = [
    ("int", "0x" + "f" * 4000),
    ("int", "-0x" + "f" * 3000),
    ("int | None", "None"),
    ("float", "1e308"),
    ("float", "1e999"),
    ("Any", "[1, (2, 3), {'a': None}]"),
    ("Any", "{1, 2}"),
    ("list[int]", "[0x" + "f" * 3500 + "]"),
    ("dict[str, Any]", "{'k': [1.5, 'x']}"),
    ("Literal['a', 1, None]", "None"),
    ("Literal[1, -2]", "-2"),
    ("str", "'\\x1b[2J'"),
    ("datetime.date | None", "None"),
]
ARGUMENTS = [
    '"Describe it"',
    '""',
    "'   '",
    "1",
    "timeout=60",
    "timeout=0",
    "timeout=-1",
    "timeout=3000000000",
    "timeout=0x" + "f" * 4000,
    "timeout=None",
    "timeout='60'",
    "queue='video'",
    "queue=Q",
    "queue=1",
    "description='x'",
    "nope=1",
    "*args",
    "**kw",
    '"a" "b"',
    "f'x'",
    "1.5",
    "retries=3",
    "retries=-1",
    "retry_backoff=0",
    "retry_on=ValueError",
    "retry_on=(len, Nope, x.y, 'E')",
    "unique=True",
    "unique_key='value'",
    "unique_key=('x', 1)",
    "unique_while='active'",
    "delay=5",
    "delay=-1",
]
CRONS = ['"0 3 * * *"', '"* * * * *"', '"61 * * * *"', '"@daily"', "CRON", '"0 0 31 2 *"', ""]
IMPORTS = [
    "from runtime import TaskInstance, schedule, task",
    "import runtime as rt",
    "from runtime import *",
    "import datetime\nimport typing\nfrom typing import Any, List, Literal, Optional, Union",
    "",
]
JUNK = [
    "",
    "x = (",
    "def broken(:",
    "\tmixed = 1",
    "\x00",
    "nonlocal y",
    "return 1",
    "class C:\n    pass",
    "lambda: 0",
    "# \x1b[2J",
]


def _keyword(argument: str) -> str | None:
    """The keyword of a decorator argument (`timeout=60`), None for a positional one."""
    name, equals, _ = argument.partition("=")
    return name if equals and name.isidentifier() else None


@st.composite
def modules(draw: st.DrawFn) -> str:
    """A module of imports and decorated functions; now and then one line of junk."""
    lines = [draw(st.sampled_from(IMPORTS)), draw(st.sampled_from(IMPORTS))]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        drawn = draw(st.lists(st.sampled_from(ARGUMENTS), max_size=3, unique_by=_keyword))
        arguments = sorted(drawn, key=lambda argument: _keyword(argument) is not None)
        decorator = draw(st.sampled_from(["task", "task", "task", "rt.task", "schedule", "other"]))
        lines.append(f"@{decorator}({', '.join(arguments)})")
        if draw(st.booleans()):
            lines.append(f"@schedule({draw(st.sampled_from(CRONS))})")
        params = ["task: TaskInstance"] if draw(st.integers(0, 3)) else []
        defaulted = False
        for param in draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True)):
            if draw(st.booleans()):
                annotation, default = draw(st.sampled_from(PAIRS))
                params.append(f"{param}: {annotation} = {default}")
                defaulted = True
                continue
            if draw(st.integers(0, 3)):
                param += f": {draw(st.sampled_from(ANNOTATIONS))}"
            if defaulted or draw(st.booleans()):
                param += f" = {draw(st.sampled_from(DEFAULTS))}"
                defaulted = True
            params.append(param)
        prefix = draw(st.sampled_from(["def", "def", "def", "async def"]))
        name = draw(st.sampled_from(NAMES))
        lines.append(f"{prefix} {name}({', '.join(params)}) -> None: ...")
    if not draw(st.integers(0, 3)):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(JUNK)))
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(source=modules())
def test_the_scanner_gives_tasks_or_diagnostics_and_never_raises(source: str) -> None:
    scan = scan_file(source.encode("utf-8", "surrogatepass"), "services/x.py", "x", "services.x")
    for diagnostic in scan.diagnostics:
        assert diagnostic.code in CODES
        assert "\n" not in diagnostic.render()
    data = json.loads(json.dumps(scan.to_data()))
    assert FileScan.from_data(data, "services/x.py", "x", "services.x") == scan


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(source=st.text(max_size=300))
def test_the_scanner_survives_arbitrary_text(source: str) -> None:
    scan = scan_file(
        textwrap.dedent(f"from runtime import task\n{source}").encode("utf-8", "surrogatepass"),
        "services/x.py",
        "x",
        "services.x",
    )
    assert isinstance(scan, FileScan)


# (d) Database URLs: the password is never in a masked URL or a redacted message.

passwords = st.text(st.characters(codec="utf-8"), min_size=4, max_size=20).filter(
    lambda text: text.strip() == text and not any(part in text for part in ("app", "db.internal"))
)


@SETTINGS
@given(password=passwords, in_query=st.booleans())
def test_a_password_never_survives_masking_or_redaction(password: str, in_query: bool) -> None:
    written = quote(password, safe="")
    url = (
        f"postgresql+psycopg://app@db.internal:5432/tasks?sslmode=require&password={written}"
        if in_query
        else f"postgresql+psycopg://app:{written}@db.internal:5432/tasks"
    )
    masked = masked_url(url)
    assert password not in masked and written not in masked
    assert "***" in masked
    message = f"FATAL: password authentication failed ({password}; {written})"
    assert password not in redact(message, url)

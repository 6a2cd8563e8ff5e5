"""`python -m runtime.run [--config PATH] SERVICE TASK [--name=value ...]`: immediate mode.

The task runs in this process: log lines on stdout as written, then the result as JSON on
the last line. Each value is converted by its parameter's type: `true/false/1/0/yes/no`
(or a bare `--flag`) for bools, `null` for None where the type allows it, JSON for lists
and dicts, the text itself otherwise (numbers and dates are then coerced as pydantic does).
`--name value` equals `--name=value`, `--video-id` equals `--video_id`. Options of the
command itself (`--config`) come before SERVICE; after it every option is a parameter.

Exit status: 0 done; 1 the task raised (traceback on stderr) or returned a value that is
not JSON; 2 unknown task, bad parameter, config or database problem (one line on stderr).
"""

from __future__ import annotations

import json
import sys
import traceback
import types
import typing
from collections.abc import Mapping
from typing import Any

from runtime.cli import UsageError, fail, run_command
from runtime.errors import ParamsError
from runtime.text import escape_controls, shorten

PROG = "python -m runtime.run"
USAGE = f"usage: {PROG} [--config PATH] SERVICE TASK [--name=value ...]"
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_options(tokens: list[str]) -> dict[str, str | None]:
    """`--name=value`, `--name value` and bare `--flag` (None) by parameter name."""
    options: dict[str, str | None] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or token == "--":
            raise UsageError(
                f"unexpected argument {shorten(repr(token))}: parameters are written --name=value"
            )
        body = token[2:]
        value: str | None
        if "=" in body:
            name, value = body.split("=", 1)
        else:
            name, value = body, None
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and not following.startswith("--"):
                value = following
                index += 1
        name = name.replace("-", "_")
        if not name:
            raise UsageError(f"option {shorten(repr(token))} has no parameter name")
        if name in options:
            raise UsageError(f"parameter --{shorten(escape_controls(name))} given twice")
        options[name] = value
        index += 1
    return options


def convert(name: str, raw: str | None, annotation: Any) -> Any:
    """One command-line value as the parameter's type wants it (see the module doc)."""
    inner, optional = _unwrap_optional(annotation)
    if raw is None:
        if inner is bool:
            return True
        raise ParamsError(f"--{name} needs a value")
    if (optional or inner in (None, type(None))) and raw == "null":
        return None
    origin = typing.get_origin(inner)
    if inner is bool:
        try:
            return _BOOLS[raw.lower()]
        except KeyError:
            raise ParamsError(
                f"--{name}: expected true/false/1/0/yes/no, got {_shown(raw)}"
            ) from None
    if inner in (list, dict) or origin in (list, dict):
        return _json(name, raw, text_too=False)
    if origin is typing.Literal:
        for choice in typing.get_args(inner):
            if raw == (json.dumps(choice) if not isinstance(choice, str) else choice):
                return choice
        return raw
    if inner is Any:
        return _json(name, raw, text_too=True)
    return raw


def _json(name: str, raw: str, *, text_too: bool) -> Any:
    """`raw` read as JSON; text that is not JSON is itself when `text_too`, else an error.

    Nesting beyond the parser's depth and numbers too long to convert are errors either way.
    """
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        if text_too:
            return raw
        raise ParamsError(f"--{name}: not valid JSON ({exc.msg}): {_shown(raw)}") from None
    except RecursionError:
        raise ParamsError(f"--{name}: JSON nested too deeply: {_shown(raw)}") from None
    except ValueError as exc:
        raise ParamsError(f"--{name}: {exc.args[0].split(':')[0]}: {_shown(raw)}") from None


def _shown(raw: str) -> str:
    """A command-line value quoted for a message, cut to 200 characters."""
    return shorten(repr(raw))


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) < len(typing.get_args(annotation)):
            return (members[0] if len(members) == 1 else annotation), True
    return annotation, annotation is Any


def convert_all(fields: Mapping[str, Any], options: Mapping[str, str | None]) -> dict[str, Any]:
    """Convert every option whose name is a parameter; unknown names pass through as text
    so that validation reports them with the others."""
    return {
        name: convert(name, raw, fields[name].annotation) if name in fields else raw
        for name, raw in options.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config_path: str | None = None
    while args[:1] and args[0].startswith("--"):
        option = args.pop(0)
        if option in ("-h", "--help"):
            print(USAGE)
            return 0
        if option == "--config" and args:
            config_path = args.pop(0)
        elif option.startswith("--config="):
            config_path = option.split("=", 1)[1]
        else:
            return fail(PROG, f"unknown option {option!r} before SERVICE ({USAGE})")
    if len(args) < 2:
        return fail(PROG, f"SERVICE and TASK are required ({USAGE})")
    service, task, rest = args[0], args[1], args[2:]

    def body() -> int:
        from runtime.api import use_config
        from runtime.config import load_config
        from runtime.immediate import prepare
        from runtime.registry import lookup

        ctx = use_config(load_config(config_path))
        entry = lookup(ctx.tasks, service, task)
        params = convert_all(entry.params.model_fields, parse_options(rest))
        call = prepare(ctx.config, ctx.tasks, service, task, params)
        try:
            result = call()
        except Exception:
            traceback.print_exc()
            return 1
        try:
            text = json.dumps(result, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            print(f"{PROG}: error: task result is not JSON-serialisable: {exc}", file=sys.stderr)
            return 1
        print(text, flush=True)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

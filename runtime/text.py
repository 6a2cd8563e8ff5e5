"""Showing untrusted text safely: control characters escaped, long values shortened."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with control characters (C0, DEL, C1) and lone surrogates written as escapes.

    A terminal would obey them (`\\x1b[2J` clears the screen, `\\r` overwrites a line);
    escaped they show as `\\x1b`, `\\r`, `\\ud800`. Characters in `keep` pass unchanged.
    """

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep:
            return char
        if char in _NAMED:
            return _NAMED[char]
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _CONTROL.sub(escape, text)


def first_control(text: str) -> str | None:
    """The first control character of `text`, escaped (as `escape_controls` shows it)."""
    match = _CONTROL.search(text)
    return None if match is None else escape_controls(match.group())


def shorten(text: str, limit: int = 200) -> str:
    """`text` itself when at most `limit` characters, else its start, `…` and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"

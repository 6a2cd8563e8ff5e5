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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` as a task's log keeps it: NUL and lone surrogates replaced by U+FFFD.

    UTF-8 cannot encode a lone surrogate (a file name decoded with `os.fsdecode`, say) and
    PostgreSQL text cannot hold NUL; replacing both everywhere makes every backend keep the
    same log, instead of one refusing the line and losing the lines written with it.
    """
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def utf8_size(text: str) -> int:
    """How many bytes `text` takes in UTF-8; UnicodeEncodeError if it holds a lone surrogate."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def surrogate_in(text: str) -> str | None:
    """The first lone surrogate of `text`, shown escaped (`'\\udce9'`), or None."""
    try:
        utf8_size(text)
    except UnicodeEncodeError as exc:
        return ascii(text[exc.start])
    return None

"""Database URLs without their secrets: checking, masking and redacting them.

URLs are read with the grammar SQLAlchemy's `make_url` uses (`dialect+driver://user:
password@host:port/database?query`), without importing SQLAlchemy, so that the config
loader can check a URL and every message can show one without its password. A password
is hidden wherever it can appear: after the user name, and as a `password=` query
parameter (any letter case), which some drivers read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

INVALID = "<invalid database_url>"
MASK = "***"
MAX_PORT = 65_535

_PATTERN = re.compile(
    r"""
        (?P<name>[\w+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/?]+)\] |
                (?P<ipv4host>[^/:?]+)
            )?
            (?::(?P<port>[^/?]*))?
        )?
        (?:/(?P<database>[^?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X | re.S,
)


@dataclass(frozen=True)
class _Secret:
    """Where a secret lies in the URL text (`start`, `end`) and its decoded value."""

    start: int
    end: int
    value: str


def check(url: str) -> str | None:
    """Why `url` is not a database URL SQLAlchemy can use, or None when it is one.

    The reason never quotes the password.
    """
    match = _PATTERN.fullmatch(url)
    if match is None:
        return "it is not a URL like dialect://user:password@host:port/database"
    port = match.group("port")
    if port is not None:
        if not (port.isascii() and port.isdigit()):
            return f"its port {port!r} is not a number"
        if int(port) > MAX_PORT:
            return f"its port {port} is above {MAX_PORT}"
    return None


def masked_url(url: str) -> str:
    """`url` with every password replaced by `***`; `<invalid database_url>` if unusable."""
    if check(url) is not None:
        return INVALID
    match = _PATTERN.fullmatch(url)
    assert match is not None
    text = url
    for secret in sorted(_secrets(match), key=lambda s: s.start, reverse=True):
        text = text[: secret.start] + MASK + text[secret.end :]
    return text


def redact(text: str, url: str) -> str:
    """`text` with every password of `url` (as written or decoded) replaced by `***`."""
    match = _PATTERN.fullmatch(url)
    if match is None:
        return text
    values: set[str] = set()
    for secret in _secrets(match):
        values.update({url[secret.start : secret.end], secret.value})
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _secrets(match: re.Match[str]) -> list[_Secret]:
    """The password after the user name, and each `password=` value of the query.

    SQLAlchemy ends the password at the first `@`; when the host still holds an `@`, the
    password probably held one too, so everything up to the host's last `@` is secret.
    """
    found: list[_Secret] = []
    if match.group("password") is not None:
        start, end = match.span("password")
        host = match.group("ipv4host")
        if host and "@" in host:
            end = match.start("ipv4host") + host.rindex("@")
        found.append(_Secret(start, end, unquote(match.string[start:end])))
    if match.group("query") is not None:
        position = match.start("query")
        for part in match.group("query").split("&"):
            key, equals, value = part.partition("=")
            if equals and unquote_plus(key).strip().lower() == "password":
                start = position + len(key) + 1
                found.append(_Secret(start, start + len(value), unquote_plus(value)))
            position += len(part) + 1
    return found

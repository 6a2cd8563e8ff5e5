"""Database URLs as they may be shown: never with their password."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def masked_url(url: str) -> str:
    """The database URL with its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid database_url>"


def redact(text: str, url: str) -> str:
    """`text` with the URL's password, wherever it appears, replaced by `***`."""
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return text
    if password:
        text = text.replace(str(password), "***")
    return text

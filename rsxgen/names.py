"""What a parameter or task may be called: Python's reading of names, and pydantic's.

Shared by the scanner (which reports a bad name at its position) and the manifest (which
writes names into generated code)."""

from __future__ import annotations

import keyword
import unicodedata

BASE_MODEL_NAMES = frozenset(
    {
        "construct",
        "copy",
        "dict",
        "from_orm",
        "json",
        "parse_file",
        "parse_obj",
        "parse_raw",
        "schema",
        "schema_json",
        "update_forward_refs",
        "validate",
    }
)
"""pydantic `BaseModel`'s public attributes that do not start with `model_` (pydantic 2).

A field of that name shadows the attribute (pydantic warns, mypy rejects the override),
and names starting with `model_` are pydantic's own namespace (`model_config`,
`model_dump`, ...), so neither can be a parameter of the generated model."""


def normal(name: str) -> str:
    """The identifier as Python reads it: NFKC-normalised, so `ﬁnd` is `find`."""
    return name if name.isascii() else unicodedata.normalize("NFKC", name)


def is_name(name: object) -> bool:
    """Whether `name` is an identifier as Python reads it and not a keyword."""
    return (
        isinstance(name, str)
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and normal(name) == name
    )


CLIENT_KEYWORDS = frozenset({"delay", "run_at"})
"""The keyword arguments the generated client's `dispatch` takes besides the parameters."""


def reserved_param(name: str) -> str | None:
    """Why a parameter cannot be called `name` in the generated model or client, or None."""
    if name.startswith("_"):
        return (
            "starts with an underscore, so pydantic would keep it out of the generated "
            "parameter model and it could never be passed"
        )
    if name.startswith("model_"):
        return "is in pydantic's reserved model_ namespace (model_config, model_dump, ...)"
    if name in BASE_MODEL_NAMES:
        return f"is an attribute of pydantic's BaseModel (BaseModel.{name})"
    if name in CLIENT_KEYWORDS:
        return (
            f"is a keyword of the generated client's dispatch ({name}=), which holds the task back"
        )
    return None

"""Unique tasks: the key a dispatch of a `@task(unique=...)` stores in `_tasks.unique_key`.

The key names the service and task and hashes the validated JSON values of the parameters
that make two dispatches "the same" (all of them for `unique=True`, those named by
`unique_key=`). The database refuses a second row with the same key (the UNIQUE index
`ux__tasks_unique_key`), so two racing dispatches cannot both queue one.

Its first two characters say how long the row holds it, so that the claim can release it
in the UPDATE it runs anyway, without reading the registry or running another statement:
`p:` keys (`unique_while="pending"`) are set to NULL by the claim, `a:` keys
(`unique_while="active"`) when the task ends (completed, failed, stuck or cancelled).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.registry import TaskEntry

WHILE_PENDING = "p:"
"""The prefix of a key held until a worker claims the task."""
WHILE_ACTIVE = "a:"
"""The prefix of a key held until the task ends."""

MAX_KEY_CHARS = 191
"""The width of `_tasks.unique_key` (the most MariaDB indexes in utf8mb4)."""


def unique_keys(entry: TaskEntry, items: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The key of each dispatch of `entry` with validated JSON values `items`; None when
    the task is not unique.

    `p:video_service.transcode:<sha256>`: the prefix (see the module doc), the task's name
    for people reading the table, and the SHA-256 of the canonical JSON (sorted keys, no
    spaces) of the service, the task and the key's parameters. A name too long for the
    column leaves only the prefix and the hash.
    """
    if entry.unique is None:
        return None
    prefix = WHILE_ACTIVE if entry.unique_while == "active" else WHILE_PENDING
    keys = []
    for values in items:
        named = {name: values.get(name) for name in entry.unique}
        canonical = json.dumps(
            [entry.service, entry.task, named],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        key = f"{prefix}{entry.service}.{entry.task}:{digest}"
        keys.append(key if len(key) <= MAX_KEY_CHARS else f"{prefix}{digest}")
    return keys

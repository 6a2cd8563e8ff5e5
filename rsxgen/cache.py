"""The build cache: scans of unchanged files, and the digests of the last output.

Stored as one JSON file in the app's storage folder. The whole cache belongs to one
version of the compiler's code (a digest of its source files and templates); a scan is
keyed by a digest of the file's path, service and module names and its bytes, so an
entry is never used for input it was not made from. A missing, unreadable or foreign
cache is simply empty: the cache only ever saves time. Its scans are checked when used
(`FileScan.from_data`): an entry no scan could have made is scanned again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import astuple, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.storage import private_folder

if TYPE_CHECKING:
    from rsxgen.manifest import Manifest

CACHE_NAME = ".rsxgen-cache.json"
PACKAGE = Path(__file__).parent


@cache
def code_digest() -> str:
    """A digest of the compiler's own code and templates; any change empties the cache."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            digest.update(f"{path.relative_to(PACKAGE).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def scan_key(source: bytes, path: str, service: str, module: str) -> str:
    """The cache key of one file's scan."""
    head = f"{path}\0{service}\0{module}\0".encode()
    return hashlib.sha256(head + source).hexdigest()


def output_key(config: object, source_label: str, scan_keys: list[str]) -> str:
    """A digest of everything the output is made from: config, services label and scans.

    Scanning, validation and rendering are pure functions of these (and of the code the
    cache belongs to), so equal keys mean byte-identical output.
    """
    text = "\0".join([repr(config), source_label, *scan_keys])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Summary:
    """The counts a successful build reports, kept so a no-change rebuild can report them."""

    tasks: int
    services: int
    scheduled: int

    @classmethod
    def of(cls, manifest: Manifest) -> Summary:
        return cls(len(manifest.tasks), len(manifest.services), len(manifest.scheduled))


@dataclass
class BuildCache:
    """Scan data by key, plus the output key and file digests of the last written output."""

    path: Path
    scans: dict[str, Any] = field(default_factory=dict)
    output_key: str | None = None
    output: dict[str, str] = field(default_factory=dict)
    summary: Summary | None = None
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> BuildCache:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict) or data.get("code") != code_digest():
            return cls(path)
        scans = data.get("scans")
        output = data.get("output")
        key = data.get("output_key")
        if not isinstance(scans, dict) or not isinstance(output, dict):
            return cls(path)
        if not all(_file_name(name) and _digest(value) for name, value in output.items()):
            output, key = {}, None
        summary = data.get("summary")
        counts = (
            Summary(*summary)
            if isinstance(summary, list)
            and len(summary) == 3
            and all(isinstance(n, int) for n in summary)
            else None
        )
        return cls(path, scans, key if isinstance(key, str) else None, output, counts)

    def save(self, used: set[str]) -> None:
        """Write the cache if anything changed, keeping only the scans of this build's files.

        Errors are ignored: a build never fails because its cache cannot be written.
        """
        if not self.dirty and used == self.scans.keys():
            return
        data = {
            "code": code_digest(),
            "output_key": self.output_key,
            "output": self.output,
            "summary": None if self.summary is None else list(astuple(self.summary)),
            "scans": {key: self.scans[key] for key in sorted(used) if key in self.scans},
        }
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            private_folder(self.path.parent)
            temp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(temp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def _file_name(name: object) -> bool:
    """A plain file name of the output folder (the cache names no other file)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def _digest(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )

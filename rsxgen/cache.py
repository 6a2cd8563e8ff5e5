"""The build cache: scans of unchanged files, and the digests of the last output.

Stored as one JSON file in the app's storage folder. A scan is keyed by a digest of the
rsxgen version, the file's path, service and module names, and its bytes, so an entry
can never be used for input it was not made from. A missing, unreadable or foreign
cache is simply empty: the cache only ever saves time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsxgen import __version__

CACHE_NAME = ".rsxgen-cache.json"


def scan_key(source: bytes, path: str, service: str, module: str) -> str:
    """The cache key of one file's scan."""
    head = f"rsxgen {__version__}\0{path}\0{service}\0{module}\0".encode()
    return hashlib.sha256(head + source).hexdigest()


@dataclass
class BuildCache:
    """Scan data by key, plus the render key and file digests of the last written output."""

    path: Path
    scans: dict[str, Any] = field(default_factory=dict)
    render_key: str | None = None
    output: dict[str, str] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> BuildCache:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(data, dict) or data.get("version") != __version__:
            return cls(path)
        scans = data.get("scans")
        output = data.get("output")
        render_key = data.get("render_key")
        if not isinstance(scans, dict) or not isinstance(output, dict):
            return cls(path)
        return cls(path, scans, render_key if isinstance(render_key, str) else None, output)

    def save(self, used: set[str]) -> None:
        """Write the cache if anything changed, keeping only the scans of this build's files.

        Errors are ignored: a build never fails because its cache cannot be written.
        """
        if not self.dirty and used == self.scans.keys():
            return
        data = {
            "version": __version__,
            "render_key": self.render_key,
            "output": self.output,
            "scans": {key: self.scans[key] for key in sorted(used) if key in self.scans},
        }
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(temp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)

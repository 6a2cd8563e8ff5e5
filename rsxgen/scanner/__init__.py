"""Static analysis of service files with libcst: `scan_file` and the `FileScan` it returns.

libcst is imported only when a file is actually scanned (`rsxgen.scanner.scan`), so a
rebuild served from the cache, and `FileScan.from_data`, never pay for importing it.
"""

from __future__ import annotations

from rsxgen.scanner.facts import FileScan, Position, TaskFacts

__all__ = ["FileScan", "Position", "TaskFacts", "scan_file"]


def scan_file(source: bytes, path: str, service: str, module: str) -> FileScan:
    """Scan one service file; `path` is relative to the app root (used in diagnostics)."""
    from rsxgen.scanner.scan import scan_file as scan

    return scan(source, path, service, module)

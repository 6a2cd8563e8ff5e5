"""The build pipeline: config → service files → scans → manifest → rendered files → output.

`build(config)` is the whole flow; the CLI only loads the config and prints the outcome.
Scans are cached by content (see `rsxgen.cache`); a cold build with many files scans them
in a process pool. When the inputs (config, file contents, compiler code) are those of the
last successful build and the files on disk still have its digests, nothing is scanned,
validated or rendered: all three are pure functions of those inputs.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rsxgen import writer
from rsxgen.cache import CACHE_NAME, BuildCache, Summary, output_key, scan_key
from rsxgen.diagnostics import Diagnostic
from rsxgen.render import render
from rsxgen.scanner import FileScan, scan_file
from rsxgen.scanner.facts import CacheEntryError
from rsxgen.validate import validate
from rsxgen.writer import Plan
from runtime.config import Config

BUILTIN_SERVICE = "cleanup_service"
BUILTIN_MODULE = "runtime.cleanup_service"
BUILTIN_PATH = "runtime/cleanup_service.py"
PARALLEL_MIN_FILES = 32
"""Below this many files to scan, a process pool costs more than it saves."""

T = TypeVar("T")
R = TypeVar("R")


class BuildError(Exception):
    """A problem with the app's layout or the file system (not with its code): exit 2."""


@dataclass(frozen=True)
class Source:
    """One service file: where it is, how diagnostics name it, and its service and module."""

    file: Path
    path: str
    service: str
    module: str


@dataclass(frozen=True)
class Outcome:
    """What a build found and did; `diagnostics` is empty on success, `summary` set."""

    diagnostics: tuple[Diagnostic, ...] = ()
    summary: Summary | None = None
    plan: Plan = field(default_factory=Plan)
    output: str = ""
    seconds: float = 0.0


def build(config: Config, *, check: bool = False) -> Outcome:
    """Scan, validate, render and (unless `check`) write the app's generated package."""
    started = time.perf_counter()
    cache = BuildCache.load(config.storage / CACHE_NAME)
    sources = find_sources(config)
    jobs = read_all(sources)
    keys = [scan_key(*job) for job in jobs]
    label = _shown(config.services, config.root)
    output = _shown(config.output, config.root) + "/"
    key = output_key(config, label, keys)
    if (
        key == cache.output_key
        and cache.summary is not None
        and writer.matches(config.output, cache.output)
    ):
        # The last successful build had exactly these inputs and its output is intact:
        # scanning, validation and rendering are pure functions of them.
        return Outcome(summary=cache.summary, output=output, seconds=_since(started))
    scans = scan_all(jobs, keys, cache)
    manifest, diagnostics = validate(scans, config, label)
    problems = {d for scan in scans for d in scan.diagnostics} | set(diagnostics)
    if problems or manifest is None:
        if not check:
            cache.save(set(keys))
        return Outcome(diagnostics=tuple(sorted(problems)))

    summary = Summary.of(manifest)
    files = render(manifest)
    plan = writer.plan(config.output, files)
    if not check:
        writer.apply(config.output, files, plan)
        cache.output_key = key
        cache.output = {name: writer.digest(text.encode()) for name, text in files.items()}
        cache.summary = summary
        cache.dirty = True
        cache.save(set(keys))
    return Outcome(summary=summary, plan=plan, output=output, seconds=_since(started))


def find_sources(config: Config) -> list[Source]:
    """Every `.py` below the services folder except `__init__.py`, then the built-in service.

    Hidden folders, `__pycache__` and the output folder (if it lies inside) are skipped.
    """
    root = config.services
    if not root.is_dir():
        raise BuildError(
            f"services folder not found: {_shown(root, config.root)} "
            f"(the 'services' key of {config.path.name})"
        )
    found: list[Source] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d != "__pycache__" and here / d != config.output
        ]
        inner = here.relative_to(root).parts
        shown = _shown(here, config.root)
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                service = ".".join((*inner, name[:-3]))
                path = name if shown == "." else f"{shown}/{name}"
                found.append(Source(here / name, path, service, f"{root.name}.{service}"))
    found.sort(key=lambda source: source.path)
    return [*found, _builtin_source()]


def read_all(sources: Sequence[Source]) -> list[tuple[bytes, str, str, str]]:
    """Each source's bytes with its path, service and module: the input of one scan."""
    jobs: list[tuple[bytes, str, str, str]] = []
    for source in sources:
        try:
            jobs.append((source.file.read_bytes(), source.path, source.service, source.module))
        except OSError as exc:
            raise BuildError(f"cannot read {source.path}: {exc.strerror}") from None
    return jobs


def scan_all(
    jobs: Sequence[tuple[bytes, str, str, str]], keys: Sequence[str], cache: BuildCache
) -> list[FileScan]:
    """The scan of every job: from the cache when its key is there and its entry is one a
    scan of that file could be (the cache file is not trusted), else scanned now."""
    scans: dict[str, FileScan] = {}
    for key, (_, path, service, module) in zip(keys, jobs, strict=True):
        if key in cache.scans:
            try:
                scans[key] = FileScan.from_data(cache.scans[key], path, service, module)
            except CacheEntryError:
                del cache.scans[key]
    todo = [(key, job) for key, job in zip(keys, jobs, strict=True) if key not in scans]
    if todo:
        fresh = parallel_map(_scan_data, [job for _, job in todo])
        for (key, (_, path, service, module)), data in zip(todo, fresh, strict=True):
            cache.scans[key] = data
            scans[key] = FileScan.from_data(data, path, service, module)
        cache.dirty = True
    return [scans[key] for key in keys]


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[fn(item) for item in items]`, in a process pool when there are enough items.

    `fn` must be a module-level function; the benchmark uses this too, so that bare
    parsing and the build are measured with the same process model.
    """
    workers = _workers()
    if len(items) < PARALLEL_MIN_FILES or workers < 2:
        return [fn(item) for item in items]
    # Imported here: a warm build never needs it, and it costs a tenth of its start-up.
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, len(items) // (workers * 4))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items, chunksize=chunk))


def _workers() -> int:
    """Pool size: `RSXGEN_JOBS` when set (1 scans serially), else the CPUs, at most 8."""
    jobs = os.environ.get("RSXGEN_JOBS", "")
    if jobs.isdigit() and int(jobs) > 0:
        return int(jobs)
    return min(os.cpu_count() or 1, 8)


def _scan_data(job: tuple[bytes, str, str, str]) -> dict[str, Any]:
    """Scan one file (in a pool worker or here) and return the scan as cacheable data."""
    return scan_file(*job).to_data()


def _since(started: float) -> float:
    return time.perf_counter() - started


def _builtin_source() -> Source:
    """The built-in cleanup service, found next to `runtime/__init__.py` without importing it."""
    spec = importlib.util.find_spec("runtime")
    if spec is None or spec.origin is None:
        raise BuildError("the runtime package is not installed next to rsxgen")
    return Source(
        Path(spec.origin).parent / "cleanup_service.py",
        BUILTIN_PATH,
        BUILTIN_SERVICE,
        BUILTIN_MODULE,
    )


def _shown(path: Path, root: Path) -> str:
    """A path as shown to the user: relative to the app root, with forward slashes."""
    return Path(os.path.relpath(path, root)).as_posix()

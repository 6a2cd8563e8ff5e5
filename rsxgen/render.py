"""Rendering: the manifest into the text of every output file, through jinja2 templates.

The templates see only the `Manifest`; everything they print is a property of it, plus
the `py` filter that spells a string as a Python literal.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from rsxgen.manifest import Manifest

TEMPLATES_DIR = Path(__file__).parent / "templates"
PY_FILES = ("__init__.py", "registry.py", "schedule.py", "tasks.py")
MANIFEST_FILE = "manifest.json"

if TYPE_CHECKING:
    import jinja2
OUTPUT_FILES = (*PY_FILES, MANIFEST_FILE)


def py_literal(value: str | None) -> str:
    """A str (or None) as Python source, double-quoted unless the text holds a `"`."""
    if value is None:
        return "None"
    text = repr(value)
    if text.startswith("'") and '"' not in value:
        return f'"{text[1:-1]}"'
    return text


@cache
def _environment() -> jinja2.Environment:
    # Imported here: a no-change rebuild proves its output current without rendering.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = py_literal
    return env


def render(manifest: Manifest) -> dict[str, str]:
    """Every output file's name (relative to the output folder) and text, sorted by name."""
    env = _environment()
    files = {name: env.get_template(f"{name}.j2").render(manifest=manifest) for name in PY_FILES}
    files[MANIFEST_FILE] = manifest.to_json()
    return dict(sorted(files.items()))

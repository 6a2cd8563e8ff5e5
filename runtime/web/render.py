"""Pages from jinja2 templates, with autoescaping on and the CSRF cookie handled.

Every template gets `csrf` (the form token), `login_required`, `database` (the URL with its
password masked by `runtime.urls.masked_url`) and `server_id`; the filters `controls`
(control characters escaped, newline and tab kept), `when`, `took`, `pretty` (indented
JSON) and `percent` (a progress value as a number from 0 to 100, or None).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from runtime.config import Config
from runtime.display import duration, moment
from runtime.text import escape_controls
from runtime.urls import masked_url
from runtime.web.security import csrf_token, remember_csrf


def progress_percent(value: Any) -> float | None:
    """A progress value as a number from 0 to 100, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value:
        return None
    return max(0.0, min(100.0, float(value)))


def pretty(value: Any) -> str:
    """A JSON value indented for reading, control characters escaped."""
    return escape_controls(json.dumps(value, ensure_ascii=False, indent=2), keep="\n")


class Renderer:
    """The dashboard's template environment."""

    def __init__(self, folder: Path, config: Config) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            controls=lambda text: escape_controls(str(text), keep="\n\t"),
            when=lambda value: (
                moment(value) if isinstance(value, datetime) or value is None else value
            ),
            took=duration,
            pretty=pretty,
            percent=progress_percent,
        )
        self.shared = {"database": masked_url(config.database_url), "server_id": config.server_id}

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        login_required: bool,
        status_code: int = 200,
    ) -> HTMLResponse:
        """The template `name` rendered for `request`, no-store, with its CSRF cookie."""
        token = csrf_token(request)
        values = {
            **self.shared,
            "csrf": token,
            "login_required": login_required,
            "path": request.url.path,
            **context,
        }
        response = HTMLResponse(self.env.get_template(name).render(values), status_code)
        response.headers["cache-control"] = "no-store"
        remember_csrf(request, response, token)
        return response

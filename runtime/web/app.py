"""The dashboard as a Starlette application: `create_app(config)`.

Routes: the pages (`/`, `/tasks`, `/tasks/{id}`, `/login`), the page-side live data
(`/overview.json`, `/tasks/{id}/events`), the POST actions (`/tasks/{id}/redispatch`,
`/logout`), the JSON API (`/api/tasks`, `/api/tasks/{id}`) and `/metrics`. Handlers are
plain functions, which Starlette runs in its thread pool, because every store call blocks.
Each response carries a strict Content-Security-Policy: scripts and styles come only from
`/static`, so text a task stored can never run in the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.config import Config
from runtime.store import Store
from runtime.web import api, pages
from runtime.web.context import Dashboard
from runtime.web.metrics import LAG_S, registry
from runtime.web.render import Renderer
from runtime.web.security import Guard

HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode("latin-1") not in present:
                        headers.append((name.encode("latin-1"), value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def cancel_capability() -> Callable[[int], Any] | None:
    """`Task.cancel` when the runtime offers cancellation, else None (no Cancel button)."""
    from runtime.api import Task

    found = getattr(Task, "cancel", None)
    return found if callable(found) else None


def create_app(
    config: Config,
    store: Store | None = None,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    metrics_lag_s: float = LAG_S,
) -> Starlette:
    """The dashboard of the app `config` describes.

    `token`: require it (bearer token for the API and metrics, login for pages).
    `allowed_hosts`: the Host header values accepted (None: any), which keeps a page on
    another site from reaching a loopback dashboard through DNS rebinding.
    """
    from runtime.api import use_config

    store = store or Store(config)
    use_config(config, store)
    dashboard = Dashboard(
        config=config,
        store=store,
        guard=Guard(token),
        renderer=Renderer(HERE / "templates", config),
        metrics=registry(store, config, metrics_lag_s),
        cancel=cancel_capability(),
    )
    routes = [
        Route("/", pages.overview),
        Route("/overview.json", pages.overview_data),
        Route("/tasks", pages.task_list),
        Route("/tasks/{task_id}", pages.task_page),
        Route("/tasks/{task_id}/events", pages.task_events),
        Route("/tasks/{task_id}/redispatch", pages.redispatch, methods=["POST"]),
        Route("/tasks/{task_id}/cancel", pages.cancel, methods=["POST"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/api/tasks", api.task_list),
        Route("/api/tasks/{task_id}", api.task_detail),
        Route("/metrics", api.metrics),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.dashboard = dashboard
    return app

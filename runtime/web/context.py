"""What every dashboard handler reaches through its request: the `Dashboard`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from runtime.config import Config
from runtime.store import Store
from runtime.web.render import Renderer
from runtime.web.security import Guard


@dataclass
class Dashboard:
    """The app's config and store, the access rules, the page renderer, the metrics
    registry, and the optional actions the runtime offers (None when it has none)."""

    config: Config
    store: Store
    guard: Guard
    renderer: Renderer
    metrics: CollectorRegistry
    cancel: Callable[[int], Any] | None


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard serving `request`."""
    found: Dashboard = request.app.state.dashboard
    return found


def no_store(response: Response) -> Response:
    """Mark a response as never to be cached (pages and data change all the time)."""
    response.headers["cache-control"] = "no-store"
    return response

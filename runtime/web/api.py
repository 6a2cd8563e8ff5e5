"""The JSON API and `/metrics`: `GET /api/tasks`, `GET /api/tasks/{id}`, `GET /metrics`.

With a token, each wants `Authorization: Bearer <token>` (401 otherwise). `/api/tasks`
takes the filters of `python -m runtime.tasks` as query parameters (`status` repeatable,
`queue`, `service`, `task`, `since`, `limit` up to `MAX_PAGE`, `before` for the next page)
and returns `{"tasks": [...], "next_before": id or null}`; `/api/tasks/{id}` returns the
polling shape (`runtime.web.shapes.task_data`). Errors are `{"error": message}`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.clock import utcnow
from runtime.filters import parse_filter, parse_task_id
from runtime.web import failures
from runtime.web.context import dashboard_of, no_store
from runtime.web.shapes import task_data

MAX_PAGE = 1000


def error(status_code: int, text: str) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse({"error": text}, status_code)


def denied(request: Request) -> Response | None:
    """A 401 response unless the request carries the token (or none is needed)."""
    if dashboard_of(request).guard.api_allowed(request):
        return None
    response = error(401, "this dashboard wants Authorization: Bearer <token>")
    response.headers["www-authenticate"] = 'Bearer realm="rsx"'
    return response


def query_values(request: Request) -> dict[str, list[str]]:
    """The query parameters, each with every value it was given."""
    return {key: request.query_params.getlist(key) for key in request.query_params}


def task_list(request: Request) -> Response:
    refused = denied(request)
    if refused is not None:
        return refused
    store = dashboard_of(request).store
    now = utcnow()
    try:
        selection = parse_filter(query_values(request), now, MAX_PAGE)
        found = store.list_tasks(selection)
    except failures.HANDLED as exc:
        return error(failures.status_code(exc), failures.message(exc))
    following = found[-1].id if len(found) == selection.limit else None
    data = {"tasks": [task.to_dict(now) for task in found], "next_before": following}
    return no_store(JSONResponse(data))


def task_detail(request: Request) -> Response:
    refused = denied(request)
    if refused is not None:
        return refused
    store = dashboard_of(request).store
    try:
        task_id = parse_task_id(request.path_params["task_id"])
        status = store.get(task_id)
    except failures.HANDLED as exc:
        code = failures.status_code(exc)
        return error(404 if code == 400 else code, failures.message(exc))
    return no_store(JSONResponse(task_data(status)))


def metrics(request: Request) -> Response:
    refused = denied(request)
    if refused is not None:
        return refused
    try:
        text = generate_latest(dashboard_of(request).metrics)
    except failures.HANDLED as exc:
        return Response(f"# {failures.message(exc)}\n", failures.status_code(exc))
    return no_store(Response(text, media_type=CONTENT_TYPE_LATEST))

"""The dashboard's pages and their POST actions.

Pages: the overview, the task list (the filters of `python -m runtime.tasks`, a page of
`PAGE` rows at a time, newest first) and a task's page, whose log and progress bar follow
the task live through `/tasks/{id}/events`. With a token, a page request without a valid
session goes to the login form. POSTs (redispatch, cancel, login, logout) must carry the
CSRF token (403 otherwise); redispatch is offered for failed, stuck and cancelled tasks,
cancel for pending and running ones when the runtime has `Task.cancel`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from runtime.clock import utcnow
from runtime.display import attempts
from runtime.filters import TaskFilter, parse_filter, parse_task_id
from runtime.registry import load_retries
from runtime.state import Status
from runtime.web import failures
from runtime.web.api import query_values
from runtime.web.context import dashboard_of, no_store
from runtime.web.events import TaskEvents, stream
from runtime.web.overview import collect_overview
from runtime.web.render import progress_percent
from runtime.web.security import SESSION_COOKIE, csrf_valid, safe_next

PAGE = 50
MAX_PAGE = 500
REDISPATCHABLE = (Status.FAILED, Status.STUCK, Status.CANCELLED)
CANCELLABLE = (Status.PENDING, Status.RUNNING)
LOGIN_DELAY_S = 0.5


def _login_redirect(request: Request) -> Response | None:
    """A redirect to the login form unless the request may see pages."""
    if dashboard_of(request).guard.page_allowed(request):
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)


def error_page(request: Request, status_code: int, text: str) -> Response:
    """An error page saying `text`."""
    dashboard = dashboard_of(request)
    return dashboard.renderer.page(
        request,
        "error.html",
        {"status_code": status_code, "message": text},
        dashboard.guard.required,
        status_code,
    )


def _failure_page(request: Request, exc: Exception) -> Response:
    code = failures.status_code(exc)
    return error_page(request, 404 if code == 400 else code, failures.message(exc))


def overview(request: Request) -> Response:
    refused = _login_redirect(request)
    if refused is not None:
        return refused
    dashboard = dashboard_of(request)
    try:
        view = collect_overview(dashboard.store, dashboard.config, utcnow())
    except failures.HANDLED as exc:
        return _failure_page(request, exc)
    return dashboard.renderer.page(
        request, "overview.html", {"view": view}, dashboard.guard.required
    )


def overview_data(request: Request) -> Response:
    dashboard = dashboard_of(request)
    if not dashboard.guard.page_allowed(request):
        return JSONResponse({"error": "log in first"}, 401)
    try:
        view = collect_overview(dashboard.store, dashboard.config, utcnow())
    except failures.HANDLED as exc:
        return JSONResponse({"error": failures.message(exc)}, failures.status_code(exc))
    return no_store(JSONResponse(view.to_dict()))


def _form_values(selection: TaskFilter, values: dict[str, list[str]]) -> dict[str, Any]:
    """What the filter form shows: the values as given."""
    return {
        "statuses": [status.value for status in selection.statuses],
        **{key: (values.get(key) or [""])[0] for key in ("queue", "service", "task", "since")},
        "limit": selection.limit,
    }


def task_list(request: Request) -> Response:
    refused = _login_redirect(request)
    if refused is not None:
        return refused
    dashboard = dashboard_of(request)
    values = query_values(request)
    now = utcnow()
    try:
        selection = parse_filter(values, now, MAX_PAGE)
        found = dashboard.store.list_tasks(selection)
    except failures.HANDLED as exc:
        code = failures.status_code(exc)
        return error_page(request, code, failures.message(exc))
    kept = [(k, v) for k, given in values.items() if k != "before" for v in given if v]
    following = None
    if len(found) == selection.limit:
        following = "/tasks?" + urlencode([*kept, ("before", str(found[-1].id))])
    context = {
        "tasks": found,
        "now": now,
        "form": _form_values(selection, values),
        "all_statuses": [status.value for status in Status],
        "following": following,
        "first_page": selection.before is None,
        "newest": "/tasks?" + urlencode(kept),
    }
    return dashboard.renderer.page(request, "tasks.html", context, dashboard.guard.required)


def task_page(request: Request) -> Response:
    refused = _login_redirect(request)
    if refused is not None:
        return refused
    dashboard = dashboard_of(request)
    try:
        status = dashboard.store.get(parse_task_id(request.path_params["task_id"]))
    except failures.HANDLED as exc:
        return _failure_page(request, exc)
    now = utcnow()
    took = None
    if status.started_at is not None:
        took = (status.completed_at or now) - status.started_at
    retries = load_retries(dashboard.config).get((status.service_name, status.task_name))
    context = {
        "task": status,
        "attempts": attempts(status.attempts, retries),
        "max_attempts": retries + 1 if retries else "",
        "progress": progress_percent(status.get("progress")),
        "progress_value": status.get("progress"),
        "took": took,
        "redispatchable": [s.value for s in REDISPATCHABLE],
        "can_cancel": dashboard.cancel is not None and status.status in CANCELLABLE,
        "grace": dashboard.config.cancel_grace_seconds,
    }
    return dashboard.renderer.page(request, "task.html", context, dashboard.guard.required)


def task_events(request: Request) -> Response:
    dashboard = dashboard_of(request)
    if not dashboard.guard.page_allowed(request):
        return JSONResponse({"error": "log in first"}, 401)
    try:
        task_id = parse_task_id(request.path_params["task_id"])
        dashboard.store.get(task_id)
    except failures.HANDLED as exc:
        code = failures.status_code(exc)
        return JSONResponse({"error": failures.message(exc)}, 404 if code == 400 else code)
    given = request.headers.get("last-event-id") or request.query_params.get("offset", "0")
    offset = int(given) if given.isascii() and given.isdigit() else 0
    events = TaskEvents(dashboard.store, task_id, offset)
    return StreamingResponse(
        stream(events),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _checked_form(request: Request) -> tuple[dict[str, str] | None, Response | None]:
    """The POSTed form if the session and its CSRF token are valid, else a 403 page."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if not csrf_valid(request, fields.get("csrf")):
        return None, error_page(request, 403, "missing or wrong CSRF token; reload the page")
    return fields, None


async def _action_form(request: Request) -> tuple[int | None, Response | None]:
    """The task id of a POST action, or the response refusing it."""
    if not dashboard_of(request).guard.page_allowed(request):
        return None, error_page(request, 403, "log in first")
    _, refused = await _checked_form(request)
    if refused is not None:
        return None, refused
    try:
        return parse_task_id(request.path_params["task_id"]), None
    except failures.HANDLED as exc:
        return None, _failure_page(request, exc)


async def redispatch(request: Request) -> Response:
    """Queue a new copy of a failed or stuck task, then show the new task."""
    task_id, refused = await _action_form(request)
    if refused is not None or task_id is None:
        return refused or error_page(request, 400, "no task id")
    from runtime.api import Task

    store = dashboard_of(request).store
    try:
        status = await run_in_threadpool(store.get, task_id)
        if status.status not in REDISPATCHABLE:
            return error_page(
                request, 409, f"task {task_id} is {status.status.value}; only failed, stuck "
                "and cancelled tasks are redispatched here (python -m runtime.redispatch does "
                "any)",
            )  # fmt: skip
        new_id = await run_in_threadpool(Task.redispatch, task_id)
    except failures.HANDLED as exc:
        return _failure_page(request, exc)
    return RedirectResponse(f"/tasks/{new_id}", 303)


async def cancel(request: Request) -> Response:
    """Cancel a pending or running task, where the runtime offers cancellation; then show
    the task (cancelled, or running until it stops)."""
    action = dashboard_of(request).cancel
    if action is None:
        return error_page(request, 404, "this runtime cannot cancel tasks")
    task_id, refused = await _action_form(request)
    if refused is not None or task_id is None:
        return refused or error_page(request, 400, "no task id")
    try:
        done = await run_in_threadpool(action, task_id)
    except failures.HANDLED as exc:
        return _failure_page(request, exc)
    if not done:
        return error_page(request, 409, f"task {task_id} has already ended")
    return RedirectResponse(f"/tasks/{task_id}", 303)


def login_form(request: Request) -> Response:
    dashboard = dashboard_of(request)
    target = safe_next(request.query_params.get("next"))
    if not dashboard.guard.required or dashboard.guard.page_allowed(request):
        return RedirectResponse(target, 303)
    return dashboard.renderer.page(request, "login.html", {"next": target, "failed": False}, True)


async def login(request: Request) -> Response:
    dashboard = dashboard_of(request)
    fields, refused = await _checked_form(request)
    if refused is not None or fields is None:
        return refused or error_page(request, 400, "no form")
    target = safe_next(fields.get("next"))
    response = RedirectResponse(target, 303)
    secure = request.url.scheme == "https"
    if dashboard.guard.login(fields.get("token", ""), response, secure):
        return response
    await anyio.sleep(LOGIN_DELAY_S)
    return dashboard.renderer.page(
        request, "login.html", {"next": target, "failed": True}, True, 401
    )


async def logout(request: Request) -> Response:
    _, refused = await _checked_form(request)
    if refused is not None:
        return refused
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response

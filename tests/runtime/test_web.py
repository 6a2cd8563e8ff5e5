"""The dashboard through Starlette's TestClient: routes, JSON shapes, metrics, and the
security rules (token, session cookie, CSRF, escaping, no password on any page).

Tests that read numbers from the table run on every backend; the rules that do not
depend on the database run on SQLite only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from runtime import Task
from runtime.clock import to_db, utcnow
from runtime.schema import tasks
from runtime.web.app import create_app
from runtime.web.security import CSRF_COOKIE, SESSION_COOKIE
from tests.runtime.helpers import App
from tests.runtime.viewshelp import Seeded, insert, seed

TOKEN = "correct-horse-battery-staple"
SECRET = "s3cret-Pa55"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def client_for(app: App, token: str | None = None, **options: Any) -> TestClient:
    made = create_app(app.config, store=app.store, token=token, metrics_lag_s=0, **options)
    return TestClient(made, base_url="http://127.0.0.1", follow_redirects=False)


@pytest.fixture
def seeded(app: App) -> Seeded:
    return seed(app, utcnow())


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with client_for(app) as made:
        yield made


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def log_in(client: TestClient) -> None:
    form = client.get("/login")
    assert form.status_code == 200
    done = client.post("/login", data={"token": TOKEN, "csrf": csrf_of(form.text), "next": "/"})
    assert done.status_code == 303, done.text
    assert SESSION_COOKIE in done.cookies


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def count_rows(app: App) -> int:
    with app.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(tasks)).scalar_one())


# -- pages and data ----------------------------------------------------------------------


def test_overview_shows_queues_failures_stuck_tasks_and_schedules(
    client: TestClient, seeded: Seeded
) -> None:
    page = client.get("/")

    assert page.status_code == 200
    text = page.text
    assert 'data-queue="video"' in text
    assert f'href="/tasks/{seeded.failed}"' in text
    assert f'href="/tasks/{seeded.stuck}"' in text
    assert 'id="count-failed">1<' in text and 'id="count-stuck">1<' in text
    assert "cleanup_service.cleanup_old_tasks" in text and "on time (+1.0s)" in text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]

    data = client.get("/overview.json").json()
    queues = {queue["queue"]: queue for queue in data["queues"]}
    assert (queues["video"]["pending"], queues["video"]["running"]) == (1, 1)
    assert queues["default"]["pending"] == 1 and queues["default"]["max_workers"] == 1
    assert data["counts"] == {"failed": 1, "stuck": 1}
    assert [task["id"] for task in data["failed"]] == [seeded.failed]


def test_task_list_filters_and_pages_like_the_command(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/tasks", params=[("status", "failed"), ("status", "stuck")])
    assert page.status_code == 200
    listed = [int(i) for i in re.findall(r'<td><a href="/tasks/(\d+)">', page.text)]
    assert listed == [seeded.stuck, seeded.failed]
    assert 'value="failed" checked' in page.text

    first = client.get("/tasks", params={"limit": "3"})
    ids = [int(i) for i in re.findall(r'<td><a href="/tasks/(\d+)">', first.text)]
    assert ids == [seeded.other_pending, seeded.pending, seeded.running]
    older = re.search(r'href="([^"]+)" id="older"', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&"))
    more = [int(i) for i in re.findall(r'<td><a href="/tasks/(\d+)">', second.text)]
    assert more == [seeded.stuck, seeded.failed, seeded.scheduled_late]

    bad = client.get("/tasks", params={"since": "soon"})
    assert bad.status_code == 400
    assert "invalid duration &#39;soon&#39;" in bad.text


def test_task_page_shows_params_progress_times_and_offers_redispatch_only_when_ended_badly(
    client: TestClient, seeded: Seeded
) -> None:
    running = client.get(f"/tasks/{seeded.running}").text
    assert '<progress id="progress" max="100" value="40.0">' in running
    assert 'id="redispatch" data-when="failed stuck cancelled" hidden' in running
    assert "&#34;n&#34;: 1" in running

    failed = client.get(f"/tasks/{seeded.failed}").text
    assert re.search(r'id="redispatch" data-when="failed stuck cancelled">', failed)
    assert "ValueError" in failed and "about to fail" in failed
    completed = client.get(f"/tasks/{seeded.completed[0]}").text
    assert 'data-when="failed stuck cancelled" hidden' in completed


def test_the_cancel_button_cancels_a_pending_task_and_asks_a_running_one_to_stop(
    client: TestClient, app: App, seeded: Seeded
) -> None:
    page = client.get(f"/tasks/{seeded.pending}")
    assert 'id="cancel"' in page.text
    token = csrf_of(page.text)
    done = client.post(f"/tasks/{seeded.pending}/cancel", data={"csrf": token})
    assert (done.status_code, done.headers["location"]) == (303, f"/tasks/{seeded.pending}")
    assert app.status(seeded.pending).status == "cancelled"
    shown = client.get(f"/tasks/{seeded.pending}").text
    assert 'id="cancel"' not in shown and 'class="badge cancelled"' in shown

    running = client.get(f"/tasks/{seeded.running}").text
    assert 'id="cancel"' in running and "it is killed 10 s later" in running
    asked = client.post(f"/tasks/{seeded.running}/cancel", data={"csrf": token})
    assert asked.status_code == 303
    assert app.status(seeded.running).cancel_requested_at is not None
    assert 'id="cancel-requested"' in client.get(f"/tasks/{seeded.running}").text
    detail = client.get(f"/api/tasks/{seeded.running}").json()
    assert detail["status"] == "running" and detail["cancel_requested_at"].endswith("+00:00")

    completed = seeded.completed[0]
    assert 'id="cancel"' not in client.get(f"/tasks/{completed}").text
    refused = client.post(f"/tasks/{completed}/cancel", data={"csrf": token})
    assert refused.status_code == 409 and f"task {completed} has already ended" in refused.text
    assert client.post(f"/tasks/{completed}/cancel", data={}).status_code == 403


@SQLITE_ONLY
def test_without_task_cancel_there_is_no_cancel_button(
    app: App, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(Task, "cancel")
    with client_for(app) as client:
        page = client.get(f"/tasks/{seeded.pending}")
        assert 'id="cancel"' not in page.text
        refused = client.post(f"/tasks/{seeded.pending}/cancel", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 404
    assert app.status(seeded.pending).status == "pending"


def test_unknown_ids_are_404_on_pages_and_in_the_api(client: TestClient, seeded: Seeded) -> None:
    for path in ("/tasks/999999", "/tasks/abc", f"/tasks/{2**70}", "/tasks/-1"):
        page = client.get(path)
        assert page.status_code == 404, path
    assert client.get("/tasks/999999").text.count("no task with id 999999") == 1
    for path in ("/api/tasks/999999", "/api/tasks/x1", f"/api/tasks/{2**64}"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert set(answer.json()) == {"error"}
    assert client.get("/tasks/999999/events").status_code == 404


def test_api_task_has_the_polling_shape(client: TestClient, seeded: Seeded) -> None:
    data = client.get(f"/api/tasks/{seeded.running}").json()

    assert {"status", "progress", "log", "result"} <= set(data)
    assert data["status"] == "running" and data["progress"] == 40
    assert data["id"] == seeded.running and data["service"] == "demo"
    assert data["task"] == "gated" and data["queue"] == "video"
    assert data["params"] == {"n": 1}
    assert data["started_at"].endswith("+00:00")
    failed = client.get(f"/api/tasks/{seeded.failed}").json()
    assert failed["result"] == {"error": "boom", "type": "ValueError"}
    assert failed["log"] == "[2024-01-01 00:00:00] about to fail\n"


def test_api_lists_with_the_filters_of_the_command(client: TestClient, seeded: Seeded) -> None:
    found = client.get("/api/tasks", params=[("status", "pending"), ("queue", "video")]).json()
    assert [task["id"] for task in found["tasks"]] == [seeded.other_pending]
    assert found["next_before"] is None

    page = client.get("/api/tasks", params={"limit": "2"}).json()
    assert [task["id"] for task in page["tasks"]] == [seeded.other_pending, seeded.pending]
    following = client.get("/api/tasks", params={"limit": "2", "before": page["next_before"]})
    assert [task["id"] for task in following.json()["tasks"]] == [seeded.running, seeded.stuck]

    for params in ({"status": "done"}, {"limit": "0"}, {"since": "1y"}, {"before": "x"}):
        bad = client.get("/api/tasks", params=params)
        assert bad.status_code == 400, params
        assert "\n" not in bad.json()["error"]


def test_metrics_parse_and_match_the_rows_and_never_go_down(
    app: App, client: TestClient, seeded: Seeded
) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    values = metric_values(answer.text)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("rsx_queue_pending", queue="default") == 1
    assert value("rsx_queue_pending", queue="video") == 1
    assert value("rsx_queue_running", queue="video") == 1
    assert value("rsx_queue_max_workers", queue="video") == 2
    assert value("rsx_global_max_workers", server="1") == 4
    assert value("rsx_queue_oldest_pending_age_seconds", queue="slow") == 0
    assert 0 < value("rsx_queue_oldest_pending_age_seconds", queue="default") < 3600
    add = {"service": "demo", "task": "add"}
    fail = {"service": "demo", "task": "fail"}
    assert value("rsx_tasks_completed_total", **add) == 11
    assert value("rsx_tasks_failed_total", **add) == 0
    assert value("rsx_tasks_failed_total", **fail) == 1
    assert value("rsx_tasks_stuck_total", **fail) == 1
    assert value("rsx_task_duration_seconds_count", **add) == 11
    assert value("rsx_task_duration_seconds_bucket", le="5.0", **add) == 5
    assert value("rsx_task_duration_seconds_bucket", le="10.0", **add) == 10
    assert value("rsx_task_duration_seconds_bucket", le="60.0", **add) == 11
    assert value("rsx_task_duration_seconds_bucket", le="+Inf", **add) == 11
    assert value("rsx_task_duration_seconds_sum", **add) == pytest.approx(55 + 50, abs=0.01)
    assert value("rsx_task_duration_seconds_count", **fail) == 1  # stuck runs are not timed

    with app.store.write() as conn:  # the daily cleanup deletes old completed rows
        conn.execute(delete(tasks).where(tasks.c.id == seeded.old_completed))
    insert(app, "demo", "add", "default", "completed", utcnow() - timedelta(seconds=1.1), ran=0.1)
    insert(app, "demo", "add", "default", "cancelled", utcnow() - timedelta(seconds=1.1), ran=0.1)
    values = metric_values(client.get("/metrics").text)
    assert value("rsx_tasks_completed_total", **add) == 12
    assert value("rsx_task_duration_seconds_bucket", le="0.5", **add) == 1
    assert value("rsx_tasks_cancelled_total", **add) == 1
    assert value("rsx_task_duration_seconds_count", **add) == 12  # cancelled runs are not timed


def test_events_stream_the_log_progress_and_end_of_a_task(app: App, client: TestClient) -> None:
    task_id = insert(
        app, "demo", "chatter", "other", "running", utcnow(),
        status_log="line 0\n", status_data=json.dumps({"progress": 10}), worker_pid=1,
    )  # fmt: skip

    first_sent = threading.Event()

    def finish_soon() -> None:
        # Each change comes after the stream has sent what was there before it.
        first_sent.wait(timeout=30)
        app.update_row(task_id, status_log="line 0\nline <1>\n", status_data='{"progress": 60}')
        time.sleep(0.5)
        app.update_row(
            task_id, status="completed", status_log="line 0\nline <1>\ndone",
            status_data='{"progress": 100}', result='{"lines": 2}', completed_at=to_db(utcnow()),
        )  # fmt: skip

    threading.Thread(target=finish_soon, daemon=True).start()
    with client.stream("GET", f"/tasks/{task_id}/events?offset=0") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        body = ""
        for chunk in answer.iter_text():
            body += chunk
            if "id: 7\n" in body:
                first_sent.set()

    events = [
        (re.search(r"^event: (\w+)$", block, re.M), re.search(r"^data: (.*)$", block, re.M))
        for block in body.split("\n\n")
    ]
    found = [(name.group(1), json.loads(data.group(1))) for name, data in events if name and data]
    logs = "".join(data["text"] for name, data in found if name == "log")
    assert logs == "line 0\nline <1>\ndone"
    assert [data["progress"] for name, data in found if name == "progress"][-1] == 100
    statuses = [data for name, data in found if name == "status"]
    assert statuses[0]["status"] == "running"
    assert statuses[-1]["status"] == "completed" and statuses[-1]["finished"] is True
    assert statuses[-1]["result"] == {"lines": 2}
    assert "id: 7\n" in body  # the log offset after "line 0\n"


# -- security ----------------------------------------------------------------------------


@SQLITE_ONLY
def test_with_a_token_the_api_and_metrics_want_it_as_a_bearer_token(
    app: App, seeded: Seeded
) -> None:
    with client_for(app, token=TOKEN) as client:
        for path in (f"/api/tasks/{seeded.failed}", "/api/tasks", "/metrics"):
            missing = client.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"})
            assert wrong.status_code == 401, path
            basic = client.get(path, headers={"Authorization": f"Basic {TOKEN}"})
            assert basic.status_code == 401, path
            right = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200, path
        log_in(client)
        assert client.get("/api/tasks").status_code == 401  # a session is for pages only


@SQLITE_ONLY
def test_with_a_token_pages_want_the_login_cookie(app: App, seeded: Seeded) -> None:
    with client_for(app, token=TOKEN) as client:
        for path in ("/", "/tasks?status=failed", f"/tasks/{seeded.failed}"):
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=%2F")
        assert client.get("/overview.json").status_code == 401
        assert client.get(f"/tasks/{seeded.running}/events").status_code == 401
        assert client.get("/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"}).is_success

        form = client.get("/login")
        assert 'type="password"' in form.text
        wrong = client.post("/login", data={"token": "guess", "csrf": csrf_of(form.text)})
        assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.cookies
        no_csrf = client.post("/login", data={"token": TOKEN})
        assert no_csrf.status_code == 403 and SESSION_COOKIE not in no_csrf.cookies
        away = client.post(
            "/login", data={"token": TOKEN, "csrf": csrf_of(form.text), "next": "//evil.example/"}
        )
        assert away.status_code == 303 and away.headers["location"] == "/"
        assert client.get("/").status_code == 200
        assert client.get("/overview.json").status_code == 200

        session = client.cookies[SESSION_COOKIE]
        issued, sid, signature = session.split(".")
        forged = f"{issued}.{sid}.{'0' * len(signature)}"
        for value in (forged, f"{int(issued) - 13 * 3600}.{sid}.{signature}", "x", ""):
            client.cookies.clear()
            client.cookies.set(SESSION_COOKIE, value)
            assert client.get("/").status_code == 303, value
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, session)
        assert client.get("/").status_code == 200


@SQLITE_ONLY
def test_every_post_wants_the_csrf_token_of_the_session(app: App, seeded: Seeded) -> None:
    with client_for(app) as client:
        page = client.get(f"/tasks/{seeded.failed}")
        token = csrf_of(page.text)
        assert client.cookies[CSRF_COOKIE] == token
        before = count_rows(app)
        for data in ({}, {"csrf": ""}, {"csrf": token + "x"}):
            refused = client.post(f"/tasks/{seeded.failed}/redispatch", data=data)
            assert refused.status_code == 403, data
            assert "CSRF" in refused.text
        client.cookies.delete(CSRF_COOKIE)
        without = client.post(f"/tasks/{seeded.failed}/redispatch", data={"csrf": token})
        assert without.status_code == 403
        assert count_rows(app) == before
        assert client.get("/tasks").status_code == 200  # sets a fresh cookie
        assert client.post("/logout", data={}).status_code == 403
        assert client.get(f"/tasks/{seeded.failed}/redispatch").status_code == 405


@SQLITE_ONLY
def test_redispatch_queues_a_copy_of_a_failed_task_and_shows_it(app: App, seeded: Seeded) -> None:
    failed = insert(
        app, "demo", "add", "default", "failed", utcnow(), ran=0.1, params={"a": 2, "b": 3}
    )
    with client_for(app) as client:
        token = csrf_of(client.get(f"/tasks/{failed}").text)
        done = client.post(f"/tasks/{failed}/redispatch", data={"csrf": token})
        assert done.status_code == 303
        new_id = int(done.headers["location"].rsplit("/", 1)[1])
        copy = app.status(new_id)
        assert (copy.service_name, copy.task_name) == ("demo", "add")
        assert dict(copy.params) == {"a": 2, "b": 3}
        assert app.wait_status(new_id).result == 5
        refused = client.post(f"/tasks/{seeded.completed[0]}/redispatch", data={"csrf": token})
        assert refused.status_code == 409
        assert "only failed, stuck and cancelled tasks" in refused.text
        invalid = client.post(f"/tasks/{seeded.failed}/redispatch", data={"csrf": token})
        assert invalid.status_code == 409  # its params no longer fit the task
        assert "message" in invalid.text


@SQLITE_ONLY
def test_html_and_terminal_escapes_in_stored_text_are_shown_escaped(
    app: App, client: TestClient
) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>\x1b[2J\r\x07'
    task_id = insert(
        app, "demo<b>", "add</b>", "default", "failed", utcnow(), ran=0.1,
        status_log=f"[2024-01-01 00:00:00] {hostile}\n",
        result=json.dumps({"error": hostile, "type": "ValueError"}),
    )  # fmt: skip

    for path in (f"/tasks/{task_id}", "/tasks", "/"):
        text = client.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "<b>" not in text, path
        assert "\x1b" not in text and "\x07" not in text, path
    page = client.get(f"/tasks/{task_id}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "\\x1b[2J\\r\\x07" in page
    assert "demo&lt;b&gt;.add&lt;/b&gt;" in page


@SQLITE_ONLY
def test_no_page_shows_the_database_password(app: App, seeded: Seeded) -> None:
    url = f"postgresql+psycopg://rsx:{SECRET}@127.0.0.1:9/tasks?password={SECRET}"
    shown = replace(app.config, database_url=url)
    with TestClient(create_app(shown, store=app.store), base_url="http://127.0.0.1") as client:
        for path in ("/", "/tasks", f"/tasks/{seeded.failed}", "/tasks/424242", "/login"):
            text = client.get(path).text
            assert SECRET not in text, path
            assert "postgresql+psycopg://rsx:***@127.0.0.1:9/tasks?password=***" in text, path

    broken = create_app(shown, token=None)
    with TestClient(broken, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        for path in ("/", "/tasks", "/tasks/1", "/api/tasks", "/api/tasks/1", "/metrics"):
            answer = client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert SECRET not in answer.text, path
            assert "***" in answer.text, path


@SQLITE_ONLY
def test_a_loopback_dashboard_answers_only_loopback_host_names(app: App) -> None:
    made = create_app(app.config, store=app.store, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(made, base_url="http://127.0.0.1") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
        assert client.get("/", headers={"host": "rebound.example"}).status_code == 400


# -- the command -------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--host", "0.0.0.0"], {}, "needs a token: pass --token or set RSX_WEB_TOKEN"),
        (["--host", "192.0.2.1"], {}, "not a loopback address"),
        (["--port", "70000"], {}, "invalid port '70000'"),
        (["--port"], {}, "expected one argument"),
        (["--host", "0.0.0.0", "--token", ""], {}, "needs a token"),
        (["--wat"], {}, "unrecognized arguments: --wat"),
        (["--host", "192.0.2.1"], {"RSX_WEB_TOKEN": TOKEN}, "cannot listen on 192.0.2.1"),
        (["--config", "missing.toml"], {}, "config file not found"),
    ],
)
def test_the_web_command_refuses_in_one_line(
    app: App, args: list[str], env: dict[str, str], needle: str
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "runtime.web", "--port", "0", *args],
        cwd=app.root, env={**app.env, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("python -m runtime.web: error: ")
    assert needle in lines[0]
    assert TOKEN not in done.stderr


@SQLITE_ONLY
def test_the_processor_and_the_store_never_import_the_web_stack(app: App, tmp_path: Path) -> None:
    import subprocess
    import sys

    found = tmp_path / "modules.json"
    code = (
        "import json, sys, runtime.process as p, runtime.stats, runtime.tasks; code = p.main([]); "
        f"open({str(found)!r}, 'w').write(json.dumps(sorted(m for m in sys.modules if "
        "m.split('.')[0] in ('starlette', 'uvicorn', 'prometheus_client', 'httpx', 'httpx2') "
        "or m.startswith('runtime.web')))); sys.exit(code)"
    )
    task_id = app.insert_row("demo", "add", "default", {"a": 1})
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=app.root, env=app.env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert app.status(task_id).result == 1  # the processor worked the queue itself
    assert json.loads(found.read_text()) == []

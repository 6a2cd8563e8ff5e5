"""Connections to PostgreSQL and MariaDB: killed sessions are replaced without losing task
state, and a database URL's password never appears in an error."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, select, text
from sqlalchemy.engine import make_url

from runtime import BackendError, Task
from runtime.clock import from_db, utcnow
from runtime.schema import tasks
from runtime.store import Store, queue_channel
from runtime.store.fast import HeldConnections
from tests.databases import fresh_database
from tests.runtime.backendhelp import backend_name, write_config
from tests.runtime.helpers import App, wait_until

SERVERS = ("postgresql", "mysql")
PASSWORD = "S3cret-Pa55word"


def count_sessions(url: str) -> int:
    """How many sessions other than this query's are connected to the database `url`."""
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            if backend_name(url) == "postgresql":
                query = (
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            else:
                query = (
                    "SELECT count(*) FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            return int(conn.execute(text(query)).scalar() or 0)
    finally:
        admin.dispose()


def kill_sessions(url: str) -> int:
    """Terminate every session of the database `url` names, from a separate connection."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend_name(url) == "postgresql":
                return len(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    ).all()
                )
            ids = (
                conn.execute(
                    text(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                    )
                )
                .scalars()
                .all()
            )
            for session in ids:
                conn.execute(text(f"KILL {int(session)}"))
            return len(ids)
    finally:
        admin.dispose()


@pytest.mark.parametrize("db_url", SERVERS, indirect=True)
def test_the_pool_replaces_a_killed_session_before_using_it(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    task_id = store.insert_task(
        service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
    )
    assert kill_sessions(db_url) >= 1
    assert store.get(task_id).status == "pending"
    assert (
        store.insert_task(
            service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
        )
        == task_id + 1
    )
    store.dispose()


@pytest.mark.parametrize("db_url", ["sqlite", *SERVERS], indirect=True)
def test_threads_dispatching_through_one_store_each_get_their_own_rows(
    tmp_path: Path, db_url: str
) -> None:
    store = Store(write_config(tmp_path, db_url))
    found: list[list[int]] = []
    errors: list[BaseException] = []

    def dispatch(thread: int) -> None:
        ids = []
        try:
            for n in range(40):
                params = [{"thread": thread, "n": n}]
                ids += store.dispatch(
                    service="svc",
                    task="job",
                    queue="default",
                    params=params,
                    timeout=60,
                    now=utcnow(),
                )[0]
        except BaseException as exc:
            errors.append(exc)
        found.append(ids)

    threads = [threading.Thread(target=dispatch, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    ids = sorted(i for chunk in found for i in chunk)
    assert len(ids) == len(set(ids)) == 320
    for chunk in found:
        assert chunk == sorted(chunk)
        params = [store.get(i).params for i in chunk]
        assert [p["n"] for p in params] == list(range(40))
        assert len({p["thread"] for p in params}) == 1
    store.dispose()


def test_only_a_few_threads_hold_a_connection_and_an_ended_thread_frees_its_place(
    tmp_path: Path,
) -> None:
    store = Store(write_config(tmp_path, f"sqlite:///{tmp_path / 'tasks.db'}"))
    store.ensure_schema()
    held = HeldConnections(store.engine, limit=2)
    taken = threading.Barrier(4)
    done = threading.Event()
    kinds: list[bool] = []

    def use() -> None:
        first = held.take()
        held.give_back(first)
        again = held.take()
        held.give_back(again)
        kinds.append(again is first)  # the same connection again: this thread holds it
        taken.wait(timeout=30)
        done.wait(timeout=30)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(kinds) == 4, 30, "four threads to take a connection")
    assert sorted(kinds) == [False, False, True, True] and held.count == 2
    done.set()
    for thread in threads:
        thread.join(timeout=30)
    gc.collect()
    assert held.count == 0
    assert store.engine.pool.checkedout() == 0, "an ended thread's connection went back"
    fairy = held.take()
    assert held.count == 1 and store.engine.pool.checkedout() == 1
    held.give_back(fairy)
    store.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", SERVERS, indirect=True)
def test_a_worker_whose_sessions_are_killed_finishes_its_task_with_nothing_lost(
    app: App, database_url: str
) -> None:
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "gated", {"gate": str(gate)})

    def waiting_at_gate() -> bool:
        status = Task.status(task_id)
        return status.status == "running" and "waiting for the gate" in status.log

    wait_until(waiting_at_gate, 30, "the task to run and log before its gate")
    app.store.dispose()  # so that only the worker's sessions are left to kill
    # The executor holds a session since its claim, the supervisor since its first heartbeat.
    wait_until(lambda: count_sessions(database_url) >= 2, 15, "the worker's two sessions")
    killed_at = utcnow()
    assert kill_sessions(database_url) >= 2

    def heartbeat_after_kill() -> bool:
        beats = [from_db(w.heartbeat_at) for w in app.registered_workers()]
        return any(beat is not None and beat > killed_at for beat in beats)

    wait_until(heartbeat_after_kill, 15, "the supervisor to heartbeat on a new session")
    gate.touch()

    status = app.wait_status(task_id)
    assert status.status == "completed", status.log
    assert status.get("progress") == 100
    assert status.log.index("waiting for the gate") < status.log.index("gate opened")
    assert status.result["pid"] == status.worker_pid
    app.wait_idle()
    assert app.registered_workers() == []


def _blocked_task_updates(admin: Connection, url: str) -> list[int]:
    """Sessions of the app's database whose UPDATE of `_tasks` waits for a row lock."""
    if backend_name(url) == "postgresql":
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE _tasks%'"
        )
    else:
        query = (
            "SELECT id FROM information_schema.processlist "
            "WHERE db = DATABASE() AND info LIKE 'UPDATE _tasks%'"
        )
    return [int(session) for session in admin.execute(text(query)).scalars()]


def _kill(admin: Connection, url: str, session: int) -> None:
    if backend_name(url) == "postgresql":
        killed = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
        assert killed.scalar() is True
    else:
        admin.execute(text(f"KILL {int(session)}"))


@pytest.mark.slow
@pytest.mark.parametrize("database_url", SERVERS, indirect=True)
def test_a_write_whose_session_is_killed_mid_statement_runs_again_and_loses_nothing(
    app: App, database_url: str
) -> None:
    gate = app.root / "gate"
    task_id = Task.dispatch("demo", "chatter", {"gate": str(gate)})
    wait_until(lambda: "line 0" in Task.status(task_id).log, 30, "the task to run and flush a line")
    engine = create_engine(database_url)
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as holder, admin.connect() as killer:
            # Hold the task's row so that the executor's next log flush blocks in its UPDATE,
            # then kill that session while the statement is in flight.
            holder.execute(select(tasks.c.id).where(tasks.c.id == task_id).with_for_update()).all()
            blocked = wait_until(
                lambda: _blocked_task_updates(killer, database_url),
                15,
                "the executor's log flush to wait on the row lock",
            )
            assert len(blocked) == 1
            _kill(killer, database_url, blocked[0])
            # The flush runs again on a new session, which waits on the lock in its turn.
            wait_until(
                lambda: set(_blocked_task_updates(killer, database_url)) - set(blocked),
                15,
                "the flush to run again on a new session",
            )
            holder.rollback()
    finally:
        engine.dispose()
        admin.dispose()
    gate.touch()

    status = app.wait_status(task_id)
    assert status.status == "completed", status.log
    assert status.result["pid"] == status.worker_pid  # the same executor throughout
    count = status.result["lines"]
    written = [line.split("] ", 1)[1] for line in status.log.splitlines()]
    assert written == [f"line {n}" for n in range(count)] + [f"done after {count} lines"]
    assert "could not write" not in app.worker_log("other")
    app.wait_idle()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_dispatch_whose_session_is_killed_while_committing_is_not_inserted_twice(
    tmp_path: Path, db_url: str
) -> None:
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    # A deferred trigger that waits for an advisory lock the test holds makes every INSERT
    # into _tasks hang in its COMMIT, where the test kills it.
    with admin.connect() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON _tasks "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()"
            )
        )
    failures: list[BaseException] = []

    def dispatch() -> None:
        try:
            store.insert_task(
                service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
            )
        except BackendError as exc:
            failures.append(exc)

    def committing() -> list[int]:
        return list(
            killer.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query = 'COMMIT'"
                )
            ).scalars()
        )

    try:
        with admin.connect() as holder, admin.connect() as killer:
            holder.execute(text("SELECT pg_advisory_lock(4242)"))
            thread = threading.Thread(target=dispatch)
            thread.start()
            session = wait_until(committing, 15, "the dispatch to wait in its COMMIT")[0]
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
            thread.join(timeout=15)
            # It gave up rather than inserting again (a retry would wait on the lock too).
            assert not thread.is_alive() and not committing()
            holder.execute(text("SELECT pg_advisory_unlock(4242)"))
            count = killer.execute(text("SELECT count(*) FROM _tasks")).scalar()
    finally:
        admin.dispose()
        store.dispose()
    assert len(failures) == 1
    message = str(failures[0])
    assert "lost while committing" in message and "may or may not have been saved" in message
    assert "\n" not in message
    assert count == 0


def _dispatch_one(store: Store) -> tuple[list[int], int]:
    return store.dispatch(
        service="svc", task="job", queue="default", params=[{}], timeout=60, now=utcnow()
    )


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_a_mariadb_dispatch_is_one_autocommitted_insert_then_the_workers_read(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task's INSERT commits as it runs (no COMMIT round trip), and the queue's workers
    are read after it, on the same connection."""
    import pymysql.connections

    store = Store(write_config(tmp_path, db_url))
    first = _dispatch_one(store)[0][0]
    sent: list[str] = []
    execute = pymysql.connections.Connection._execute_command

    def recorded(connection: Any, command: int, sql: Any) -> Any:
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        sent.append(f"{command} {' '.join(text.split())}")
        return execute(connection, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recorded)
    ids, live = _dispatch_one(store)
    monkeypatch.undo()
    assert ids == [first + 1] and live == 0
    assert len(sent) == 2, sent
    assert sent[0].startswith("3 INSERT INTO _tasks ")
    assert sent[1].startswith("3 SELECT ") and " FROM _workers " in sent[1]
    store.dispose()


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_a_mariadb_dispatch_whose_session_is_killed_in_its_insert_is_not_inserted_twice(
    tmp_path: Path, db_url: str
) -> None:
    """The autocommitted INSERT may have committed when its session is lost: the dispatch
    says so in one line instead of inserting again."""
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    failures: list[BaseException] = []

    def dispatch() -> None:
        try:
            _dispatch_one(store)
        except BackendError as exc:
            failures.append(exc)

    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as holder, admin.connect() as killer:
            holder.execute(text("LOCK TABLES _tasks WRITE"))
            thread = threading.Thread(target=dispatch)
            thread.start()
            waiting = wait_until(
                lambda: killer.execute(
                    text(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE db = DATABASE() AND info LIKE 'INSERT INTO _tasks%'"
                    )
                ).scalars().all(),
                15,
                "the dispatch to wait in its INSERT",
            )
            _kill(killer, db_url, waiting[0])
            thread.join(timeout=15)
            assert not thread.is_alive()
            holder.execute(text("UNLOCK TABLES"))
            count = killer.execute(text("SELECT count(*) FROM _tasks")).scalar()
    finally:
        admin.dispose()
        store.dispose()
    assert len(failures) == 1
    message = str(failures[0])
    assert "may or may not have been saved" in message and "\n" not in message
    assert count == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_waiter_whose_session_is_killed_reconnects_and_is_woken_again(
    tmp_path: Path, db_url: str
) -> None:
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    with store.engine.connect() as conn:
        store.wait_for_change(conn, queue_channel("default"), 5)  # subscribes
        kill_sessions(db_url)
        started = time.monotonic()
        # The session dies under it: it returns.
        store.wait_for_change(conn, queue_channel("default"), 5)
        assert time.monotonic() - started < 2
        store.wait_for_change(conn, queue_channel("default"), 5)  # a new session subscribes again

        def dispatch_soon() -> None:
            store.insert_task(
                service="svc", task="job", queue="default", params={}, timeout=60, now=utcnow()
            )

        thread = threading.Thread(target=dispatch_soon)
        started = time.monotonic()
        thread.start()
        store.wait_for_change(conn, queue_channel("default"), 5)
        thread.join(timeout=10)
        assert time.monotonic() - started < 2
    store.dispose()


# -- passwords -----------------------------------------------------------------------------


def _server_with_password(backend: str, tmp_path: Path) -> str:
    """A URL of a database that does not exist, on the test server, with a password."""
    with fresh_database(backend, tmp_path) as url:
        server = make_url(url)
    return server.set(password=PASSWORD, database="rsx_no_such_db").render_as_string(
        hide_password=False
    )


@pytest.mark.parametrize("backend", SERVERS)
def test_a_backend_error_names_the_database_without_its_password(
    tmp_path: Path, backend: str
) -> None:
    url = _server_with_password(backend, tmp_path)
    store = Store(write_config(tmp_path, url))
    with pytest.raises(BackendError) as caught:
        store.get(1)
    message = str(caught.value)
    assert PASSWORD not in message
    assert ":***@127.0.0.1" in message
    assert "rsx_no_such_db" in message
    assert "\n" not in message


@pytest.mark.parametrize("backend", SERVERS)
def test_commands_report_an_unusable_database_in_one_line_without_the_password(
    tmp_path: Path, backend: str
) -> None:
    url = _server_with_password(backend, tmp_path)
    config = write_config(tmp_path, "sqlite:///unused.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSX_")}
    env["RSX_DATABASE_URL"] = url
    for command in (["runtime.status", "1"], ["runtime.process"]):
        done = subprocess.run(
            [sys.executable, "-m", *command, "--config", str(config.path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 2, done.stderr
        assert PASSWORD not in done.stderr + done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert ":***@127.0.0.1" in lines[0]

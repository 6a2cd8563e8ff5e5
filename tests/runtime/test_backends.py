"""The database backends: picked from the URL, serialised writes, SKIP LOCKED claims, NOTIFY.

Concurrency is tested with real processes (or threads with their own connections) against
real databases: a fresh SQLite file, PostgreSQL database or MariaDB database per test.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select, text, update

from runtime.backends import backend_for
from runtime.backends.mysql import MySQLBackend, driver_url, lock_name, tls_arguments
from runtime.backends.postgresql import PostgreSQLBackend, channel_name, lock_key
from runtime.backends.sqlite import SQLiteBackend
from runtime.clock import to_db, utcnow
from runtime.config import parse_config
from runtime.errors import BackendError
from runtime.schema import tasks
from runtime.store import Claimer, Limits, Store, queue_channel
from tests.runtime.backendhelp import backend_name, write_config
from tests.runtime.helpers import wait_until

SERVERS = pytest.mark.parametrize("db_url", ["postgresql", "mysql"], indirect=True)
POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
SPAWN = multiprocessing.get_context("spawn")

# A scratch table of the serialised-write test, beside the runtime's own.
meta = Table(
    "_test_counters",
    MetaData(),
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)


@pytest.mark.parametrize(
    ("url", "backend", "driver"),
    [
        ("sqlite:///storage/tasks.db", SQLiteBackend, "sqlite"),
        ("postgresql://app@db.example/tasks", PostgreSQLBackend, "postgresql+psycopg"),
        ("postgres://app@db.example/tasks", PostgreSQLBackend, "postgresql+psycopg"),
        ("postgresql+psycopg://app@db.example/tasks", PostgreSQLBackend, "postgresql+psycopg"),
        ("mysql://app@db.example/tasks", MySQLBackend, "mysql+pymysql"),
        ("mysql+pymysql://app@db.example/tasks", MySQLBackend, "mysql+pymysql"),
        ("mariadb://app@db.example/tasks", MySQLBackend, "mariadb+pymysql"),
    ],
)
def test_backend_and_driver_follow_the_url(url: str, backend: type, driver: str) -> None:
    chosen = backend_for(url)
    assert type(chosen) is backend
    engine = chosen.create_engine(url)  # lazy: no connection is opened
    try:
        assert engine.url.drivername == driver
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("postgresql+psycopg2://app:pw@db.example/tasks", "postgresql+psycopg://"),
        ("mysql+mysqldb://app:pw@db.example/tasks", "mysql+pymysql://"),
    ],
)
def test_an_unsupported_driver_is_one_clear_error(tmp_path: Path, url: str, advice: str) -> None:
    store = Store(write_config(tmp_path, url))
    with pytest.raises(BackendError) as caught:
        store.get(1)
    message = str(caught.value)
    assert advice in message
    assert "\n" not in message
    assert ":pw@" not in message


def test_lock_keys_and_names_are_stable_and_within_server_limits() -> None:
    assert lock_key("rsx_queue_video") == lock_key("rsx_queue_video")
    assert lock_key("rsx_queue_video") != lock_key("rsx_queue_videos")
    assert -(2**63) <= lock_key("x" * 500) < 2**63
    long_queue = "q" * 100
    assert len(lock_name("app_db", f"rsx_queue_{long_queue}")) <= 64
    assert lock_name("app_one", "rsx_queue_default") != lock_name("app_two", "rsx_queue_default")
    assert len(channel_name(long_queue).encode()) <= 63
    assert channel_name(long_queue) != channel_name(long_queue + "x")


@pytest.mark.parametrize(
    ("url", "disabled"),
    [
        ("mysql://root@127.0.0.1:3306/app", True),
        ("mysql://root@localhost/app", True),
        ("mysql://root@[::1]:3306/app", True),
        ("mysql:///app?unix_socket=/run/mysqld/mysqld.sock", True),
        ("mysql://app@db.internal:3306/app", False),
        ("mysql://app@10.0.0.5/app", False),
        ("mysql://root@127.0.0.1/app?ssl_ca=/etc/ca.pem", False),
        ("mysql://root@127.0.0.1/app?ssl_disabled=false", False),
    ],
)
def test_mariadb_tls_is_left_to_pymysql_except_on_this_machine(url: str, disabled: bool) -> None:
    assert tls_arguments(driver_url(url)) == ({"ssl_disabled": True} if disabled else {})


# -- serialised writes ---------------------------------------------------------------------


def _count_up(config_path: str, lock: str, rounds: int, barrier: Any, spans: Any) -> None:
    """Child: `rounds` read-modify-write increments of one counter under `lock`."""
    store = Store(parse_config(Path(config_path)))
    barrier.wait(timeout=60)
    for _ in range(rounds):
        with store.write(lock) as conn:
            entered = time.monotonic()
            current = conn.execute(select(meta.c.value).where(meta.c.key == "counter")).scalar_one()
            time.sleep(0.005)  # widen the window in which an unserialised writer would interleave
            conn.execute(
                update(meta).where(meta.c.key == "counter").values(value=str(int(current) + 1))
            )
            spans.put((entered, time.monotonic()))
    store.dispose()


def test_writes_with_one_lock_name_never_interleave(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    store = Store(config)
    with store.write() as conn:
        meta.create(conn)
        conn.execute(insert(meta).values(key="counter", value="0"))
    workers, rounds = 4, 15
    barrier = SPAWN.Barrier(workers)
    spans = SPAWN.Queue()
    children = [
        SPAWN.Process(target=_count_up, args=(str(config.path), "counter", rounds, barrier, spans))
        for _ in range(workers)
    ]
    for child in children:
        child.start()
    recorded = [spans.get(timeout=120) for _ in range(workers * rounds)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    with store.read() as conn:
        final = conn.execute(select(meta.c.value).where(meta.c.key == "counter")).scalar_one()
    assert int(final) == workers * rounds
    recorded.sort()
    for (_, left_end), (right_start, _) in zip(recorded, recorded[1:], strict=False):
        assert right_start >= left_end, "two writers held the same lock at once"


def _holders_waiting(store: Store) -> int:
    """How many sessions of the test database wait for a rsx write lock right now."""
    with store.engine.connect() as conn:
        if backend_name(store.url) == "postgresql":
            query = (
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
            )
        else:
            query = (
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE info LIKE 'SELECT GET_LOCK%%'"
            )
        return int(conn.execute(text(query)).scalar() or 0)


@SERVERS
def test_a_lock_blocks_only_writers_of_the_same_name(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    holding, release, entered = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with store.write("rsx_queue_video"):
            holding.set()
            release.wait(timeout=60)

    def contend() -> None:
        with store.write("rsx_queue_video"):
            entered.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=10)
    try:
        with store.write("rsx_queue_default") as conn:  # another name: not blocked
            conn.execute(select(1))
        contender = threading.Thread(target=contend)
        contender.start()
        wait_until(
            lambda: _holders_waiting(store) >= 1, 10, "the second writer to wait for the lock"
        )
        assert not entered.is_set()
    finally:
        release.set()
    holder.join(timeout=10)
    assert entered.wait(timeout=10), "the waiting writer never got the lock after its release"
    contender.join(timeout=10)
    store.dispose()


@SERVERS
def test_a_failed_write_releases_its_lock(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    with pytest.raises(RuntimeError), store.write("rsx_queue_video"):
        raise RuntimeError("the body failed")
    # Another engine, so another session: a lock left held by the pooled one would block it.
    other = Store(write_config(tmp_path / "other", db_url))
    done = threading.Event()

    def again() -> None:
        with other.write("rsx_queue_video"):
            done.set()

    thread = threading.Thread(target=again, daemon=True)
    thread.start()
    assert done.wait(timeout=5), "the lock of the failed write was not released"
    thread.join(timeout=5)
    if backend_name(db_url) == "mysql":
        with store.engine.connect() as conn:
            name = lock_name(store.engine.url.database, "rsx_queue_video")
            holder = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
        assert holder is None
    store.dispose()
    other.dispose()


@SERVERS
def test_a_writer_behind_a_hung_lock_holder_fails_in_one_line(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "postgresql" if backend_name(db_url) == "postgresql" else "mysql"
    monkeypatch.setattr(f"runtime.backends.{module}.LOCK_TIMEOUT_S", 1)
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.write("rsx_workers_1"):
            holding.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:  # registering takes the workers lock
            store.register_worker("video", 4242, 0.0, Limits(2, 2), utcnow())
        assert time.monotonic() - started < 5
    finally:
        release.set()
        holder.join(timeout=10)
    message = str(caught.value)
    assert "\n" not in message
    assert "lock" in message and "timeout" in message.replace("timed out", "timeout")
    store.dispose()


# -- claiming ------------------------------------------------------------------------------


def _add_pending(store: Store, count: int, queue: str = "default") -> list[int]:
    return [
        store.insert_task(
            service="svc", task="job", queue=queue, params={}, timeout=60, now=utcnow()
        )
        for _ in range(count)
    ]


@SERVERS
def test_a_second_claimer_takes_the_next_row_never_the_one_being_claimed(
    tmp_path: Path, db_url: str
) -> None:
    store = Store(write_config(tmp_path, db_url))
    first_id, second_id, _ = _add_pending(store, 3)
    claims: list[int] = []
    values = {
        "status": "running", "server_id": 1, "worker_id": 1, "worker_pid": 1,
        "worker_started": 0.0, "started_at": to_db(utcnow()), "updated_at": to_db(utcnow()),
    }
    with store.raw_write() as one:
        row = store.backend.claim_one(one, store.compile, "default", values)
        assert row is not None and row["id"] == first_id
        # PostgreSQL skips the locked row; MariaDB waits for it to be committed, then
        # finds it no longer pending. Either way the second claimer gets the second row.
        other = threading.Thread(
            target=lambda: claims.append(store.claim(Claimer("default", 1, 1, 0.0), utcnow()).id)
        )
        other.start()
        time.sleep(0.3)
    other.join(timeout=30)
    assert claims == [second_id]
    store.dispose()


def test_a_claim_never_passes_over_a_task_still_being_dispatched(
    tmp_path: Path, db_url: str
) -> None:
    """FIFO holds against dispatches committing out of order: while the dispatch of the
    older task is still open, a newer one cannot be claimed ahead of it."""
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    inserting, release = threading.Event(), threading.Event()
    older: list[int] = []

    def slow_dispatch() -> None:
        row = {
            "server_id": 1, "service_name": "svc", "task_name": "job", "queue_name": "default",
            "execution_mode": "queued", "status": "pending", "params": "{}",
            "timeout_seconds": 60, "has_temp_directory": False,
            "created_at": to_db(utcnow()), "updated_at": to_db(utcnow()),
        }
        with store.raw_write() as cursor:
            older.append(
                store.backend.insert_one(cursor, store.compile, "default", row, "queue_default")
            )
            inserting.set()
            release.wait(timeout=30)

    dispatcher = threading.Thread(target=slow_dispatch)
    dispatcher.start()
    assert inserting.wait(timeout=10)
    newer: list[int] = []
    claimed: list[int] = []

    def first_claim() -> None:
        deadline = time.monotonic() + 30
        while not claimed and time.monotonic() < deadline:
            task = store.claim(Claimer("default", 1, 1, 0.0), utcnow())
            if task is not None:
                claimed.append(task.id)

    others = [
        threading.Thread(target=lambda: newer.extend(_add_pending(store, 1))),
        threading.Thread(target=first_claim),
    ]
    for thread in others:
        thread.start()
        time.sleep(0.2)
    release.set()
    dispatcher.join(timeout=30)
    for thread in others:
        thread.join(timeout=30)
    assert claimed == older, f"claimed {claimed}, while {older} was older than {newer}"
    store.dispose()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_a_batch_gets_its_ids_in_order_across_statements(tmp_path: Path, db_url: str) -> None:
    """A batch longer than one multi-row statement: each id is its own item's row, and
    claims take them in the order given (FIFO within the batch)."""
    store = Store(write_config(tmp_path, db_url))
    _add_pending(store, 3)
    items = [{"n": n} for n in range(1234)]
    ids = store.insert_tasks(
        service="svc", task="job", queue="default", params=items, timeout=60, now=utcnow()
    )
    assert ids == sorted(ids) and len(set(ids)) == len(items)
    with store.engine.connect() as conn:
        rows = conn.execute(select(tasks.c.id, tasks.c.params).where(tasks.c.id.in_(ids))).all()
    stored = {row.id: json.loads(row.params)["n"] for row in rows}
    assert stored == dict(zip(ids, range(1234), strict=True))
    for _ in range(3):
        store.claim(Claimer("default", 1, 1, 0.0), utcnow())
    claimed = [store.claim(Claimer("default", 1, 1, 0.0), utcnow()) for _ in range(5)]
    assert [task.id for task in claimed if task is not None] == ids[:5]
    store.dispose()


def _claim_all(config_path: str, barrier: Any, claims: Any) -> None:
    """Child: claim pending rows as a worker does until none is left."""
    store = Store(parse_config(Path(config_path)))
    mine: list[tuple[int, int]] = []
    # Connected and compiled before the start, so that no claimer drains the queue while
    # the others are still connecting.
    assert store.claim(Claimer("idle", 1, 1, 0.0), utcnow()) is None
    barrier.wait(timeout=60)
    while True:
        task = store.claim(Claimer("default", 1, 1, 0.0), utcnow())
        if task is None:
            break
        mine.append((task.id, 1 if task.status == "running" else 0))
    claims.put(mine)
    store.dispose()


@SERVERS
def test_concurrent_claimers_take_every_row_exactly_once(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    store = Store(config)
    ids = _add_pending(store, 120)
    workers = 4
    barrier = SPAWN.Barrier(workers)
    claims = SPAWN.Queue()
    children = [
        SPAWN.Process(target=_claim_all, args=(str(config.path), barrier, claims))
        for _ in range(workers)
    ]
    for child in children:
        child.start()
    results = [claims.get(timeout=120) for _ in range(workers)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    claimed = [task_id for mine in results for task_id, _ in mine]
    assert sorted(claimed) == ids, "a row was claimed twice or not at all"
    assert all(changed == 1 for mine in results for _, changed in mine)
    assert sum(1 for mine in results if mine) >= 2, "the claimers did not run concurrently"
    store.dispose()


# -- notification --------------------------------------------------------------------------


@POSTGRES
def test_a_dispatch_wakes_a_waiting_connection_within_100_ms(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url, queues={"video": 2}))
    store.ensure_schema()
    subscribed = threading.Event()
    woke: dict[str, float] = {}

    def waiter() -> None:
        with store.engine.connect() as conn:
            # The first call subscribes, then returns.
            store.wait_for_change(conn, queue_channel("video"), 10)
            subscribed.set()
            store.wait_for_change(conn, queue_channel("video"), 10)
            woke["at"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert subscribed.wait(timeout=10)
    _add_pending(store, 1, queue="video")
    committed = time.monotonic()
    thread.join(timeout=15)
    assert "at" in woke
    latency = woke["at"] - committed
    assert latency < 0.1, f"the waiter woke {latency * 1000:.0f} ms after the dispatch"
    store.dispose()


@POSTGRES
def test_wait_ignores_other_queues_and_returns_at_its_timeout(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url, queues={"video": 2}))
    store.ensure_schema()
    with store.engine.connect() as conn:
        store.wait_for_change(conn, queue_channel("video"), 5)
        _add_pending(store, 1, queue="default")
        started = time.monotonic()
        store.wait_for_change(conn, queue_channel("video"), 0.5)
        waited = time.monotonic() - started
    assert 0.45 <= waited < 2.0
    store.dispose()


def test_a_change_between_a_check_and_the_wait_is_not_missed(tmp_path: Path, db_url: str) -> None:
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    with store.engine.connect() as conn:
        # The first wait on a connection subscribes.
        store.wait_for_change(conn, queue_channel("default"), 5)
        _add_pending(store, 1)  # lands after the caller's check, before its next wait
        started = time.monotonic()
        store.wait_for_change(conn, queue_channel("default"), 5)
        waited = time.monotonic() - started
    assert waited < 1.0, f"the wait slept {waited:.1f} s through a change made before it"
    store.dispose()


def test_a_waiter_sees_a_new_task_on_every_backend(tmp_path: Path, db_url: str) -> None:
    """The loop a worker runs (check, then wait) finds a dispatch promptly everywhere."""
    store = Store(write_config(tmp_path, db_url))
    store.ensure_schema()
    found: dict[str, float] = {}

    def watch() -> None:
        deadline = time.monotonic() + 20
        with store.engine.connect() as conn:
            while time.monotonic() < deadline:
                if store.pending_counts("default"):
                    found["at"] = time.monotonic()
                    return
                store.wait_for_change(conn, queue_channel("default"), 5.0)

    thread = threading.Thread(target=watch)
    thread.start()
    _add_pending(store, 1)
    committed = time.monotonic()
    thread.join(timeout=25)
    assert "at" in found
    # Well under the 5 s wait: the waiter noticed the change rather than timing out.
    assert found["at"] - committed < 1.0
    store.dispose()



@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("postgresql://app:pw@127.0.0.1/tasks", "psycopg", "rsxgen[postgres]"),
        ("mysql://app:pw@127.0.0.1/tasks", "pymysql", "rsxgen[mysql]"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(
    tmp_path: Path, url: str, driver: str, extra: str
) -> None:
    config = write_config(tmp_path, url)
    hide_driver = (
        f"import sys; sys.modules[{driver!r}] = None; "
        "from runtime.status import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_driver, "1", "--config", str(config.path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert extra in lines[0]
    assert ":pw@" not in lines[0]

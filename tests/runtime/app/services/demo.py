"""Tasks the runtime tests dispatch: each shows one behaviour a user relies on."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

from runtime import TaskInstance, task


def wait_for_file(path: Path, timeout: float) -> None:
    """Block until `path` exists (the test opens the gate), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} not opened within {timeout} s")
        time.sleep(0.02)


@task("Add two numbers")
def add(task: TaskInstance, a: int, b: int = 0) -> int:
    task.log(f"adding {a} and {b}")
    return a + b


@task("Report progress, then wait for a gate file", queue="video")
def gated(task: TaskInstance, gate: str, timeout: float = 30.0) -> dict[str, Any]:
    task.set_status("progress", 50)
    task.log("waiting for the gate")
    wait_for_file(Path(gate), timeout)
    task.set_status("progress", 100)
    task.log("gate opened")
    return {"pid": os.getpid()}


@task("Fail with a message")
def fail(task: TaskInstance, message: str) -> None:
    task.log("about to fail")
    raise ValueError(message)


@task("Return a value JSON cannot hold")
def bad_result(task: TaskInstance) -> Any:
    return {"numbers": {1, 2, 3}}


@task("Sleep past the timeout", queue="slow", timeout=2)
def hang(task: TaskInstance, seconds: float = 60.0) -> None:
    task.log("hanging")
    time.sleep(seconds)


@task("Append a line to a file", queue="slow")
def note(task: TaskInstance, path: str, text: str) -> str:
    with open(path, "a", encoding="utf-8") as out:
        out.write(text + "\n")
    return text


@task("Record when it ran", queue="video")
def record(task: TaskInstance, path: str, hold: float = 0.02) -> dict[str, Any]:
    return _record(task, path, hold)


@task("Record when it ran, on another queue", queue="other")
def record_other(task: TaskInstance, path: str, hold: float = 0.02) -> dict[str, Any]:
    return _record(task, path, hold)


def _record(task: TaskInstance, path: str, hold: float) -> dict[str, Any]:
    start = time.time()
    time.sleep(hold)
    end = time.time()
    line = {"id": task.id, "start": start, "end": end, "pid": os.getpid()}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return line


@task("Echo typed parameters")
def echo(
    task: TaskInstance,
    count: int,
    flag: bool,
    ratio: float = 1.0,
    tags: list[str] | None = None,
    options: dict[str, int] | None = None,
    maybe: int | None = 5,
    day: datetime.date | None = None,
    mode: Literal["fast", "slow"] = "fast",
    video_id: int = 0,
) -> dict[str, Any]:
    task.log(f"echo count={count}")
    return {
        "count": count,
        "flag": flag,
        "ratio": ratio,
        "tags": tags,
        "options": options,
        "maybe": maybe,
        "day": day.isoformat() if day else None,
        "mode": mode,
        "video_id": video_id,
    }


@task("Write a file in the temp directory")
def use_temp(task: TaskInstance, keep: int | None = None) -> str:
    folder = task.get_temp_directory()
    (folder / "out.txt").write_text("data", encoding="utf-8")
    if keep is not None:
        task.set_temp_expiration(keep)
    task.log(f"wrote {folder / 'out.txt'}")
    return str(folder)


@task("Log numbered lines until a gate file exists", queue="other")
def chatter(task: TaskInstance, gate: str, pause: float = 0.02) -> dict[str, Any]:
    count = 0
    while not Path(gate).exists() or count < 5:
        task.log(f"line {count}")
        count += 1
        time.sleep(pause)
    task.log(f"done after {count} lines")
    return {"lines": count, "pid": os.getpid()}


@task("Log many numbered lines")
def chatty(task: TaskInstance, lines: int) -> int:
    for number in range(lines):
        task.log(f"line {number}")
    return lines


@task("Return a string of the given length")
def big_result(task: TaskInstance, size: int) -> str:
    task.log(f"returning {size} characters")
    return "x" * size


@task("Log, set status or return text some database cannot store")
def unstorable(task: TaskInstance, what: str) -> str:
    name = os.fsdecode(b"caf\xe9.txt")
    task.log("before")
    if what == "log":
        task.log(f"opened {name}")
        task.log("a nul \x00 byte")
        task.log("after")
    elif what == "status":
        task.set_status("file", name)
    elif what == "big_status":
        task.set_status("blob", "x" * 5_000_000)
    elif what == "result":
        return name
    return "done"


@task("Start a child process, then overrun the timeout", queue="slow", timeout=2)
def child_past_timeout(task: TaskInstance, seconds: str) -> None:
    child = subprocess.Popen(["sleep", seconds])
    task.log(f"started child {child.pid}")
    time.sleep(60)


@task("Start a child process, then wait for a gate file", queue="video")
def child_then_gate(task: TaskInstance, seconds: str, gate: str) -> None:
    child = subprocess.Popen(["sleep", seconds])
    task.log(f"started child {child.pid}")
    wait_for_file(Path(gate), 60)


@task("Fork a child that outlives the task, and return")
def fork_child(task: TaskInstance, seconds: float) -> dict[str, int]:
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(0)
    return {"child": pid, "supervisor": os.getppid()}


@task("Return a value that does not match the return annotation")
def wrong_shape(task: TaskInstance) -> dict[str, int]:
    return {"count": "many"}  # type: ignore[dict-item]


@task("Return a moment, stored as ISO 8601 text")
def dated(task: TaskInstance, year: int) -> dict[str, datetime.datetime]:
    return {"at": datetime.datetime(year, 5, 1, 12, tzinfo=datetime.UTC)}


class TransientError(ConnectionError):
    """An error the app expects to pass: the retried tasks below raise it."""


def _count_run(path: str) -> int:
    """Append this run's time to `path`; how many runs the file now records."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{time.time()}\n")
    return len(Path(path).read_text(encoding="utf-8").splitlines())


@task("Fail the first runs, then succeed", retries=2, retry_backoff=0.2)
def flaky(task: TaskInstance, path: str, failures: int) -> int:
    runs = _count_run(path)
    task.log(f"run {runs}")
    if runs <= failures:
        raise TransientError(f"run {runs} failed")
    return runs


@task("Fail once, then succeed after a long backoff", retries=1, retry_backoff=2)
def patient(task: TaskInstance, path: str) -> int:
    runs = _count_run(path)
    if runs == 1:
        raise TransientError("the first run fails")
    return runs


@task("Fail on every run", retries=2, retry_backoff=0.2)
def always_fails(task: TaskInstance, path: str) -> None:
    runs = _count_run(path)
    raise TransientError(f"run {runs} failed")


@task(
    "Fail with an error retry_on names, or one it does not",
    retries=3,
    retry_backoff=0.2,
    retry_on=(TransientError,),
)
def picky(task: TaskInstance, path: str, error: Literal["transient", "value"]) -> None:
    _count_run(path)
    if error == "transient":
        raise TransientError("a transient error")
    raise ValueError("a bug, not worth retrying")


@task("Overrun the timeout on every run", queue="slow", timeout=1, retries=1, retry_backoff=0.2)
def hang_retried(task: TaskInstance, path: str) -> None:
    _count_run(path)
    time.sleep(60)


@task("Wait for a gate file, with retries", queue="video", retries=2, retry_backoff=0.2)
def gated_retried(task: TaskInstance, gate: str) -> None:
    task.log("waiting for the gate")
    wait_for_file(Path(gate), 60)


@task("Work until its cancel is requested, looking at task.cancelled()", queue="video")
def until_cancelled(task: TaskInstance, limit: float = 60.0) -> dict[str, Any]:
    task.log("working")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if task.cancelled():
            task.log("cancel seen, stopping")
            return {"stopped": True, "pid": os.getpid()}
        time.sleep(0.02)
    return {"stopped": False, "pid": os.getpid()}


@task("Wait for a gate file; one pending task per gate", queue="video", unique_key="gate")
def gated_once(task: TaskInstance, gate: str, timeout: float = 30.0) -> dict[str, Any]:
    return gated(task, gate, timeout)


@task(
    "Wait for a gate file; one pending or running task per gate",
    queue="video",
    unique_key="gate",
    unique_while="active",
)
def gated_alone(task: TaskInstance, gate: str, timeout: float = 30.0) -> dict[str, Any]:
    return gated(task, gate, timeout)


@task("Wait for a gate file, then fail; with retries", queue="video", retries=2, retry_backoff=0.2)
def gated_then_fails(task: TaskInstance, gate: str) -> None:
    task.log("waiting for the gate")
    wait_for_file(Path(gate), 60)
    raise TransientError("failed after the gate")


@task(
    "Fail once, then succeed; unique while active",
    retries=1,
    retry_backoff=2,
    unique=True,
    unique_while="active",
)
def patient_unique(task: TaskInstance, path: str) -> int:
    runs = _count_run(path)
    if runs == 1:
        raise TransientError("the first run fails")
    return runs

"""The dashboard end to end in a real headless browser (Debian's chromium, driven by Selenium
through chromium-driver), against `python -m runtime.web` and real workers.

A task's page follows it without a reload: the progress bar reaches 100 % and the log lines
appear as the task writes them. A task whose executor is killed turns stuck on the open
page, its Redispatch button appears, and the redispatched copy completes. The Cancel
button of a running task asks it to stop; the page then shows it cancelled. `.ci/run`
installs chromium, so under `CI=true` a missing browser is a failure; elsewhere the test is
skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import Task
from tests.runtime.helpers import App, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        reason = (
            f"the browser test needs {' and '.join(missing)} "
            "(apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; under CI=true a missing browser is a failure")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dashboard(app: App) -> Iterator[str]:
    """`python -m runtime.web` serving the test app on a free loopback port; its base URL."""
    port = _free_port()
    server = app.start("web", "--port", str(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"runtime.web exited: {server.communicate()}")
        try:
            with urllib.request.urlopen(f"{base}/overview.json", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    try:
        wait_until(answers, WAIT_S, "the dashboard to answer", every=0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


@pytest.fixture
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _until(driver: Any, probe: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(probe, message=what)


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _progress(driver: Any) -> float:
    from selenium.webdriver.common.by import By

    return float(driver.find_element(By.ID, "progress").get_property("value"))


def test_a_task_page_follows_progress_and_log_live_and_redispatches_a_stuck_task(
    app: App, dashboard: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    gate = tmp_path / "gate"
    task_id = Task.dispatch("demo", "gated", {"gate": str(gate)})
    wait_until(lambda: "waiting for the gate" in app.status(task_id).log, WAIT_S, "the task to log")

    browser.get(f"{dashboard}/tasks/{task_id}")
    browser.execute_script("window.rsxSamePage = true;")
    assert _text(browser, "status") == "running"
    assert _progress(browser) == 50
    assert "waiting for the gate" in _text(browser, "log")

    gate.touch()
    _until(browser, lambda d: _progress(d) == 100, "the progress bar to reach 100%")
    _until(browser, lambda d: "gate opened" in _text(d, "log"), "the last log line")
    _until(browser, lambda d: _text(d, "status") == "completed", "the status to turn completed")
    assert _text(browser, "progress-text") == "100%"
    assert '"pid"' in _text(browser, "result")
    assert browser.execute_script("return window.rsxSamePage === true;"), "the page reloaded"
    assert not browser.find_element(By.ID, "redispatch").is_displayed()

    stuck_gate = tmp_path / "stuck-gate"
    stuck_id = Task.dispatch("demo", "gated", {"gate": str(stuck_gate)})
    running = app.wait_status(stuck_id, "running", timeout=WAIT_S)
    wait_until(lambda: app.status(stuck_id).log, WAIT_S, "the second task to log")
    browser.get(f"{dashboard}/tasks/{stuck_id}")
    browser.execute_script("window.rsxSamePage = true;")
    assert running.worker_pid is not None
    os.kill(running.worker_pid, signal.SIGKILL)

    _until(browser, lambda d: _text(d, "status") == "stuck", "the task to turn stuck")
    button = browser.find_element(By.CSS_SELECTOR, "#redispatch button")
    _until(browser, lambda d: button.is_displayed(), "the Redispatch button")
    assert "died while running the task" in _text(browser, "log")
    assert browser.execute_script("return window.rsxSamePage === true;"), "the page reloaded"

    stuck_gate.touch()
    button.click()
    _until(browser, lambda d: d.current_url != f"{dashboard}/tasks/{stuck_id}", "the new task")
    new_id = int(browser.current_url.rsplit("/", 1)[1])
    assert new_id > stuck_id
    _until(browser, lambda d: _text(d, "status") == "completed", "the copy to complete")
    _until(browser, lambda d: _progress(d) == 100, "the copy's progress bar at 100%")
    assert app.status(new_id).status == "completed"
    assert dict(app.status(new_id).params) == {"gate": str(stuck_gate), "timeout": 30.0}


def test_the_cancel_button_stops_a_running_task_and_the_page_shows_it_end(
    app: App, dashboard: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    task_id = Task.dispatch("demo", "until_cancelled", {})
    app.wait_status(task_id, "running", timeout=WAIT_S)
    browser.get(f"{dashboard}/tasks/{task_id}")
    assert _text(browser, "status") == "running"
    assert not browser.find_element(By.ID, "redispatch").is_displayed()

    browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
    _until(browser, lambda d: d.find_elements(By.ID, "cancel-requested"), "the request shown")
    browser.execute_script("window.rsxSamePage = true;")
    _until(browser, lambda d: _text(d, "status") == "cancelled", "the task to turn cancelled")
    assert "cancel seen, stopping" in _text(browser, "log")
    assert not browser.find_element(By.ID, "cancel").is_displayed()
    _until(browser, lambda d: d.find_element(By.ID, "redispatch").is_displayed(), "Redispatch")
    assert browser.execute_script("return window.rsxSamePage === true;"), "the page reloaded"
    assert app.status(task_id).status == "cancelled"

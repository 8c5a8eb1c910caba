"""The status page in a real headless browser: Debian's Chromium driven by Selenium through
Debian's chromedriver (paths given explicitly: nothing is downloaded), against the real daemon
(``tl-engine run`` subprocess) and the sandbox subprocess (``realistic`` profile).

Load the page, type the read token, send a signal, see its outcome appear without a reload,
engage the kill switch from the page with the control token, and save a screenshot under the
test's output directory (its path is printed)."""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.control.daemon import CONTROL_TOKEN, READ_TOKEN, Daemon, running_daemon

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:  # a failure naming the fix, never a skip standing in for the test
        pytest.fail(
            f"{' and '.join(missing)} missing: run scripts/bootstrap.sh dev "
            "(apt-get install chromium chromium-driver)",
            pytrace=False,
        )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "daemon") as d:
        yield d


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    _need_browser()
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's own sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _post_signal(d: Daemon, signal: dict[str, object]) -> None:
    req = urllib.request.Request(
        d.url + "/signals",
        data=json.dumps(signal).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202


def test_page_shows_an_outcome_live_and_engages_the_kill_switch(
    daemon: Daemon, browser: WebDriver, tmp_path: Path
) -> None:
    wait = WebDriverWait(browser, 60)  # a hang guard on a loaded machine, not a speed assertion
    browser.get(daemon.url + "/")
    assert browser.title == "tl-engine"
    # Without the token the page says what it needs and shows no data.
    wait.until(lambda b: "token needed" in b.find_element(By.ID, "engine-state").text)
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
    browser.find_element(By.ID, "connect").click()
    # Accounts from /status, health per component, and the live stream connected.
    wait.until(lambda b: "a1" in b.find_element(By.ID, "accounts").text)
    wait.until(lambda b: "a2" in b.find_element(By.ID, "accounts").text)
    wait.until(lambda b: "stream" in b.find_element(By.ID, "health").text)
    wait.until(lambda b: b.find_element(By.ID, "live").text == "live")
    # Every account's auth, stream, breaker and limiter reported healthy.
    wait.until(lambda b: b.find_element(By.ID, "engine-state").text == "healthy")
    before = browser.execute_script("return performance.getEntriesByType('navigation').length")

    _post_signal(
        daemon,
        {
            "id": "page-buy-1",
            "account": "a1",
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": 0.01,
        },
    )
    row = wait.until(
        lambda b: b.find_elements(By.CSS_SELECTOR, '#outcomes tr[data-signal="page-buy-1"]')
    )[0]
    assert row.get_attribute("data-status") == "accepted"
    assert "a1" in row.text
    # No reload happened: still the one navigation, and the token field is still empty.
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == (
        before
    )
    # The position reaches the page from the stream, the latency table and its chart fill in.
    wait.until(lambda b: "EURUSD" in b.find_element(By.ID, "positions").text)
    wait.until(lambda b: "arrival_to_ack" in b.find_element(By.ID, "latency").text)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#latency-chart rect"))
    wait.until(lambda b: "PLACE" in b.find_element(By.ID, "rates").text.upper())

    # The read token cannot engage the kill switch; the control token can.
    browser.find_element(By.ID, "kill").click()
    browser.find_element(By.ID, "kill-confirm").click()
    wait.until(lambda b: "HTTP 403" in b.find_element(By.ID, "kill-result").text)
    browser.find_element(By.ID, "token").send_keys(CONTROL_TOKEN)
    browser.find_element(By.ID, "connect").click()
    browser.find_element(By.ID, "flatten").click()
    browser.find_element(By.ID, "kill").click()
    browser.find_element(By.ID, "kill-confirm").click()
    wait.until(lambda b: "HTTP 200" in b.find_element(By.ID, "kill-result").text)
    assert "closed" in browser.find_element(By.ID, "kill-result").text
    wait.until(lambda b: "KILL SWITCH ENGAGED" in b.find_element(By.ID, "kill-state").text)
    wait.until(lambda b: "EURUSD" not in b.find_element(By.ID, "positions").text)

    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")

    # SIGTERM while the page follows the event stream: the daemon ends its streams and exits
    # cleanly (0), and the page says it lost the engine instead of showing stale figures as live.
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0
    wait.until(lambda b: b.find_element(By.ID, "live").text == "reconnecting")
    wait.until(lambda b: "unreachable" in b.find_element(By.ID, "engine-state").text)

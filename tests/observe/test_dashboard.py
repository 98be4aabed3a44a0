"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver through Selenium)
against a real `agentgate serve` with traffic: it loads, its numbers move, the acknowledge button
acknowledges, and a screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from observe_helpers import Served
from observe_servers import required

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("AGENTGATE_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session, with a fresh profile."""
    required(
        "chromium + chromedriver",
        os.path.exists(CHROMIUM) and os.path.exists(DRIVER),
        "apt-get install chromium chromium-driver (scripts/services.sh does)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="agentgate-chromium-")
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1366,900",
    ):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


class Traffic:
    """Requests through the gateway on a thread until stopped (bounded in time)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop_ev = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + 90
        with httpx.Client(timeout=5) as c:
            while not self.stop_ev.is_set() and time.monotonic() < end:
                c.get(self.url + "/agents/echo/hello")
                self.sent += 1
                self.stop_ev.wait(0.01)

    def __enter__(self) -> Traffic:
        self.t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_ev.set()
        self.t.join(10)


def _wait_for(fn: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
def test_dashboard_live_in_chromium(browser: Any, gateway: tuple[Served, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    gw, secret = gateway
    api = httpx.Client(base_url=gw.admin, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    # an alert that fires as soon as traffic shows up, to acknowledge from the page
    r = api.post(
        "/api/alerts/rules",
        json={
            "name": "EchoTraffic",
            "conditions": [{"metric": "requests", "op": ">", "threshold": 0, "window": "1m"}],
            "agent": "echo",
            "severity": "warning",
            "annotations": {"summary": "{agent} served {value} requests"},
        },
    )
    assert r.status_code == 201, r.text
    # both paths answer HTML
    for path in ("/dashboard", "/core-platform-dashboard"):
        resp = httpx.get(gw.admin + path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    # sign in by keyboard: type the key, press Enter
    browser.get(gw.admin + "/core-platform-dashboard")
    box = browser.find_element(By.ID, "api_key")
    box.send_keys(secret + Keys.ENTER)
    _wait_for(lambda: browser.find_elements(By.ID, "panel"), 15, "the dashboard after login")
    assert "agentgate" in browser.title

    def text(el_id: str) -> str:
        # read in one script call: the panel is swapped every 10 s, element handles go stale
        return str(
            browser.execute_script(
                "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
                el_id,
            )
        )

    first = text("requests")
    with Traffic(gw.url) as t:
        _wait_for(lambda: t.sent > 20, 20, "traffic through the gateway")
        # the panel refreshes itself every 10 s: the request count moves without a reload
        _wait_for(lambda: text("requests") not in ("", first, "0"), 40, "the numbers to move")
        moved = int(text("requests"))
        assert moved > 0
        _wait_for(lambda: int(text("requests") or 0) > moved, 40, "a second refresh with more")
        assert text("throughput").endswith("/s")
        row = _wait_for(
            lambda: browser.execute_script(
                "const r = document.querySelector('tr.agent[data-agent=\"echo\"]');"
                "return r ? r.textContent : ''"
            ),
            20,
            "the agent row",
        )
        assert "echo" in row
        alert_id = _wait_for(
            lambda: browser.execute_script(
                "const b = document.querySelector('button.ack'); return b ? b.dataset.alert : ''"
            ),
            40,
            "the alert's acknowledge button",
        )
        # acknowledge with the keyboard: focus the button and press Enter
        from selenium.webdriver.common.action_chains import ActionChains

        browser.execute_script(
            "document.querySelector(`button.ack[data-alert='${arguments[0]}']`).focus()", alert_id
        )
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        _wait_for(
            lambda: (
                "acknowledged"
                in browser.execute_script(
                    "const r = document.querySelector(`tr.alert[data-alert='${arguments[0]}']`);"
                    "return r ? r.textContent : ''",
                    alert_id,
                )
            ),
            20,
            "the alert to show as acknowledged",
        )
    got = api.get(f"/api/alerts/{alert_id}").json()
    assert got["acked_at"] is not None and got["acked_by"].startswith("key:")
    assert any(e["kind"] == "acknowledged" for e in got["events"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # health score and charts are on the page
    assert text("health-score") not in ("", "–")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-rate svg polyline")


def test_dashboard_refuses_bad_key_and_cross_site_ack(gateway: tuple[Served, str]) -> None:
    gw, _ = gateway
    r = httpx.post(gw.admin + "/dashboard/login", data={"api_key": "ag_nope"})
    assert r.status_code == 401 and "not valid" in r.text
    # no HX-Request header (what a cross-site form would send): refused before anything else
    r = httpx.post(gw.admin + "/dashboard/alerts/x/ack")
    assert r.status_code == 400

"""The dashboard in a real browser: ``streamlit run`` on loopback, driven by headless Chromium over CDP.

Why the Chrome DevTools Protocol over a plain ``--dump-dom``: the test must click "Run plan" and wait for
the result, which needs a live page. The client is a few lines over ``websockets`` (a dependency of
Streamlit itself), so CI needs only Debian's ``chromium``; the test skips with a reason where it is absent.

Screenshots go to ``$FLEETWISE_SCREENSHOTS`` when set (CI keeps them), otherwise to pytest's tmp dir.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, *, timeout_s: float, proc: subprocess.Popen[bytes]) -> str:
    """GET ``url`` until it answers (or the process died / time ran out)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s: {last}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Page:
    """A minimal CDP session on one tab: navigate, evaluate JavaScript, screenshot."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def js(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def text(self) -> str:
        return str(self.js("document.body ? document.body.innerText : ''"))

    def wait_for_text(self, needle: str, *, timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.text()
            if needle in body:
                return body
            if "Traceback" in body:  # Streamlit shows an uncaught exception: fail now, with it
                raise AssertionError(f"the app raised while waiting for {needle!r}:\n{body[:3000]}")
            time.sleep(0.25)
        raise AssertionError(
            f"{needle!r} not on the page after {timeout_s} s; page text:\n{self.text()[:3000]}"
        )

    def wait_idle(self, *, timeout_s: float = 60.0) -> None:
        """Until Streamlit shows no running indicator (script finished) for a moment."""
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline and quiet < 4:
            running = self.js("!!document.querySelector('[data-testid=\"stStatusWidget\"]')")
            quiet = 0 if running else quiet + 1
            time.sleep(0.25)

    def click_button(self, label: str) -> None:
        clicked = self.js(
            "(() => { const b = [...document.querySelectorAll('button')]"
            f".find(b => b.innerText.trim().endsWith({json.dumps(label)}));"
            " if (!b) return false; b.click(); return true; })()"
        )
        assert clicked, f"no button labelled {label!r}"

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``streamlit run dashboards/app.py`` on a free loopback port; yields its URL."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=90, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A headless Chromium tab under CDP (own profile dir, background networking off)."""
    assert CHROMIUM is not None
    port = _free_port()
    profile = tmp_path_factory.mktemp("chromium-profile")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}",
        "--remote-debugging-address=127.0.0.1",
        "--window-size=1440,2400",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/json/version", timeout_s=60, proc=proc)
        targets = json.loads(_wait_http(f"http://127.0.0.1:{port}/json/list", timeout_s=10, proc=proc))
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        with connect(ws_url, max_size=None, open_timeout=30) as ws:
            p = Page(ws)
            p.send("Page.enable")
            p.send("Runtime.enable")
            p.send(
                "Emulation.setDeviceMetricsOverride",
                width=1440,
                height=2400,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield p
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("FLEETWISE_SCREENSHOTS")
    if where:
        out = Path(where)
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


PAGES: tuple[Any, ...] = (
    # page, URL query, its Run button, text the result shows, plotly charts drawn
    pytest.param("Trace", "", None, "19,902 requests over 60.0 min", 3, id="Trace"),
    pytest.param("Plan", "", "Run plan", "Plan: ", 1, marks=pytest.mark.slow, id="Plan"),
    pytest.param(
        "Replay", "", "Run replay", "Replay: 19,902 of 19,902 requests served on 2 replicas", 3, id="Replay"
    ),
    pytest.param("Autoscaling", "&load=3", "Run policies", "policies replayed on", 2, id="Autoscaling"),
    pytest.param("Power", "", "Run power study", "Row budget", 2, id="Power"),
    pytest.param("Experts", "", "Place experts", "Busiest GPU over mean", 2, id="Experts"),
    pytest.param(
        "Compare",
        "",
        "Run comparison",
        "Compared H100 baseline, H100 load x2, H200 baseline",
        3,
        id="Compare",
    ),
)


@pytest.mark.parametrize(("name", "query", "button", "expect", "charts"), PAGES)
def test_page_runs_in_chromium(
    server: str,
    page: Page,
    shots: Path,
    name: str,
    query: str,
    button: str | None,
    expect: str,
    charts: int,
) -> None:
    page.send("Page.navigate", url=f"{server}/?page={name}{query}")
    page.wait_for_text(f"fleetwise · {name}")
    if button is not None:
        page.wait_for_text(button)
        page.wait_idle()
        page.click_button(button)
    page.wait_for_text(expect, timeout_s=240)
    page.wait_idle()
    body = page.text()  # the whole run's output (the text when `expect` first showed may be partial)
    deadline = time.monotonic() + 30
    while (
        page.js("document.querySelectorAll('.js-plotly-plot').length") < charts
        and time.monotonic() < deadline
    ):
        time.sleep(0.25)
    time.sleep(1.0)  # let plotly finish drawing before the screenshot
    shot = page.screenshot(shots / f"{name.lower()}.png")
    assert shot.stat().st_size > 20_000
    assert page.js("document.querySelectorAll('.js-plotly-plot').length") >= charts
    assert "Traceback" not in body and "Error" not in body.split(expect)[0]
    if name == "Plan":
        line = next(x for x in body.splitlines() if x.startswith("Plan: "))
        assert "for Llama-3.1-8B" in line and "$" in line, line
        assert "candidates scored" in body


def test_cancel_stops_a_running_study(server: str, page: Page, shots: Path) -> None:
    """Cancel in the middle of the power study: the page says so and does not start it again."""
    page.send("Page.navigate", url=f"{server}/?page=Power&load=1.5")
    page.wait_for_text("Run power study")
    page.wait_idle()
    page.click_button("Run power study")
    page.wait_for_text("Power study:")  # the progress line of the running job
    page.screenshot(shots / "power-running.png")
    page.click_button("Cancel")
    body = page.wait_for_text("Cancelled: the run was stopped before it finished", timeout_s=30)
    page.wait_idle()
    page.screenshot(shots / "power-cancelled.png")
    assert "Row budget" not in body
    time.sleep(2.0)  # nothing restarts the job on its own
    assert "Power study:" not in page.text()

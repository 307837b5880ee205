"""A real Prometheus server on loopback for the live tests, free ports and polling."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    """Poll ``cond`` until true; fail the test naming ``what`` after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@dataclass
class PromServer:
    """A running Prometheus: its URL, config file and process."""

    url: str
    config: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def reload(self, jobs: dict[str, list[str]], interval: str = "1s") -> None:
        """Rewrite the scrape jobs and ask the server to reload (``/-/reload``)."""
        self.config.write_text(prom_config(jobs, interval))
        req = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass


def prom_config(jobs: dict[str, list[str]], interval: str) -> str:
    """A scrape config: one job per entry, static targets, the given interval."""
    lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}",
             "scrape_configs:"]
    for job, targets in jobs.items():
        lines += [f"  - job_name: {job}", f"    scrape_interval: {interval}", "    static_configs:",
                  "      - targets: [" + ", ".join(f"'{t}'" for t in targets) + "]"]
    return "\n".join(lines) + "\n"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def run_prometheus(tmp: Path) -> Iterator[PromServer]:
    """A real Prometheus on a free loopback port (scrape interval 1 s, storage under ``tmp``, lifecycle API
    on); jobs are added with :meth:`PromServer.reload`. Skips when ``prometheus`` is not on PATH."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not on PATH (Debian package 'prometheus'; CI installs it)")
    cfg = tmp / "prometheus.yml"
    cfg.write_text(prom_config({}, "1s"))
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"],
            stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 30
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"prometheus did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield PromServer(url, cfg, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def backfilled_prometheus(tmp: Path, openmetrics: str) -> Iterator[PromServer]:
    """A real Prometheus whose storage holds ``openmetrics`` (samples with timestamps), loaded with
    ``promtool tsdb create-blocks-from openmetrics``. Skips when promtool is not on PATH."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian package 'prometheus'; CI installs it)")
    (tmp / "history.om").write_text(openmetrics, encoding="utf-8")
    res = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp / "history.om"),
                          str(tmp / "tsdb")], capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        pytest.fail(f"promtool could not load the history: {res.stdout[-1000:]} {res.stderr[-1000:]}")
    with run_prometheus(tmp) as srv:
        yield srv


def history_start_s() -> float:
    """A start for a backfilled history: whole hours, inside the default retention, and older than the
    head block a fresh server writes to."""
    return (time.time() // 3600 - 3) * 3600

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

"""Fault injection end to end (issue 19): a real Prometheus scrapes a controllable fake vLLM (the simulated
fleet's exposition, broken on purpose), ``fleetwise autoscale`` runs as its own process, and each fault
must leave it alive, holding a decision within min/max, flagged unhealthy with the fault's reason, and
recovering once the fault is gone.

Faults: a histogram bucket ``le="abc"`` (killed the control thread before), 1e12 waiting requests on one
pod (scaled to max), one of the ready pods' series vanishing (read as half the load), and a
"Prometheus" answering bytes that are not HTTP.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from planner.catalog import load_catalog
from planner.perf import build_replica_perf
from tests.support.simfleet import FleetConfig, SimFleet, Workload, fleet_registry

MIN, MAX = 2, 12
POOLS = f"""
scrape_interval_s: 1
stale_after_scrapes: 3
interval_s: 1
unhealthy_deadline_s: 600
pools:
  chat:
    selector: {{model_name: llama-8b}}
    policy: target-tracking
    params: {{target_running_per_replica: 25, scale_down_delay_s: 0}}
    min_replicas: {MIN}
    max_replicas: {MAX}
    ready_query: sum(fake_ready_replicas)
"""


class FakeVllm:
    """Serves the simulated fleet's ``vllm:*`` text, passed through ``fault`` (identity when None)."""

    def __init__(self) -> None:
        cat = load_catalog()
        perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
        work = Workload.from_steps(((0.0, 20.0),), 600.0, input_tokens=800, output_tokens=150, seed=3)
        self.fleet = SimFleet(work, perf, config=FleetConfig(model_name="llama-8b", initial_replicas=4))
        self.fleet.advance(60.0)  # a busy fleet, frozen: every scrape sees the same healthy picture
        self.fault: Callable[[str], str] | None = None

    def text(self) -> bytes:
        body = generate_latest(fleet_registry(self.fleet)).decode()  # the collector takes the fleet's lock
        body += "# TYPE fake_ready_replicas gauge\nfake_ready_replicas 4\n"
        return (self.fault(body) if self.fault is not None else body).encode()


@contextmanager
def _serve(handler_body: Callable[[], bytes], *, raw: bool = False) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = handler_body()
            if raw:  # not HTTP at all
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_port
    finally:
        srv.shutdown()


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("fleetwise_") and 'pool="chat"' in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _get(m: dict[str, float], prefix: str, **labels: str) -> float | None:
    for k, v in m.items():
        if k.startswith(prefix + "{") and all(f'{a}="{b}"' in k for a, b in labels.items()):
            return v
    return None


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


FAULTS: dict[str, tuple[Callable[[str], str], str]] = {
    "bad-bucket": (lambda t: t.replace('le="0.001"', 'le="abc"'), "read_error"),
    "absurd-queue": (lambda t: re.sub(r'(vllm:num_requests_waiting\{[^}]*pod="sim-1"[^}]*\}) \S+',
                                      r"\1 1e12", t), "absurd"),
    "pod-vanishes": (lambda t: "\n".join(x for x in t.splitlines() if 'pod="sim-3"' not in x) + "\n",
                     "missing"),
}


@pytest.mark.slow
def test_each_fault_holds_flags_and_recovers(prometheus: Any, tmp_path: Path,
                                             free_tcp_port: Callable[[], int],
                                             wait_until: Callable[..., None]) -> None:
    fake = FakeVllm()
    fw_port = free_tcp_port()
    (tmp_path / "pools.yaml").write_text(POOLS)
    with _serve(fake.text) as vllm_port:
        prometheus.reload({"vllm": [f"127.0.0.1:{vllm_port}"], "fleetwise": [f"127.0.0.1:{fw_port}"]})
        log = (tmp_path / "autoscale.log").open("wb")
        ctl = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "autoscale", "--prometheus-url",
                                prometheus.url, "--config", str(tmp_path / "pools.yaml"), "--port",
                                str(fw_port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            def healthy() -> bool:
                try:
                    return _get(_metrics(fw_port), "fleetwise_input_healthy") == 1.0
                except OSError:
                    return False

            wait_until(healthy, 60.0, "a first healthy decision")
            for name, (fault, reason) in FAULTS.items():
                before = _get(_metrics(fw_port), "fleetwise_bad_input_total", reason=reason) or 0.0
                fake.fault = fault
                wait_until(lambda: not healthy(), 20.0, f"{name}: the fault seen")
                m = _metrics(fw_port)
                assert ctl.poll() is None, f"{name}: the autoscaler died"
                desired = _get(m, "fleetwise_desired_replicas")
                assert desired is not None and MIN <= desired <= MAX, (name, desired)
                def counted(reason: str = reason, before: float = before) -> bool:
                    return (_get(_metrics(fw_port), "fleetwise_bad_input_total", reason=reason) or 0) > before

                wait_until(counted, 10.0, f"{name}: counted as {reason}")
                assert _healthz(fw_port) == 200  # held, not yet past the deadline: no restart
                fake.fault = None
                wait_until(healthy, 20.0, f"{name}: recovery")
        finally:
            ctl.terminate()
            ctl.wait(timeout=20)
            log.close()
    text = (tmp_path / "autoscale.log").read_text()
    assert "abc" in text and "pod sim-1" in text and "of 4 ready" in text  # each fault logged with its cause


@pytest.mark.slow
def test_garbage_from_prometheus_holds_and_keeps_ticking(tmp_path: Path, free_tcp_port: Callable[[], int],
                                                         wait_until: Callable[..., None]) -> None:
    fw_port = free_tcp_port()
    (tmp_path / "pools.yaml").write_text(POOLS)
    with _serve(lambda: b"\x00\x01 not http at all\r\n\r\n", raw=True) as junk_port:
        log = (tmp_path / "autoscale.log").open("wb")
        ctl = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "autoscale", "--prometheus-url",
                                f"http://127.0.0.1:{junk_port}", "--config", str(tmp_path / "pools.yaml"),
                                "--port", str(fw_port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            def counted() -> float:
                try:
                    m = _metrics(fw_port)
                except OSError:
                    return 0.0
                return sum(v for k, v in m.items() if k.startswith("fleetwise_bad_input_total"))

            wait_until(lambda: counted() >= 3, 60.0, "three held ticks")
            assert ctl.poll() is None and _get(_metrics(fw_port), "fleetwise_input_healthy") == 0.0
        finally:
            ctl.terminate()
            ctl.wait(timeout=20)
            log.close()


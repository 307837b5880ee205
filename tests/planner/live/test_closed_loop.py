"""Closed loop with a real Prometheus: simulated vLLM fleet -> Prometheus -> ``fleetwise autoscale`` ->
``/metrics`` -> the fleet's replica count (as KEDA would apply it), through a load step up and down.

Wall-clock budget: ~10 s of start-up (Prometheus' target discovery takes ~5 s, the CLI ~4 s) and 48 s of
load at 15x (720 simulated seconds).
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.live.promql import PromClient
from planner.perf import build_replica_perf
from planner.sim.coldstart import ColdStartDistribution
from tests.support.prometheus import PromServer, run_prometheus
from tests.support.simfleet import (
    FleetConfig,
    SimFleet,
    Workload,
    desired_from_metrics,
    drive,
    fleet_registry,
    serve_text,
)

SPEED = 15.0  # simulated seconds per wall second
LOW, HIGH = 15.0, 45.0  # requests/s
UP_AT, DOWN_AT, END = 120.0, 420.0, 720.0  # simulated seconds
COLD = ColdStartDistribution(math.log(20.0), 0.1)  # simulated seconds
SCRAPE_S, INTERVAL_S, POLL_S, DOWN_DELAY_S = 1.0, 1.0, 0.5, 3.0  # wall seconds
SLACK_S = 4.0  # wall: a tick that just missed a scrape, thread scheduling on a busy 2-core box
LEAD_UP_S = SCRAPE_S + INTERVAL_S + POLL_S + SLACK_S
"""Wall time from the load step to the fleet asking for more replicas."""
LEAD_READY_S = LEAD_UP_S + COLD.quantile(0.999) / SPEED
"""... and to those replicas serving."""
LEAD_DOWN_S = DOWN_DELAY_S + LEAD_UP_S + 0.5
"""Wall time from the load drop to the fleet shrinking (the policy's scale-down delay first)."""

POOLS = f"""
scrape_interval_s: {SCRAPE_S}
stale_after_scrapes: 3
interval_s: {INTERVAL_S}
pools:
  chat:
    selector: {{model_name: llama-8b}}
    model: Llama-3.1-8B
    gpu: H100-SXM
    policy: target-tracking
    params: {{target_running_per_replica: 25, scale_down_delay_s: {DOWN_DELAY_S}}}
    min_replicas: 2
    max_replicas: 12
    max_step_up: 4
    max_step_down: 8
"""


@pytest.mark.slow
def test_replicas_follow_a_load_step_through_real_prometheus(
        tmp_path: Path, free_tcp_port: Callable[[], int], wait_until: Callable[..., None]) -> None:
    # One more try when the first misses its timing: late in a full run on a 2-core box the wall-clock
    # driver falls behind (seen: ready 6 -> 3 just before the load step down, and 4 -> 3 for 9 s in the
    # high phase, the run passing alone in 57-59 s, 4 times of 4). Both tries must fail for the test to
    # fail. Each try has its own Prometheus: a shared one kept the first try's series, whose last minute
    # (at the floor) the second try's range queries then read.
    try:
        _closed_loop_once(tmp_path / "try1", free_tcp_port, wait_until)
    except AssertionError as first_failure:
        warnings.warn(f"closed loop missed on the first try, retrying: {first_failure}", stacklevel=1)
        _closed_loop_once(tmp_path / "try2", free_tcp_port, wait_until)


def _closed_loop_once(tmp_path: Path, free_tcp_port: Callable[[], int],
                      wait_until: Callable[..., None]) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    with run_prometheus(tmp_path) as prometheus:
        _run_and_check(prometheus, tmp_path, free_tcp_port, wait_until)


def _run_and_check(prometheus: PromServer, tmp_path: Path, free_tcp_port: Callable[[], int],
                   wait_until: Callable[..., None]) -> None:
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    work = Workload.from_steps(((0.0, LOW), (UP_AT, HIGH), (DOWN_AT, LOW)), END, input_tokens=1000,
                               output_tokens=200, seed=7)
    cfg = FleetConfig(model_name="llama-8b", initial_replicas=2, max_replicas=16, cold_start=COLD, seed=7)
    fleet = SimFleet(work, perf, config=cfg)
    fleet.advance(1e-6)  # compile the engine before the clock starts
    fleet_srv, _ = serve_text(fleet_registry(fleet), port=0)
    fw_port = free_tcp_port()
    prometheus.reload({"vllm": [f"127.0.0.1:{fleet_srv.server_port}"], "fleetwise": [f"127.0.0.1:{fw_port}"]})
    (tmp_path / "pools.yaml").write_text(POOLS)
    log = (tmp_path / "autoscale.log").open("wb")
    ctl = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "autoscale", "--prometheus-url",
                            prometheus.url, "--config", str(tmp_path / "pools.yaml"), "--port", str(fw_port)],
                           stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    driver = threading.Thread(target=drive, args=(fleet, stop), daemon=True, kwargs={
        "clock": time.monotonic, "speed": SPEED, "poll_s": POLL_S,
        "desired": desired_from_metrics(f"http://127.0.0.1:{fw_port}/metrics", "chat")})
    client = PromClient(prometheus.url)
    try:
        # the loop is closed once Prometheus holds the autoscaler's first decision
        mine = f'pool="chat",instance="127.0.0.1:{fw_port}"'
        decided = f"fleetwise_desired_replicas{{{mine}}}"
        wait_until(lambda: ctl.poll() is None and bool(client.query(decided)), 40.0,
                   "fleetwise_desired_replicas in Prometheus")
        driver.start()
        wait_until(lambda: fleet.t_s >= END, END / SPEED + 20.0, "the end of the workload", every_s=0.5)
        healthy = client.query(f"avg_over_time(fleetwise_input_healthy{{{mine}}}[40s])")
        peak = client.query(f"max_over_time(fleetwise_desired_replicas{{{mine}}}[60s])")
    finally:
        stop.set()
        driver.join(timeout=10)
        ctl.terminate()
        ctl.wait(timeout=20)
        log.close()
        fleet_srv.shutdown()
    assert ctl.returncode == 0, (tmp_path / "autoscale.log").read_text()[-3000:]

    with fleet.lock:
        tl = np.array(fleet.timeline)
        req = fleet.requests()
    t_wall, asked, ready = tl[:, 0] / SPEED, tl[:, 1], tl[:, 2]

    def first(cond: np.ndarray, after_wall: float) -> float:
        idx = np.flatnonzero(cond & (t_wall >= after_wall))
        return float(t_wall[idx[0]]) if idx.size else math.inf

    up, down = UP_AT / SPEED, DOWN_AT / SPEED
    # before the step: the floor (2 replicas carry 15 req/s with ~37 in the system, under the 25/replica x 2)
    assert asked[t_wall < up].max() <= 3
    # step up: asked within the lead time, serving within lead + cold start
    assert first(asked >= 4, up) - up <= LEAD_UP_S
    assert first(ready >= 4, up) - up <= LEAD_READY_S
    high = (t_wall >= up + LEAD_READY_S + 2) & (t_wall < down)
    assert ready[high].min() >= 4 and asked[high].max() <= 12
    # step down: back to the floor within the scale-down delay plus the lead time, and staying there
    assert first(asked <= 3, down) - down <= LEAD_DOWN_S
    # and stays there: a read that lags the drop by a scrape can bounce it up once (target tracking scales
    # up at once), so allow a short excursion but require the floor for most of the tail and at the end
    tail = t_wall >= down + LEAD_DOWN_S
    at_floor = (asked[tail] <= 3) & (asked[tail] >= 2)
    assert at_floor.mean() >= 0.8 and at_floor[-20:].all(), (
        f"tail asked {asked[tail][::10].tolist()}")
    # SLO attainment from the fleet's request records (unfinished requests count as misses)
    done = req.filter(req["arrival_s"] < END - 30.0)
    ttft, tpot = done["ttft_s"].to_numpy(), done["tpot_s"].to_numpy()
    with np.errstate(invalid="ignore"):
        met = (ttft <= 2.0) & (np.isnan(tpot) | (tpot <= 0.1))
    assert done.height > 10_000
    assert met.mean() >= 0.97, f"attainment {met.mean():.4f}"
    # Prometheus scraped the exporter: the decisions and the health gauge are queryable series
    assert peak and peak[0].value >= 4
    assert healthy and healthy[0].value >= 0.8

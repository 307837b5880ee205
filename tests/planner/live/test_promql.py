"""PromQL reads against a real Prometheus scraping static vLLM expositions with old and new names."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.live.config import parse_config
from planner.live.controller import PoolState, step
from planner.live.promql import KV_NAMES, PromClient, PromQueryError, read_pool, selector_text
from planner.perf import build_replica_perf
from tests.support.simfleet import FleetConfig, SimFleet, Workload, fleet_registry, serve_text


def _fleet(model: str, legacy: bool, engine: str = "vllm") -> SimFleet:
    """The same simulated fleet (same seed, same time) under any naming, frozen at t = 60 s."""
    cat = load_catalog()
    w = Workload.from_steps(((0.0, 12.0),), 120.0, input_tokens=800, output_tokens=150, seed=3)
    f = SimFleet(w, build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM")),
                 config=FleetConfig(model_name=model, initial_replicas=3, legacy_names=legacy, names=engine))
    f.advance(60.0)
    return f


@pytest.fixture(scope="module")
def scraped(prometheus_module: Any) -> Iterator[tuple[str, PromClient]]:
    prometheus = prometheus_module
    servers = []
    targets = []
    for model, legacy, engine in (("new", False, "vllm"), ("old", True, "vllm"), ("sg", False, "sglang"),
                                  ("trt", False, "trtllm")):
        srv, _ = serve_text(fleet_registry(_fleet(model, legacy, engine)), port=0)
        servers.append(srv)
        targets.append(f"127.0.0.1:{srv.server_port}")
    prometheus.reload({"vllm": targets})
    client = PromClient(prometheus.url)
    try:
        end = time.monotonic() + 30
        while not (len(client.query("vllm:num_requests_running")) == 6
                   and len(client.query("vllm:gpu_cache_usage_perc")) == 3
                   and len(client.query("sglang:num_running_reqs")) == 3
                   and len(client.query("trtllm_num_requests_running")) == 3):
            if time.monotonic() > end:
                pytest.fail("Prometheus did not scrape both targets in 30 s")
            time.sleep(0.2)
        yield prometheus.url, client
    finally:
        for s in servers:
            s.shutdown()


def _pool(model: str, engine: str = "vllm") -> Any:
    return parse_config({"scrape_interval_s": 1, "interval_s": 1, "pools": {
        model: {"selector": {"model_name": model}, "max_replicas": 10, "engine": engine,
                "params": {"target_running_per_replica": 8}}}}, source="test").pools[0]


def test_sglang_and_trtllm_pools_read_as_vllm_does(scraped: tuple[str, PromClient]) -> None:
    """The same fleet under SGLang's names reads the same; under trtllm-serve's, its gauges do (the
    inference-extension contract names no counters for it), and the controller decides the same."""
    _, client = scraped
    vllm = read_pool(client, _pool("new"))
    sg = read_pool(client, _pool("sg", "sglang"))
    trt = read_pool(client, _pool("trt", "trtllm"))
    for other in (sg, trt):
        assert other.pods == vllm.pods and other.running == vllm.running and other.waiting == vllm.waiting
        assert other.kv_cache_usage_perc == vllm.kv_cache_usage_perc
    assert sorted(sg.counters) == sorted(vllm.counters) and sg.names == ("sglang:token_usage",)
    assert trt.counters == () and trt.ttft_buckets_s == ()
    decide = [step(PoolState(), r, r.eval_s, pool=_pool(m, e), stale_after_s=3.0)[1].desired
              for r, m, e in ((vllm, "new", "vllm"), (sg, "sg", "sglang"), (trt, "trt", "trtllm"))]
    assert decide[0] is not None and decide == [decide[0]] * 3


def test_old_and_new_names_read_the_same(scraped: tuple[str, PromClient]) -> None:
    _, client = scraped
    new = read_pool(client, _pool("new"))
    old = read_pool(client, _pool("old"))
    assert new.names == (KV_NAMES[0],) and old.names == (KV_NAMES[1],)
    assert new.pods == old.pods == ("sim-0", "sim-1", "sim-2")
    assert new.running == old.running and new.waiting == old.waiting
    assert new.kv_cache_usage_perc == old.kv_cache_usage_perc
    assert sum(new.running) > 0 and all(0 < k <= 1 for k in new.kv_cache_usage_perc)
    assert sorted(new.counters) == sorted(old.counters)
    keys = {k for k, _, _ in new.counters}
    assert {"prompt_tokens", "generation_tokens", "ttft_count", "itl_count", "itl_sum"} <= keys
    assert len(new.ttft_buckets_s) == 22 and len(new.itl_buckets_s) == 19
    assert new.newest_sample_s is not None and new.eval_s - new.newest_sample_s < 5.0
    # the controller makes the same decision from either
    a = step(PoolState(), new, new.eval_s, pool=_pool("new"), stale_after_s=3.0)[1]
    b = step(PoolState(), old, old.eval_s, pool=_pool("old"), stale_after_s=3.0)[1]
    assert a.desired == b.desired and a.desired is not None and not a.held


def test_cli_once_reads_prometheus(scraped: tuple[str, PromClient], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = scraped
    cfg = tmp_path / "pools.yaml"
    cfg.write_text("scrape_interval_s: 1\ninterval_s: 1\npools:\n"
                   "  old: {selector: {model_name: old}, max_replicas: 10, max_step_up: 1,\n"
                   "        params: {target_running_per_replica: 2}}\n"
                   "  gone: {selector: {model_name: nobody}, max_replicas: 10}\n")
    assert main(["autoscale", "--prometheus-url", url, "--config", str(cfg), "--once"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["pool"] == "old" and out[0]["desired"] == 4 and out[0]["ramp_limited"]
    assert out[1] == {"pool": "gone", "desired": None, "policy_desired": None, "held": True,
                      "reason": "missing", "ramp_limited": False}


def test_query_errors(scraped: tuple[str, PromClient], free_tcp_port: Callable[[], int]) -> None:
    _, client = scraped
    with pytest.raises(PromQueryError, match="failed"):
        client.query("sum(")
    with pytest.raises(PromQueryError, match="cannot reach Prometheus"):
        PromClient(f"http://127.0.0.1:{free_tcp_port()}", timeout_s=1.0).query("up")
    assert math.isfinite(client.query("time()")[0].value)


def test_selector_escapes_values() -> None:
    assert selector_text((("a", 'x"y\\z'),)) == '{a="x\\"y\\\\z"}'

"""The simulated vLLM fleet: its exposition, its replica life cycle, its request records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from planner.catalog import load_catalog
from planner.perf import build_replica_perf
from planner.perf.api import ReplicaPerf
from planner.sim.coldstart import ColdStartDistribution
from planner.sim.config import VLLM_ITL_BUCKETS_S as ITL_BUCKETS_S
from planner.sim.config import VLLM_TTFT_BUCKETS_S as TTFT_BUCKETS_S
from tests.support.simfleet import FleetConfig, SimFleet, Workload, fleet_registry, parse_desired
from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace


def _perf() -> ReplicaPerf:
    cat = load_catalog()
    return build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))


def _series(fleet: SimFleet) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = generate_latest(fleet_registry(fleet)).decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_real_trace_exposes_vllm_series_per_pod(shared_traces: Path) -> None:
    tr = load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    tr = RequestTrace(tr.df.head(400), tr.meta)
    fleet = SimFleet(Workload.from_trace(tr), _perf(), config=FleetConfig(model_name="m", initial_replicas=2))
    fleet.advance(tr.duration_s / 2)
    s = _series(fleet)
    pods = {lab["pod"] for lab, _ in s["vllm:num_requests_running"]}
    assert pods == {"sim-0", "sim-1"}
    for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:request_success_total",
                 "vllm:time_to_first_token_seconds_count", "vllm:inter_token_latency_seconds_sum"):
        assert {lab["pod"] for lab, _ in s[name]} == pods, name
    ttft = [(lab, v) for lab, v in s["vllm:time_to_first_token_seconds_bucket"] if lab["pod"] == "sim-0"]
    assert len(ttft) == len(TTFT_BUCKETS_S) + 1
    counts = [v for _, v in ttft]
    assert counts == sorted(counts) and counts[-1] > 0  # cumulative
    itl = [lab for lab, _ in s["vllm:inter_token_latency_seconds_bucket"] if lab["pod"] == "sim-0"]
    assert len(itl) == len(ITL_BUCKETS_S) + 1
    started = sum(v for _, v in s["vllm:time_to_first_token_seconds_count"])
    df = fleet.requests()
    assert started == df.filter(df["ttft_s"].is_not_nan()).height  # every first token observed once
    prompt = sum(v for _, v in s["vllm:prompt_tokens_total"])
    routed = df.filter(df["arrival_s"] < fleet.t_s).height
    assert prompt > 0 and routed > 0


def test_scale_up_waits_for_cold_start_and_new_pods_start_from_zero() -> None:
    w = Workload.from_steps(((0.0, 20.0),), 200.0, input_tokens=500, output_tokens=100, seed=2)
    cold = ColdStartDistribution(math.log(20.0), 0.01)
    fleet = SimFleet(w, _perf(), config=FleetConfig(initial_replicas=1, max_replicas=4, cold_start=cold))
    fleet.advance(30.0)
    fleet.scale_to(3)
    assert fleet.counts() == (1, 2, 0) and fleet.asked == 3
    fleet.advance(45.0)
    assert fleet.counts()[0] == 1  # still loading
    fleet.advance(51.0)
    assert fleet.counts() == (3, 0, 0)
    fleet.advance(80.0)
    s = _series(fleet)
    gen = {lab["pod"]: v for lab, v in s["vllm:generation_tokens_total"]}
    assert set(gen) == {"sim-0", "sim-1", "sim-2"} and gen["sim-0"] > gen["sim-1"] > 0
    fleet.scale_to(1)
    fleet.advance(120.0)
    assert fleet.counts()[0] == 1 and fleet.asked == 1
    listed = {lab["pod"] for lab, _ in _series(fleet)["vllm:num_requests_running"]}
    assert len(listed) == 1 and listed <= {"sim-0", "sim-1", "sim-2"}


def test_legacy_names_and_desired_parsing() -> None:
    w = Workload.from_steps(((0.0, 5.0),), 50.0, input_tokens=200, output_tokens=50, seed=0)
    fleet = SimFleet(w, _perf(), config=FleetConfig(legacy_names=True))
    fleet.advance(20.0)
    names = set(_series(fleet))
    assert "vllm:gpu_cache_usage_perc" in names and "vllm:kv_cache_usage_perc" not in names
    assert "vllm:time_per_output_token_seconds_count" in names
    text = 'fleetwise_desired_replicas{gpu="",model="",pool="b",role="both"} 7.0\n'
    assert parse_desired(text, "b") == 7 and parse_desired(text, "a") is None


def test_bad_workloads_raise() -> None:
    with pytest.raises(InputError, match="bad rate steps"):
        Workload.from_steps(((0.0, -1.0),), 10.0, input_tokens=10, output_tokens=10, seed=0)
    with pytest.raises(InputError, match="initial replicas"):
        SimFleet(Workload.from_steps(((0.0, 1.0),), 10.0, input_tokens=10, output_tokens=10, seed=0), _perf(),
                 config=FleetConfig(initial_replicas=5, max_replicas=2))

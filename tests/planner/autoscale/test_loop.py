"""The closed-loop replay: equal to the replay simulator for a fixed fleet, cold starts, gateway, draining."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.autoscale.coldstart import ColdStartDistribution
from planner.autoscale.loop import LoopConfig, run_policy, static_policy
from planner.contracts.scaling import ScalingContext, ScalingDecision
from planner.perf.api import ReplicaPerf
from planner.sim import SimConfig, SLOTarget, replay
from planner.sim.testing import LinearPerf
from traces.load import load_trace
from traces.schema import RequestTrace, TraceMeta
from traces.transforms import slice_time

FIXED_60S = ColdStartDistribution(mu=float(np.log(60.0)), sigma=1e-9, source="test")


@functools.cache
def perf8() -> ReplicaPerf:
    """A replica with known, linear step times (independent of the perf model's calibration)."""
    return LinearPerf(base_s=0.008, per_prefill_token_s=4e-5, per_decode_s=1e-4, kv_tokens=4_000_000)


def code_trace(shared: Path, minutes: float = 10.0) -> RequestTrace:
    t = load_trace(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv")
    return slice_time(t, 0.0, minutes * 60.0)


def test_fixed_fleet_matches_the_replay_simulator_request_by_request(shared_traces: Path) -> None:
    trace = code_trace(shared_traces)
    slo = SLOTarget(ttft_s=0.5, tpot_s=0.03)
    sim = replay(trace, perf8(), config=SimConfig(replicas=2, default_slo=slo))
    loop = run_policy(trace, perf8(), static_policy(2), config=LoopConfig(initial_replicas=2, max_replicas=2,
                                                                          slo=slo))
    a = sim.requests["ttft_s"].to_numpy()
    b = loop.requests["ttft_s"].to_numpy()
    assert np.nanmax(np.abs(a - b)) < 1e-6
    assert np.nanmax(np.abs(sim.requests["tpot_s"].to_numpy() - loop.requests["tpot_s"].to_numpy())) < 1e-6
    assert loop.summary.attainment == pytest.approx(sim.summary.classes[0].attainment)
    assert loop.summary.gpu_hours == pytest.approx(sim.summary.gpu_hours, rel=1e-6)


def test_cold_start_delays_readiness_and_gpu_time_counts_loading() -> None:
    df = pl.DataFrame({"arrival_s": [0.0, 1.0, 100.0], "input_tokens": [100, 100, 100],
                       "output_tokens": [5, 5, 5]},
                      schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    trace = RequestTrace(df, TraceMeta("t", "inline"))

    def one(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(1, None)

    res = run_policy(trace, perf8(), one, config=LoopConfig(initial_replicas=0, max_replicas=2, tick_s=5.0,
                                                            cold_start=FIXED_60S))
    ttft = res.requests["ttft_s"].to_numpy()
    # requested at t=0 (first tick), ready after 60 s (readiness is seen at the next 5 s tick): the first
    # two wait at the gateway
    assert 60.0 <= ttft[0] <= 66.0 and 59.0 <= ttft[1] <= 65.0
    assert ttft[2] < 1.0
    assert res.summary.gpu_hours == pytest.approx(res.summary.makespan_s / 3600.0, rel=1e-6)
    assert res.timeline["at_gateway"].max() == 2


def test_scale_down_drains_before_releasing() -> None:
    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame({"arrival_s": np.sort(rng.uniform(0, 60, n)), "input_tokens": np.full(n, 500),
                       "output_tokens": np.full(n, 400)},
                      schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    trace = RequestTrace(df, TraceMeta("t", "inline"))

    def shrink(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(4 if ctx.now_s < 30 else 1, None)

    res = run_policy(trace, perf8(), shrink, config=LoopConfig(initial_replicas=4, max_replicas=4))
    assert res.summary.unfinished == 0
    tl = res.timeline
    assert tl.filter(pl.col("t_s") == 30.0)["draining"][0] >= 1  # they drain, not drop work
    # GPU time exceeds 1 replica for the whole run but stays below 4
    assert res.summary.makespan_s / 3600 < res.summary.gpu_hours < 4 * res.summary.makespan_s / 3600


def test_bad_input_is_an_input_error() -> None:
    from traces.errors import InputError

    with pytest.raises(InputError):
        LoopConfig(initial_replicas=5, max_replicas=2)
    df = pl.DataFrame({"arrival_s": [0.0], "input_tokens": [10], "output_tokens": [0]},
                      schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    with pytest.raises(InputError, match="output_tokens"):
        run_policy(RequestTrace(df, TraceMeta("t", "inline")), perf8(), static_policy(1), config=LoopConfig())

"""The closed loop (a policy inside the replay simulator): equal to the plain replay for a fixed fleet,
cold starts delay readiness and count GPU time, scale-down drains, bounds hold."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.autoscale.closed_loop import LoopConfig, run_policy, static_policy
from planner.contracts.scaling import ScalingContext, ScalingDecision
from planner.perf.api import ReplicaPerf
from planner.sim import SimConfig, SLOTarget, replay
from planner.sim.coldstart import ColdStartDistribution
from planner.sim.testing import LinearPerf
from traces.errors import InputError
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


def inline(arrival: list[float] | np.ndarray, inp: int, out: int) -> RequestTrace:
    n = len(arrival)
    df = pl.DataFrame({"arrival_s": np.asarray(arrival, dtype=np.float64), "input_tokens": np.full(n, inp),
                       "output_tokens": np.full(n, out)},
                      schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    return RequestTrace(df, TraceMeta("t", "inline"))


def test_fixed_fleet_matches_the_plain_replay_request_by_request(shared_traces: Path) -> None:
    """The closed loop goes through the cluster path (event slices, a policy every tick); with a policy
    that never changes the fleet it must give the single-pass replay's numbers exactly."""
    trace = code_trace(shared_traces)
    slo = SLOTarget(ttft_s=0.5, tpot_s=0.03)
    sim = replay(trace, perf8(), config=SimConfig(replicas=2, default_slo=slo))
    loop = run_policy(trace, perf8(), static_policy(2), config=LoopConfig(initial_replicas=2, max_replicas=2,
                                                                          slo=slo))
    a = sim.requests["ttft_s"].to_numpy()
    b = loop.requests["ttft_s"].to_numpy()
    assert np.nanmax(np.abs(a - b)) < 1e-9
    assert np.nanmax(np.abs(sim.requests["tpot_s"].to_numpy() - loop.requests["tpot_s"].to_numpy())) < 1e-9
    assert loop.summary.attainment == pytest.approx(sim.summary.classes[0].attainment)
    assert loop.summary.gpu_hours == pytest.approx(sim.summary.gpu_hours, rel=1e-6)
    assert loop.summary.scale_actions == 0 and loop.summary.peak_replicas == 2


def test_cold_start_delays_readiness_and_gpu_time_counts_loading() -> None:
    trace = inline(np.arange(0.0, 200.0, 0.5), 200, 20)

    def two(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(2, None)

    res = run_policy(trace, perf8(), two, config=LoopConfig(initial_replicas=1, max_replicas=2, tick_s=5.0,
                                                            cold_start=FIXED_60S))
    tl = res.timeline
    # asked for at the first tick (5 s), routable once the 60 s cold start has passed (65 s)
    assert tl.filter(pl.col("t_s") < 65.0)["ready"].max() == 1
    assert tl.filter(pl.col("t_s") >= 65.0)["ready"].min() == 2
    assert tl.filter((pl.col("t_s") >= 5.0) & (pl.col("t_s") < 65.0))["starting"].min() == 1
    # the second replica holds its GPU from the decision, loading included
    span = res.summary.makespan_s
    assert res.summary.gpu_hours == pytest.approx((2 * span - 5.0) / 3600.0, rel=0.02)


def test_scale_down_drains_before_releasing() -> None:
    rng = np.random.default_rng(0)
    trace = inline(np.sort(rng.uniform(0, 60, 400)), 500, 400)

    def shrink(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(4 if ctx.now_s < 30 else 1, None)

    res = run_policy(trace, perf8(), shrink, config=LoopConfig(initial_replicas=4, max_replicas=4))
    assert res.summary.unfinished == 0 and res.summary.requests == 400
    tl = res.timeline
    assert tl.filter(pl.col("t_s") >= 30.0)["draining"].max() >= 1  # they drain, not drop work
    # GPU time exceeds 1 replica for the whole run but stays below 4
    assert res.summary.makespan_s / 3600 < res.summary.gpu_hours < 4 * res.summary.makespan_s / 3600


def test_the_policy_wish_is_held_to_the_bounds() -> None:
    trace = inline(np.arange(0.0, 120.0, 0.5), 200, 20)

    def wild(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(0 if int(ctx.now_s) % 20 < 10 else 50, None)

    res = run_policy(trace, perf8(), wild, config=LoopConfig(initial_replicas=2, min_replicas=2,
                                                             max_replicas=3, cold_start=FIXED_60S))
    desired = res.timeline["desired"]
    assert desired.min() >= 2 and desired.max() <= 3  # type: ignore[operator]


def test_bad_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="initial_replicas"):
        LoopConfig(initial_replicas=5, max_replicas=2)
    with pytest.raises(InputError, match="replica bounds"):
        LoopConfig(initial_replicas=0, min_replicas=0)
    with pytest.raises(InputError, match="output_tokens"):
        run_policy(inline([0.0], 10, 0), perf8(), static_policy(1), config=LoopConfig())

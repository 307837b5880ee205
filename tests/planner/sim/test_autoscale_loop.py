"""Autoscaling in the replay loop: reaction to a load step, cold starts, draining, GPU-hours, metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from planner.contracts.scaling import ScalingContext, ScalingDecision
from planner.sim import SimConfig, replay
from planner.sim.config import AutoscaleConfig
from planner.sim.testing import LinearPerf, make_trace
from traces.errors import InputError
from traces.schema import RequestTrace

COLD_S = 20.0
TICK_S = 10.0


@dataclass(frozen=True)
class FixedColdStart:
    """Every cold start takes the same time (a real distribution: a point mass)."""

    seconds: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.seconds)


def per_replica_target(ctx: ScalingContext, *, target: float = 8.0) -> ScalingDecision[None]:
    """Replicas for ``target`` requests in the system each (no delays: reacts at every tick)."""
    load = sum(ctx.running) + sum(ctx.waiting)
    return ScalingDecision(max(1, math.ceil(load / target)), None)


def _step_trace(seed: int = 0, *, low: float = 2.0, high: float = 30.0, t_step: float = 100.0,
                t_down: float = 250.0, t_end: float = 400.0) -> RequestTrace:
    """Poisson arrivals at ``low`` req/s, ``high`` from ``t_step`` to ``t_down``, then ``low`` again."""
    rng = np.random.default_rng(seed)
    parts = []
    for a, b, rate in ((0.0, t_step, low), (t_step, t_down, high), (t_down, t_end, low)):
        t = a + np.cumsum(rng.exponential(1.0 / rate, int(rate * (b - a) * 2)))
        parts.append(t[t < b])
    arr = np.concatenate(parts)
    n = arr.size
    return make_trace(arr, rng.integers(100, 1000, n), rng.integers(50, 200, n))


def _config(replicas: int = 1, *, max_replicas: int = 12, policy=per_replica_target) -> SimConfig:  # type: ignore[no-untyped-def]
    return SimConfig(replicas=replicas, interval_s=TICK_S, autoscale=AutoscaleConfig(
        policy=policy, interval_s=TICK_S, max_replicas=max_replicas, cold_start=FixedColdStart(COLD_S)))


@pytest.fixture(scope="module")
def stepped() -> tuple[RequestTrace, object]:
    tr = _step_trace()
    return tr, replay(tr, LinearPerf(), config=_config())


def test_scale_up_within_cold_start_plus_interval(stepped) -> None:  # type: ignore[no-untyped-def]
    _, res = stepped
    reps = res.replicas
    ups = reps.filter(pl.col("requested_s") > 0).sort("requested_s")
    assert ups.height > 0
    first_up = float(ups["requested_s"][0])
    # the queue builds within a tick of the step; the decision comes at the next tick
    assert 100.0 < first_up <= 100.0 + 2 * TICK_S
    served = ups.filter(pl.col("ready_s").is_not_null())
    first_ready = float(served["ready_s"].min())  # type: ignore[arg-type]
    assert first_ready == pytest.approx(float(served.sort("ready_s")["requested_s"][0]) + COLD_S)
    assert first_ready <= 100.0 + 2 * TICK_S + COLD_S
    ts = res.timeseries
    before = ts.filter(pl.col("t_s") < 100)["replicas_serving"].max()
    during = ts.filter((pl.col("t_s") >= 150) & (pl.col("t_s") < 250))["replicas_serving"].min()
    assert during > before  # type: ignore[operator]


def test_drain_never_drops_requests(stepped) -> None:  # type: ignore[no-untyped-def]
    tr, res = stepped
    req = res.requests
    assert req.height == tr.num_requests
    assert req["finish_s"].is_not_null().all()
    assert res.summary.completed == tr.num_requests and res.summary.violations == 0
    drained = res.replicas.filter(pl.col("drain_s").is_not_null() & (pl.col("drain_s") < pl.col("stopped_s")))
    assert drained.height > 0  # the load fell at t = 250 s: replicas drained
    j = req.join(drained.select("replica", "drain_s", "stopped_s"), on="replica")
    # nothing routed to a replica after its drain started, everything it held finished before it stopped
    assert (j["arrival_s"] < j["drain_s"]).all()
    assert (j["finish_s"] <= j["stopped_s"] + 1e-9).all()


def test_gpu_hours_count_from_the_decision_to_the_stop(stepped) -> None:  # type: ignore[no-untyped-def]
    _, res = stepped
    reps = res.replicas
    held = (reps["stopped_s"] - reps["requested_s"]).sum()
    assert res.summary.gpu_hours == pytest.approx(held / 3600.0)
    cancelled_or_cold = reps.filter(pl.col("ready_s").is_null())
    assert (cancelled_or_cold["stopped_s"] >= cancelled_or_cold["requested_s"]).all()
    fixed = replay(_step_trace(), LinearPerf(), config=SimConfig(replicas=12, interval_s=TICK_S))
    assert res.summary.gpu_hours < fixed.summary.gpu_hours  # scaling saved GPU time


def test_constant_policy_gives_the_fixed_cluster_result() -> None:
    """Slicing the loop at ticks changes nothing: same finish times as one uninterrupted call."""
    tr = _step_trace(1, t_down=180.0, t_end=200.0)

    def keep(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(ctx.replicas, None)

    sliced = replay(tr, LinearPerf(), config=_config(4, policy=keep))
    whole = replay(tr, LinearPerf(), config=SimConfig(replicas=4, interval_s=TICK_S))
    np.testing.assert_allclose(sliced.requests["finish_s"].to_numpy(), whole.requests["finish_s"].to_numpy(),
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sliced.requests["replica"].to_numpy(), whole.requests["replica"].to_numpy())


def test_policy_sees_vllm_metrics() -> None:
    seen: list[ScalingContext] = []

    def watch(ctx: ScalingContext) -> ScalingDecision[None]:
        seen.append(ctx)
        return per_replica_target(ctx)

    tr = _step_trace(2, t_down=180.0, t_end=200.0)
    res = replay(tr, LinearPerf(), config=_config(policy=watch))
    assert len(seen) >= 15
    prev = seen[0]
    for ctx in seen[1:]:
        assert ctx.now_s == pytest.approx(prev.now_s + TICK_S)
        assert len(ctx.running) == len(ctx.waiting) == len(ctx.kv_cache_usage_perc) == ctx.replicas
        assert all(0.0 <= k <= 1.0 for k in ctx.kv_cache_usage_perc)
        assert ctx.requests_total >= prev.requests_total
        assert ctx.generation_tokens_total >= prev.generation_tokens_total
        assert list(ctx.ttft_counts) == sorted(ctx.ttft_counts)  # cumulative buckets
        assert ctx.ttft_counts[-1] <= ctx.ttft_count
        assert ctx.itl_counts[-1] <= ctx.itl_count
        prev = ctx
    last = seen[-1]
    arrived = int((tr.df["arrival_s"] < last.now_s).sum())
    assert last.requests_total == arrived
    firsts = int((res.requests["first_token_s"] < last.now_s).sum())
    assert last.ttft_count == pytest.approx(firsts, abs=res.summary.replicas * 2)
    done = res.requests.filter(pl.col("first_token_s") < last.now_s)["ttft_s"].to_numpy()
    assert last.ttft_sum_s / last.ttft_count == pytest.approx(float(done.mean()), rel=0.05)
    assert any(not all(c.ready) for c in seen if c.ready)  # starting replicas are listed, not ready


def test_autoscale_bounds_are_checked() -> None:
    with pytest.raises(InputError, match="bounds"):
        SimConfig(replicas=20, autoscale=AutoscaleConfig(policy=per_replica_target, max_replicas=4))
    with pytest.raises(InputError, match="min_replicas"):
        AutoscaleConfig(policy=per_replica_target, min_replicas=5, max_replicas=4)

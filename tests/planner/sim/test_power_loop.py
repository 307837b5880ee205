"""Power in the replay loop: per-step power, server/rack/row telemetry, clock capping with latency."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.catalog.schema import GPUSpec
from planner.contracts.power import CapDecision, PowerContext, no_capping
from planner.perf import build_replica_perf
from planner.sim import SimConfig, replay
from planner.sim.config import PowerConfig
from planner.sim.synth import azure_conv_like
from planner.sim.testing import LinearPerf, poisson_trace
from traces.errors import InputError


@pytest.fixture(scope="module")
def h100() -> GPUSpec:
    return load_catalog().gpu("H100-SXM")


def lock_when_over(ctx: PowerContext, *, mhz: float = 1200.0) -> CapDecision:
    """Lock every server at ``mhz`` while the row is over budget (a crude bang-bang policy)."""
    over = ctx.row_power_w > ctx.row_budget_w
    return CapDecision(tuple(mhz if over else None for _ in ctx.server_power_w), state=None)


def test_capping_lowers_row_power_and_raises_tpot(h100: GPUSpec) -> None:
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), h100)
    tr = azure_conv_like(3000, rate_rps=60.0, seed=4)
    base = PowerConfig(row_budget_w=1e9, policy=no_capping, server_base_w=1500.0)
    free = replay(tr, perf, config=SimConfig(replicas=8, interval_s=10.0, power=base), gpu=h100)
    budget = 0.8 * free.capping.peak_row_w  # type: ignore[union-attr]
    capped = replay(tr, perf, gpu=h100, config=SimConfig(replicas=8, interval_s=10.0, power=PowerConfig(
        row_budget_w=budget, policy=lock_when_over, server_base_w=1500.0)))
    fc, cc = free.capping, capped.capping
    assert fc is not None and cc is not None
    assert fc.capped_s == 0 and cc.capped_s > 0 and cc.policy_calls > 0
    assert cc.mean_row_w < fc.mean_row_w
    assert free.power is not None
    free_over = free.power.filter((pl.col("scope") == "row") & (pl.col("power_w") > budget)).height * 1.0
    assert cc.over_budget_s < free_over  # telemetry periods of 1 s over the budget
    assert capped.summary.classes[0].tpot_p50_s > free.summary.classes[0].tpot_p50_s
    assert capped.requests["clock_locked"].any() and not free.requests["clock_locked"].any()
    slow = capped.requests.filter(pl.col("clock_locked"))["tpot_s"].mean()
    fast = capped.requests.filter(~pl.col("clock_locked"))["tpot_s"].mean()
    assert slow > fast  # type: ignore[operator]
    for res in (free, capped):
        assert res.summary.completed == tr.num_requests and res.summary.violations == 0


def test_power_table_scopes_add_up(h100: GPUSpec) -> None:
    tr = poisson_trace(1500, 40.0, 2)
    res = replay(tr, LinearPerf(), gpu=h100, config=SimConfig(
        replicas=10, interval_s=2.0, servers_per_rack=1,
        power=PowerConfig(row_budget_w=1e6, telemetry_period_s=0.5, server_base_w=800.0)))
    p = res.power
    assert p is not None
    per = p.group_by("t_s", "scope").agg(pl.col("power_w").sum(), pl.len()).sort("t_s", "scope")
    wide = per.pivot(on="scope", index="t_s", values="power_w")
    # 10 one-GPU replicas: 2 servers of 8 GPUs (the second half empty); base power on both
    np.testing.assert_allclose(wide["server"].to_numpy(), wide["gpu"].to_numpy() + 2 * 800.0, rtol=1e-9)
    np.testing.assert_allclose(wide["rack"].to_numpy(), wide["server"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(wide["row"].to_numpy(), wide["rack"].to_numpy(), rtol=1e-9)
    gpus = p.filter(pl.col("scope") == "gpu")
    assert gpus["id"].n_unique() == 10
    assert p.filter(pl.col("scope") == "server")["id"].n_unique() == 2
    watts = gpus["power_w"].to_numpy()
    assert watts.min() >= LinearPerf().idle_power_w - 1e-9  # held GPUs never below idle
    assert watts.max() <= LinearPerf().idle_power_w + LinearPerf().busy_power_w + 1e-9
    assert p["t_s"].n_unique() == pytest.approx(res.summary.makespan_s / 0.5, abs=1)


def test_in_loop_energy_matches_the_interval_estimate(h100: GPUSpec) -> None:
    """With power independent of the batch, per-step energy in the loop equals the post-hoc one."""
    tr = poisson_trace(800, 20.0, 3)
    loop = replay(tr, LinearPerf(), gpu=h100, config=SimConfig(
        replicas=3, interval_s=5.0, power=PowerConfig(row_budget_w=1e6, server_base_w=0.0)))
    post = replay(tr, LinearPerf(), gpu=h100, config=SimConfig(replicas=3, interval_s=5.0))
    assert loop.summary.energy_kwh == pytest.approx(post.summary.energy_kwh, rel=1e-6)
    np.testing.assert_allclose(loop.requests["finish_s"].to_numpy(), post.requests["finish_s"].to_numpy(),
                               atol=1e-9)


def test_locks_apply_after_the_actuation_latency(h100: GPUSpec) -> None:
    def lock_from_5s(ctx: PowerContext) -> CapDecision:
        lock = ctx.now_s >= 5.0
        return CapDecision(tuple(990.0 if lock else None for _ in ctx.server_power_w), state=None)

    tr = poisson_trace(1200, 40.0, 5)
    cfg = SimConfig(replicas=4, interval_s=1.0, power=PowerConfig(
        row_budget_w=1e6, policy=lock_from_5s, actuation_latency_s=2.0, server_base_w=0.0))
    res = replay(tr, LinearPerf(), gpu=h100, config=cfg)
    cap = res.capping
    assert cap is not None
    assert cap.capped_s == pytest.approx(res.summary.makespan_s - 7.0, abs=1e-6)
    req = res.requests
    early = req.filter(pl.col("finish_s") < 7.0)
    late = req.filter(pl.col("arrival_s") > 7.5)
    assert early.height > 0 and not early["clock_locked"].any()
    assert late["clock_locked"].all()
    # LinearPerf at 990 MHz is 2x slower: decode steps of the late requests take about twice as long
    assert late["tpot_s"].median() > 1.6 * early["tpot_s"].median()  # type: ignore[operator]


def test_brake_is_counted(h100: GPUSpec) -> None:
    def brake_when_over(ctx: PowerContext) -> CapDecision:
        return CapDecision(ctx.server_clock_mhz, state=None, brake=ctx.row_power_w > ctx.row_budget_w)

    tr = poisson_trace(1500, 50.0, 6)
    res = replay(tr, LinearPerf(), gpu=h100, config=SimConfig(replicas=8, interval_s=1.0, power=PowerConfig(
        row_budget_w=2500.0, policy=brake_when_over, server_base_w=0.0)))
    cap = res.capping
    assert cap is not None
    assert cap.brake_events >= 1 and cap.brake_s > 0 and cap.capped_s >= cap.brake_s


def test_power_config_is_validated(h100: GPUSpec) -> None:
    with pytest.raises(InputError, match="row budget"):
        PowerConfig(row_budget_w=0.0)
    with pytest.raises(InputError, match="multiple"):
        SimConfig(replicas=1, interval_s=1.5, power=PowerConfig(row_budget_w=1.0, telemetry_period_s=1.0))
    with pytest.raises(InputError, match="GPU spec"):
        replay(poisson_trace(10, 1.0, 1), LinearPerf(),
               config=SimConfig(replicas=1, power=PowerConfig(row_budget_w=1.0)))


def test_power_kernel_is_step_power_w(h100: GPUSpec) -> None:
    perf = build_replica_perf(load_catalog().model("Llama-3.1-8B"), h100)
    fn, prm = perf.power_kernel()
    cases = ((2048.0, 2.1e6, 0.0, 0.0), (0.0, 0.0, 64.0, 64_000.0), (512.0, 1.3e5, 32.0, 3e4))
    for pt, pairs, ds, kv in cases:
        assert fn(prm, pt, pairs, ds, kv) == pytest.approx(float(perf.step_power_w(pt, pairs, ds, kv)))  # type: ignore[operator]
    slow = perf.at_clock(990.0)
    sfn, sprm = slow.power_kernel()
    assert sfn(sprm, 0.0, 0.0, 64.0, 64_000.0) < fn(prm, 0.0, 0.0, 64.0, 64_000.0)  # type: ignore[operator]


def test_brake_takes_its_own_latency(h100: GPUSpec) -> None:
    """An out-of-band brake engaged at 5 s holds only after ``brake_latency_s``; clock locks after the
    in-band ``actuation_latency_s``."""
    def brake_from_5s(ctx: PowerContext) -> CapDecision:
        return CapDecision(ctx.server_clock_mhz, state=None, brake=ctx.now_s >= 5.0)

    tr = poisson_trace(1200, 40.0, 5)

    def capped_s(brake_latency_s: float | None) -> tuple[float, float]:
        cfg = SimConfig(replicas=4, interval_s=1.0, power=PowerConfig(
            row_budget_w=1e6, policy=brake_from_5s, actuation_latency_s=0.1, server_base_w=0.0,
            brake_latency_s=brake_latency_s))
        res = replay(tr, LinearPerf(), gpu=h100, config=cfg)
        assert res.capping is not None
        return res.capping.brake_s, res.summary.makespan_s

    fast, span_fast = capped_s(None)
    slow, span_slow = capped_s(3.0)
    assert fast == pytest.approx(span_fast - 5.1, abs=1e-6)
    assert slow == pytest.approx(span_slow - 8.0, abs=1e-6)
    with pytest.raises(InputError, match="brake latency"):
        PowerConfig(row_budget_w=1.0, brake_latency_s=-1.0)

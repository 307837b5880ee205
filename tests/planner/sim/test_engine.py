"""The fast event loop against the step-by-step reference, and conservation properties (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.contracts.kv_tiers import KVTierLevel, KVTiers
from planner.sim import EngineConfig, RouterName, SimConfig
from planner.sim import engine as E  # noqa: N812
from planner.sim.config import RouterOptions
from planner.sim.reference import reference_shard
from planner.sim.replay import ShardOutput, engine_setup, make_shard_tasks, simulate_shard
from planner.sim.testing import LinearPerf, make_trace, poisson_trace

EXACT_ROUTERS = [r for r in RouterName if r is not RouterName.LEAST_KV]


def _both(trace, perf, cfg) -> tuple[ShardOutput, ShardOutput, np.ndarray]:  # type: ignore[no-untyped-def]
    setup = engine_setup(perf, trace, cfg)
    task = make_shard_tasks(trace, cfg)[0]
    return simulate_shard(task, setup, cfg), reference_shard(task, setup, cfg), task.output_tokens


@pytest.mark.parametrize("router", EXACT_ROUTERS, ids=str)
@pytest.mark.parametrize(("kv_tokens", "prefix", "max_seqs", "async_"),
                         [(200_000, False, 256, False), (20_000, False, 64, False), (30_000, True, 32, False),
                          (8_000, True, 256, False), (200_000, False, 256, True), (8_000, True, 256, True)],
                         ids=["roomy", "preempting", "prefix", "prefix-preempting", "async",
                              "async-preempting"])
def test_fast_loop_matches_step_by_step_reference(router: RouterName, kv_tokens: int, prefix: bool,
                                                  max_seqs: int, async_: bool) -> None:
    trace = poisson_trace(600, 40.0, 1, prefix_groups=5 if prefix else 0)
    cfg = SimConfig(replicas=3, router=router,
                    engine=EngineConfig(max_num_seqs=max_seqs, max_batched_tokens=2048,
                                        async_scheduling=async_))
    fast, ref, _ = _both(trace, LinearPerf(kv_tokens=kv_tokens), cfg)
    np.testing.assert_allclose(fast.rf, ref.rf, rtol=0, atol=1e-9)
    for field in (E.R_REP, E.R_PREEMPT, E.R_CACHED, E.R_GEN):
        np.testing.assert_array_equal(fast.rq[:, field], ref.rq[:, field])
    np.testing.assert_array_equal(fast.steps, ref.steps)
    assert fast.violations == 0
    if kv_tokens <= 20_000:
        assert fast.rq[:, E.R_PREEMPT].sum() > 0  # the case really exercises preemption
    if prefix:
        assert fast.rq[:, E.R_CACHED].sum() > 0


@pytest.mark.parametrize("router", [RouterName.SGLANG_CACHE_AWARE, RouterName.DUALMAP], ids=str)
@pytest.mark.parametrize("kv_tokens", [30_000, 8_000], ids=["prefix", "prefix-preempting"])
def test_serving_stack_routers_with_thresholds_that_fire_match_the_reference(router: RouterName,
                                                                             kv_tokens: int) -> None:
    # a small balance threshold and record (sglang), a TTFT target that queues break and a tight hot-spot
    # factor (dualmap): the routing differs from the defaults' on this trace, and still agrees exactly
    opts = RouterOptions(balance_abs_threshold=2, tree_blocks=40, ttft_slo_s=0.02, hotspot_factor=1.0)
    cfg = SimConfig(replicas=3, router=router, router_options=opts,
                    engine=EngineConfig(max_num_seqs=32, max_batched_tokens=2048))
    trace, perf = poisson_trace(600, 40.0, 1, prefix_groups=5), LinearPerf(kv_tokens=kv_tokens)
    fast, ref, _ = _both(trace, perf, cfg)
    default, _, _ = _both(trace, perf, replace(cfg, router_options=RouterOptions()))
    assert (fast.rq[:, E.R_REP] != default.rq[:, E.R_REP]).sum() > 50
    np.testing.assert_allclose(fast.rf, ref.rf, rtol=0, atol=1e-9)
    for field in (E.R_REP, E.R_PREEMPT, E.R_CACHED, E.R_GEN):
        np.testing.assert_array_equal(fast.rq[:, field], ref.rq[:, field])
    assert fast.violations == 0
    assert len(set(fast.rq[:, E.R_REP].tolist())) == 3


def test_async_scheduling_delays_admission_by_a_step() -> None:
    # one replica at a moderate rate: most requests arrive while a step runs and wait one more step
    trace = poisson_trace(400, 2.0, 1)
    eng = EngineConfig(max_num_seqs=256, max_batched_tokens=2048)
    on, _, _ = _both(trace, LinearPerf(), SimConfig(replicas=1, engine=replace(eng, async_scheduling=True)))
    off, _, _ = _both(trace, LinearPerf(), SimConfig(replicas=1, engine=eng))
    later = on.rf[:, 0] - off.rf[:, 0]  # first-token times
    assert (later > 1e-6).mean() > 0.8 and (later < -1e-9).mean() < 0.05
    assert np.median(later) > 0.0


def test_runs_jump_over_decode_steps() -> None:
    trace = poisson_trace(300, 5.0, 2)
    cfg = SimConfig(replicas=1)
    fast, _, _ = _both(trace, LinearPerf(), cfg)
    assert fast.kernel_steps.sum() < fast.steps.sum() / 5


def test_precise_prefix_sees_blocks_a_decode_run_evicted_before_the_arrival() -> None:
    # replica 1 caches a 138-block prompt, then one long decode fills its memory and evicts the cached
    # blocks step by step; the last request (blocks [0, 1]) must not see block 1 there (hypothesis found
    # the fast loop reading the cache as it was when the decode run was planned)
    arr = [0.0] + [0.5] * 6 + [1.0] * 5 + [1.140625, 1.21875] + [1.328125] * 24
    inp = [1] * 6 + [138] + [1] * 30 + [2]
    out = [1] * 10 + [64] + [1] * 27
    hashes = [[0]] * 6 + [list(range(138))] + [[0]] * 30 + [[0, 1]]
    trace = make_trace(np.array(arr), np.array(inp), np.array(out), prefix_hashes=hashes, block_size=1)
    cfg = SimConfig(replicas=2, router=RouterName.PRECISE_PREFIX,
                    engine=EngineConfig(block_size=1, max_num_seqs=1, max_batched_tokens=2))
    fast, ref, _ = _both(trace, LinearPerf(kv_tokens=200), cfg)
    np.testing.assert_array_equal(fast.rq[:, E.R_REP], ref.rq[:, E.R_REP])
    np.testing.assert_allclose(fast.rf, ref.rf, rtol=0, atol=1e-9)
    assert ref.rq[-1, E.R_REP] == 0  # block 1 is gone from replica 1: the queue score decides


@st.composite
def _cases(draw: st.DrawFn) -> tuple[object, SimConfig, LinearPerf]:
    n = draw(st.integers(1, 40))
    gaps = draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n))
    inp = draw(st.lists(st.integers(1, 700), min_size=n, max_size=n))
    out = draw(st.lists(st.integers(1, 120), min_size=n, max_size=n))
    bs = draw(st.sampled_from([1, 4, 16]))
    prefix = draw(st.booleans())
    hashes = None
    hbt = None
    if prefix:
        hbt = bs * draw(st.sampled_from([1, 2]))
        groups = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
        hashes = [[g * 1000 + j for j in range(-(-i // hbt))] for g, i in zip(groups, inp, strict=True)]
    trace = make_trace(np.cumsum(gaps), np.array(inp), np.array(out), prefix_hashes=hashes, block_size=hbt)
    max_seqs = draw(st.integers(1, 8))
    replicas = draw(st.integers(1, 3))
    tiers = None
    if prefix and draw(st.booleans()):  # KV tiers of a few blocks each, some slower than recomputing
        kvb = LinearPerf().kv_token_bytes
        names = draw(st.sampled_from([("dram",), ("dram", "ssd"), ("dram", "ssd", "remote"), ("remote",)]))
        if replicas > 1:  # a shared pool is exact against the reference on one replica (see kv_tiers)
            names = tuple(n for n in names if n != "remote") or ("dram",)
        levels = tuple(KVTierLevel(n, draw(st.integers(1, 400)) * kvb / 1e9,
                                   draw(st.sampled_from([0.5, 50.0])), draw(st.sampled_from([0.0, 1e-3])),
                                   n == "remote") for n in names)
        swap = draw(st.sampled_from([0, 50, 2000])) if any(not lv.shared for lv in levels) else 0
        tiers = KVTiers(levels, overlap=draw(st.booleans()), cost_aware=draw(st.booleans()),
                        swap_gb=swap * kvb / 1e9)
    # router thresholds tight enough to fire on a few requests (sglang's balancer and LRU-bounded record,
    # dualmap's hot spots and TTFT switch)
    opts = RouterOptions(
        cache_threshold=draw(st.sampled_from([0.0, 0.3, 0.5])), balance_abs_threshold=draw(st.integers(0, 4)),
        balance_rel_threshold=draw(st.sampled_from([1.0, 1.5])),
        tree_blocks=draw(st.one_of(st.none(), st.integers(1, 12))),
        ttft_slo_s=draw(st.sampled_from([None, 0.005, 0.02])),
        hotspot_factor=draw(st.sampled_from([1.0, 2.0])))
    cfg = SimConfig(
        replicas=replicas, router=draw(st.sampled_from(EXACT_ROUTERS)),
        seed=draw(st.integers(0, 5)),
        engine=EngineConfig(block_size=bs, max_num_seqs=max_seqs,
                            max_batched_tokens=draw(st.integers(max_seqs, 600))),
        kv_tiers=tiers,
        router_options=opts,
    )
    perf = LinearPerf(kv_tokens=draw(st.integers(200, 2000)))
    return trace, cfg, perf


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_conservation_and_agreement(case: tuple[object, SimConfig, LinearPerf]) -> None:
    trace, cfg, perf = case
    fast, ref, out = _both(trace, perf, cfg)
    done = fast.rq[:, E.R_PHASE] == E.PH_DONE
    rejected = fast.rq[:, E.R_PHASE] == E.PH_REJECTED
    assert (done | rejected).all()  # every request finishes exactly once (or is refused up front)
    np.testing.assert_array_equal(fast.rq[done, E.R_GEN], out[done])  # tokens out == tokens asked
    arr = trace.df["arrival_s"].to_numpy()  # type: ignore[attr-defined]
    first, finish, sched = fast.rf[done, E.F_FIRST], fast.rf[done, E.F_FINISH], fast.rf[done, E.F_SCHED]
    assert (sched >= arr[done] - 1e-12).all() and (first >= sched).all() and (finish >= first).all()
    assert fast.violations == 0  # time never went back, KV never over capacity
    blocks = perf.kv_tokens // cfg.engine.block_size
    assert (fast.max_used_blocks <= blocks).all()
    np.testing.assert_allclose(fast.rf, ref.rf, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast.rq[:, E.R_PREEMPT], ref.rq[:, E.R_PREEMPT])
    np.testing.assert_array_equal(fast.rq[:, E.R_T1:E.R_T3 + 1], ref.rq[:, E.R_T1:E.R_T3 + 1])

"""KV tiers below HBM: the fast loop against the step-by-step reference, and what tiers buy."""

from __future__ import annotations

import numpy as np
import pytest

from planner.contracts.kv_tiers import KVTierLevel, KVTiers
from planner.contracts.serving import EngineConfig
from planner.sim import engine as E  # noqa: N812
from planner.sim.config import RouterName, SimConfig
from planner.sim.reference import reference_shard
from planner.sim.replay import ShardOutput, engine_setup, make_shard_tasks, simulate_shard
from planner.sim.testing import LinearPerf, make_trace, poisson_trace

KVB = LinearPerf().kv_token_bytes


def _gb(tokens: int) -> float:
    """Capacity in GB per GPU that holds ``tokens`` tokens of LinearPerf's KV."""
    return tokens * KVB / 1e9


def _level(name: str, tokens: int, gbps: float = 50.0, shared: bool = False) -> KVTierLevel:
    return KVTierLevel(name, _gb(tokens), gbps, 2e-5, shared)


def _both(trace, perf, cfg) -> tuple[ShardOutput, ShardOutput]:  # type: ignore[no-untyped-def]
    setup = engine_setup(perf, trace, cfg)
    task = make_shard_tasks(trace, cfg)[0]
    return simulate_shard(task, setup, cfg), reference_shard(task, setup, cfg)


def _agree(fast: ShardOutput, ref: ShardOutput) -> None:
    np.testing.assert_allclose(fast.rf, ref.rf, rtol=0, atol=1e-9)
    for f in (E.R_REP, E.R_PREEMPT, E.R_CACHED, E.R_GEN, E.R_T1, E.R_T2, E.R_T3):
        np.testing.assert_array_equal(fast.rq[:, f], ref.rq[:, f])
    np.testing.assert_array_equal(fast.steps, ref.steps)
    assert fast.violations == 0


TIER_SETS = {
    "dram": (_level("dram", 20_000),),
    "dram+ssd": (_level("dram", 6_000), _level("ssd", 40_000, gbps=6.0)),
    "dram+ssd+remote": (_level("dram", 4_000), _level("ssd", 8_000, gbps=6.0),
                        _level("remote", 60_000, gbps=24.0, shared=True)),
}


@pytest.mark.parametrize("levels", list(TIER_SETS), ids=str)
@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "blocking"])
def test_tiers_match_the_reference_and_serve_hits(levels: str, overlap: bool) -> None:
    trace = poisson_trace(500, 30.0, 3, prefix_groups=40)
    replicas = 1 if "remote" in levels else 2  # a shared pool is exact against the reference on one replica
    cfg = SimConfig(replicas=replicas, router=RouterName.LEAST_OUTSTANDING,
                    engine=EngineConfig(max_num_seqs=64, max_batched_tokens=2048),
                    kv_tiers=KVTiers(TIER_SETS[levels], overlap=overlap))
    fast, ref = _both(trace, LinearPerf(kv_tokens=8_000), cfg)
    _agree(fast, ref)
    from_tiers = fast.rq[:, E.R_T1:E.R_T3 + 1].sum(axis=0)
    assert from_tiers[0] > 0  # the first tier served hits HBM had lost
    if "ssd" in levels:
        assert from_tiers[1] > 0
    assert (fast.rq[:, E.R_T1:E.R_T3 + 1].sum(axis=1) <= fast.rq[:, E.R_CACHED]).all()


def test_tiers_raise_the_hit_ratio_and_cut_ttft() -> None:
    trace = poisson_trace(500, 30.0, 3, prefix_groups=40)
    base = SimConfig(replicas=1, engine=EngineConfig(max_num_seqs=64, max_batched_tokens=2048))
    perf = LinearPerf(kv_tokens=8_000)
    hbm, _ = _both(trace, perf, base)
    tiered, _ = _both(trace, perf, SimConfig(replicas=1, engine=base.engine,
                                              kv_tiers=KVTiers(TIER_SETS["dram"])))
    assert tiered.rq[:, E.R_CACHED].sum() > 1.5 * hbm.rq[:, E.R_CACHED].sum()
    arr = trace.df["arrival_s"].to_numpy()
    ttft = lambda o: np.nanmean(o.rf[:, E.F_FIRST] - arr)  # noqa: E731
    assert ttft(tiered) < ttft(hbm)


def test_blocking_loads_are_slower_than_overlapped_ones() -> None:
    trace = poisson_trace(300, 30.0, 5, prefix_groups=20)
    eng = EngineConfig(max_num_seqs=64, max_batched_tokens=2048)
    slow = (_level("dram", 20_000, gbps=0.5),)  # a slow link: loads dominate the steps they join
    over, _ = _both(trace, LinearPerf(kv_tokens=8_000), SimConfig(replicas=1, engine=eng,
                                                                   kv_tiers=KVTiers(slow, overlap=True)))
    block, _ = _both(trace, LinearPerf(kv_tokens=8_000), SimConfig(replicas=1, engine=eng,
                                                                    kv_tiers=KVTiers(slow, overlap=False)))
    assert block.busy_s.sum() > over.busy_s.sum()


def test_cost_aware_skips_a_tier_slower_than_recomputation() -> None:
    trace = poisson_trace(300, 30.0, 5, prefix_groups=20)
    eng = EngineConfig(max_num_seqs=64, max_batched_tokens=2048)
    # LinearPerf recomputes a token in about 2e-5 s; 0.5 GB/s loads 131 KB in 2.6e-4 s, 50 GB/s in 2.6e-6 s
    levels = (_level("ssd", 20_000, gbps=0.5), _level("remote", 60_000, gbps=50.0, shared=True))
    for cost_aware in (False, True):
        cfg = SimConfig(replicas=1, engine=eng, kv_tiers=KVTiers(levels, cost_aware=cost_aware))
        fast, ref = _both(trace, LinearPerf(kv_tokens=8_000), cfg)
        _agree(fast, ref)
        used = fast.rq[:, E.R_T1:E.R_T3 + 1].sum(axis=0)
        if cost_aware:
            assert used[0] == 0 and used[2] > 0  # the slow local tier is never read, the fast pool is
        else:
            assert used[0] > 0


def test_a_shared_pool_serves_a_prefix_another_replica_computed() -> None:
    # replica 0 computes a 4-block prompt, then fills its HBM with other prompts (evicting it to the pool);
    # the same prompt routed to replica 1 (round robin) is then loaded from the pool, not recomputed
    hb = 16
    first = [1, 2, 3, 4]
    fillers = [[100 + 10 * i + j for j in range(4)] for i in range(6)]
    hashes = [first, *[f for f in fillers for _ in (0,)], first]
    n = len(hashes)
    arrival = np.arange(n, dtype=np.float64) * 2.0
    trace = make_trace(arrival, np.full(n, 4 * hb), np.full(n, 2), prefix_hashes=hashes, block_size=hb)
    cfg = SimConfig(replicas=2, router=RouterName.ROUND_ROBIN, engine=EngineConfig(block_size=hb),
                    kv_tiers=KVTiers((_level("remote", 10_000, shared=True),)))
    fast = simulate_shard(make_shard_tasks(trace, cfg)[0], engine_setup(LinearPerf(kv_tokens=8 * hb), trace,
                                                                        cfg), cfg)
    last = n - 1
    assert fast.rq[last, E.R_REP] != fast.rq[0, E.R_REP] or n % 2 == 1
    assert fast.rq[last, E.R_T3] > 0
    assert fast.rq[last, E.R_CACHED] == 4 * hb - 1  # the whole prompt but its last token came from the pool


def test_a_request_that_fits_nowhere_is_rejected_with_its_reason() -> None:
    from planner.sim import replay
    from planner.sim.summary_rows import summary_rows

    trace = make_trace(np.array([0.0, 1.0, 2.0]), np.array([100, 5000, 300]), np.array([10, 10, 10]))
    cfg = SimConfig(replicas=1, kv_tiers=KVTiers((_level("dram", 100_000),)))
    res = replay(trace, LinearPerf(kv_tokens=1000), config=cfg)
    assert res.summary.rejected == 1 and res.summary.longest_rejected_tokens == 5010
    row = dict(summary_rows(res))["rejected: fit nowhere"]
    assert row.startswith("1 request needs more KV than a replica's HBM holds (1,000 tokens; the "
                          "longest 5,010)")


@pytest.mark.parametrize("prefix", [True, False], ids=["prefix", "no-prefix"])
def test_swap_preemption_copies_kv_out_and_back_instead_of_recomputing(prefix: bool) -> None:
    trace = poisson_trace(400, 40.0, 7, prefix_groups=30 if prefix else 0)
    eng = EngineConfig(max_num_seqs=64, max_batched_tokens=2048)
    dram = (_level("dram", 20_000),)
    out = {}
    for swap_tokens in (0, 30_000):
        cfg = SimConfig(replicas=1, engine=eng, kv_tiers=KVTiers(dram, swap_gb=_gb(swap_tokens)))
        fast, ref = _both(trace, LinearPerf(kv_tokens=6_000), cfg)
        _agree(fast, ref)
        assert fast.rq[:, E.R_PREEMPT].sum() > 0  # the case preempts
        assert (fast.rq[:, E.R_SWAP] == 0).all()  # everything swapped out came back
        out[swap_tokens] = fast
    # swapped KV is copied back, not recomputed: fewer prompt tokens go through the GPU
    prefill = {k: float(o.ts[:, :, E.T_PREFILL].sum()) for k, o in out.items()}
    assert prefill[30_000] < prefill[0]


def test_swap_space_needs_a_host_tier() -> None:
    from traces.errors import InputError

    with pytest.raises(InputError, match="needs a host tier"):
        KVTiers((_level("remote", 1000, shared=True),), swap_gb=4.0)


def test_tiers_are_reported_when_the_replay_runs_in_the_event_loop() -> None:
    # faults (or autoscaling, or power) send a replay through the cluster loop: the tier rows come along
    from planner.sim import replay
    from planner.sim.faults import FaultConfig

    trace = poisson_trace(500, 30.0, 3, prefix_groups=40)
    eng = EngineConfig(max_num_seqs=64, max_batched_tokens=2048)
    tiers = KVTiers(TIER_SETS["dram"])
    plain = replay(trace, LinearPerf(kv_tokens=8_000),
                   config=SimConfig(replicas=1, engine=eng, kv_tiers=tiers))
    loop = replay(trace, LinearPerf(kv_tokens=8_000),
                  config=SimConfig(replicas=1, engine=eng, kv_tiers=tiers, faults=FaultConfig(())))
    assert [t.name for t in loop.summary.kv_tiers] == ["dram"]
    assert loop.summary.kv_tiers[0].hit_tokens == plain.summary.kv_tiers[0].hit_tokens > 0
    assert loop.summary.cached_prefix_tokens == plain.summary.cached_prefix_tokens

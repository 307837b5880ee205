"""Routers, the prefix cache on a real trace with shared prefixes, and shard-count independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.sim import EngineConfig, RouterName, SimConfig, replay
from planner.sim.testing import LinearPerf, make_trace, poisson_trace
from traces.load import load_trace


def test_round_robin_spreads_evenly() -> None:
    res = replay(poisson_trace(400, 20.0, 1), LinearPerf(), config=SimConfig(replicas=4,
                                                                              router=RouterName.ROUND_ROBIN))
    counts = np.bincount(res.requests["replica"].to_numpy(), minlength=4)
    assert counts.tolist() == [100, 100, 100, 100]


def test_least_outstanding_avoids_the_busy_replica() -> None:
    # one huge request first, then short ones: least-outstanding keeps them off the busy replica
    inp = np.array([4000] + [50] * 40)
    out = np.array([2000] + [5] * 40)
    arrival = np.concatenate([[0.0], 0.5 + np.arange(40) * 0.2])
    trace = make_trace(arrival, inp, out)
    res = replay(trace, LinearPerf(), config=SimConfig(replicas=2, router=RouterName.LEAST_OUTSTANDING))
    rep = res.requests["replica"].to_numpy()
    assert (rep[1:] != rep[0]).all()
    rr = replay(trace, LinearPerf(), config=SimConfig(replicas=2, router=RouterName.ROUND_ROBIN))
    assert (rr.requests["replica"].to_numpy()[1:] == rep[0]).sum() == 20


def test_power_of_two_is_seeded() -> None:
    trace = poisson_trace(300, 30.0, 2)
    a = replay(trace, LinearPerf(), config=SimConfig(replicas=8, router=RouterName.POWER_OF_TWO, seed=1))
    b = replay(trace, LinearPerf(), config=SimConfig(replicas=8, router=RouterName.POWER_OF_TWO, seed=1))
    c = replay(trace, LinearPerf(), config=SimConfig(replicas=8, router=RouterName.POWER_OF_TWO, seed=2))
    assert a.requests.equals(b.requests)
    assert not a.requests["replica"].equals(c.requests["replica"])


def test_prefix_affinity_keeps_groups_together_and_hits_the_cache() -> None:
    # 64 prompt families, caches that hold only a few of them: locality decides the hit rate
    trace = poisson_trace(3000, 30.0, 3, prefix_groups=64)
    perf = LinearPerf(kv_tokens=40_000)
    aff = replay(trace, perf, config=SimConfig(replicas=8, router=RouterName.PREFIX_AFFINITY))
    lor = replay(trace, perf, config=SimConfig(replicas=8))
    groups = (trace.df["prefix_hashes"].list.first().to_numpy() // 100_000).astype(int)
    rep = aff.requests["replica"].to_numpy()
    for g in range(64):
        assert len(set(rep[groups == g].tolist())) <= 2  # two hash candidates per group
    assert aff.summary.cached_prefix_tokens > 1.3 * lor.summary.cached_prefix_tokens
    off = replay(trace, perf, config=SimConfig(
        replicas=8, router=RouterName.PREFIX_AFFINITY, engine=EngineConfig(enable_prefix_caching=False)))
    assert off.summary.cached_prefix_tokens == 0
    assert aff.requests["ttft_s"].mean() < off.requests["ttft_s"].mean()  # type: ignore[operator]


def _infinite_cache_hits(hash_lists: list[list[int]], block: int, inp: list[int]) -> int:
    """Prompt tokens an unbounded, always-warm single cache would serve (leading blocks seen before)."""
    seen: set[int] = set()
    total = 0
    for hs, n in zip(hash_lists, inp, strict=True):
        lead = 0
        full = n // block
        while lead < min(len(hs), full) and hs[lead] in seen:
            lead += 1
        total += min(lead * block, n - 1)
        seen.update(hs)
    return total


def test_prefix_cache_on_mooncake(shared_traces: Path) -> None:
    trace = load_trace(shared_traces / "mooncake" / "synthetic_trace.jsonl")
    bound = _infinite_cache_hits(trace.df["prefix_hashes"].to_list(), 512, trace.df["input_tokens"].to_list())
    hits = []
    for kv_tokens in (1_000_000, 4_000_000, 40_000_000):
        res = replay(trace, LinearPerf(kv_tokens=kv_tokens), config=SimConfig(replicas=1))
        s = res.summary
        assert s.violations == 0 and s.completed == trace.num_requests
        hits.append(s.cached_prefix_tokens)
        cached = res.requests["cached_prefix_tokens"].to_numpy()
        inp = res.requests["input_tokens"].to_numpy()
        assert ((cached % 512 == 0) | (cached == inp - 1)).all()
    assert bound > 0.5 * s.prompt_tokens  # Mooncake shares long prefixes
    assert hits[0] < hits[1] < hits[2] <= bound  # a bigger LRU keeps more, never more than infinite
    assert hits[2] >= 0.99 * bound  # a cache that holds the whole trace gets (nearly) every hit


@pytest.mark.parametrize("shards", [2, 3])
def test_hash_router_results_do_not_depend_on_shards(shards: int) -> None:
    trace = poisson_trace(1500, 60.0, 4, prefix_groups=3)
    one = replay(trace, LinearPerf(kv_tokens=40_000), config=SimConfig(replicas=6, router=RouterName.HASH))
    many = replay(trace, LinearPerf(kv_tokens=40_000),
                  config=SimConfig(replicas=6, router=RouterName.HASH, shards=shards))
    assert one.requests.equals(many.requests)

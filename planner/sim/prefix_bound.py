"""How much prompt reuse a trace offers a fleet: the hit ratio one LRU prefix cache holding the whole
fleet's KV capacity would reach on the same request sequence.

Why a bound: a router's prefix hit ratio (tokens served from cache over prompt tokens) means little alone;
next to what an ideal cache of the same total size reaches on the same requests, it says how much reuse
the routing left on the table. The ideal cache here sees every request in arrival order, keeps each
prompt's blocks (the trace's ``prefix_hashes``, each hash naming its whole prefix) as soon as the
request arrives, and evicts least recently used blocks; a request hits its leading blocks that are
cached, up to the first miss. It ignores that KV is freed and rebuilt while requests run and that the
fleet's capacity is split across replicas, so routed engines stay under it, up to bookkeeping details
(on the bundled hour one replica hits 22.30 % against 22.26 %).

>>> import polars as pl
>>> from traces.schema import RequestTrace, TraceMeta
>>> df = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "input_tokens": [128, 128, 192],
...                    "output_tokens": [8, 8, 8], "prefix_hashes": [[1, 2], [1, 2], [1, 2, 3]]},
...                   schema_overrides={"prefix_hashes": pl.List(pl.UInt64)})
>>> tr = RequestTrace(df, TraceMeta(source="t", format="canonical", block_size=64))
>>> round(prefix_hit_ratio_bound(tr, capacity_tokens=1024) or 0.0, 4)  # 128 + 128 of 448 tokens
0.5714
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from planner.contracts.kv_tiers import KVTiers
from planner.perf.api import ReplicaPerf
from planner.sim.result import SimResult
from traces.schema import RequestTrace


def prefix_hit_ratio_bound(trace: RequestTrace, *, capacity_tokens: float) -> float | None:
    """The ideal LRU cache's hit ratio (see the module docstring); None without prefix hashes.

    Args:
        trace: the requests, in arrival order.
        capacity_tokens: the fleet's KV capacity in tokens (replicas x a replica's KV tokens).
    """
    bs = trace.meta.block_size
    if "prefix_hashes" not in trace.df.columns or not bs:
        return None
    capacity = max(int(capacity_tokens // bs), 0)
    cache: OrderedDict[int, None] = OrderedDict()
    hit = 0
    total = 0
    for blocks, tokens in zip(trace.df["prefix_hashes"].to_list(), trace.df["input_tokens"].to_list(),
                              strict=True):
        total += int(tokens)
        if not blocks:
            continue
        lead = 0
        for h in blocks:
            if h not in cache:
                break
            lead += 1
        hit += min(lead * bs, int(tokens))
        for h in blocks:
            cache[h] = None
            cache.move_to_end(h)
        while len(cache) > capacity:
            cache.popitem(last=False)
    return hit / total if total else None


def fleet_kv_tokens(perf: ReplicaPerf, replicas: int, tiers: KVTiers | None) -> float:
    """KV tokens the whole fleet holds: every replica's HBM plus, with tiers, every tier's capacity (a
    shared pool once): the capacity of the bound's ideal cache."""
    hbm = float(replicas * perf.kv_capacity_tokens)
    if tiers is None:
        return hbm
    return hbm + tiers.capacity_tokens(float(perf.kv_bytes_per_token), perf.gpus, replicas)


def with_prefix_bound(result: SimResult, trace: RequestTrace, *, capacity_tokens: float) -> SimResult:
    """``result`` with its summary's ``prefix_hit_ratio_bound`` filled in for ``trace``."""
    bound = prefix_hit_ratio_bound(trace, capacity_tokens=capacity_tokens)
    return replace(result, summary=replace(result.summary, prefix_hit_ratio_bound=bound))

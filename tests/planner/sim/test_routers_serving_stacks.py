"""The routers serving stacks run, request by request: SGLang's cache-aware policy and DualMap.

Every case is small and hand-made: long outputs keep each request outstanding for the whole case (loads
only grow), and each test states the replica every request goes to and why.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from planner.sim import EngineConfig, RouterName, SimConfig, replay
from planner.sim.config import RouterOptions
from planner.sim.replay import make_shard_tasks, splitmix64_np
from planner.sim.testing import LinearPerf, make_trace
from traces.schema import RequestTrace

BS = 16


def _replicas(hashes: list[list[int]], cfg: SimConfig, *, out: int = 500) -> list[int]:
    """Where each request (``hashes[i]``: its prefix blocks, one every 10 ms) went."""
    n = len(hashes)
    trace = make_trace(np.arange(n) * 0.01, np.array([len(h) * BS for h in hashes]), np.full(n, out),
                       prefix_hashes=hashes, block_size=BS)
    return replay(trace, LinearPerf(), config=cfg).requests["replica"].to_list()  # type: ignore[no-any-return]


def _sglang(**opts: int) -> SimConfig:
    return SimConfig(replicas=4, router=RouterName.SGLANG_CACHE_AWARE, router_options=RouterOptions(**opts))


def test_sglang_smallest_record_then_best_match_then_least_loaded_when_imbalanced() -> None:
    conv = list(range(200, 210))  # a conversation that grows one block a turn
    hashes = [
        [100, 101, 102, 103],  # nothing recorded anywhere: smallest record (all 0), least loaded: r0
        conv[:4],  # matches nothing: the smallest record, r1 (r0 now holds 4 blocks)
        [300, 301, 302, 303],  # r2
        [400, 401, 402, 403],  # r3
        conv[:5],  # 4 of its 5 blocks recorded on r1: 0.8 > 0.3, the best match
        [300, 500, 501, 502, 503],  # 1 of 5 on r2 is not above 0.3: smallest record (r0, r2, r3 hold 4
        # blocks each, all with one request): r0
        conv[:6],  # best match r1 (loads 2, 2, 1, 1)
        conv[:7],  # r1 again (loads 2, 3, 1, 1: max - min = 2 is not above 2)
        conv[:8],  # loads 2, 4, 1, 1: 4 - 1 > 2 and 4 > 1.5 x 1: imbalanced, the least loaded: r2
        conv[:9],  # loads 2, 4, 2, 1: still imbalanced: r3
        conv[:10],  # loads 2, 4, 2, 2: balanced; r3's record (9 blocks, from the turn before) beats r2's
        # (8) and r1's (7): the router's record, not any cache, decides
    ]
    got = _replicas(hashes, _sglang(balance_abs_threshold=2))
    assert got == [0, 1, 2, 3, 1, 0, 1, 1, 2, 3, 3]


def test_sglang_default_thresholds_keep_a_growing_conversation_home() -> None:
    # the same start with SGLang's defaults (64 / 1.5): the balancer stays off, the turns stay on r1
    conv = list(range(200, 210))
    hashes = [[100, 101, 102, 103], conv[:4], [300, 301, 302, 303], [400, 401, 402, 403],
              *(conv[:k] for k in range(5, 11))]
    assert _replicas(hashes, _sglang()) == [0, 1, 2, 3, 1, 1, 1, 1, 1, 1]


def test_sglang_record_is_lru_bounded_and_keeps_the_leading_blocks() -> None:
    # a record of 4 blocks per replica: r0 keeps [1..4] of the 6-block turn (its leaves go first), so the
    # 18-block follow-up matches 4/18 (not above 0.3) and goes to a smallest record (all 4 blocks; the
    # least loaded: r1); unbounded, r0 holds 6/18 > 0.3 and the turn stays there
    follow = [1, 2, 3, 4, 5, 6, *range(7, 19)]
    hashes = [[1, 2, 3, 4], [10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33], [1, 2, 3, 4, 5, 6], follow]
    assert _replicas(hashes, _sglang(tree_blocks=4)) == [0, 1, 2, 3, 0, 1]
    assert _replicas(hashes, _sglang()) == [0, 1, 2, 3, 0, 0]


def test_sglang_shared_first_block_matches_every_replica_alike() -> None:
    # two-block prompts behind one shared block: the shared block alone is half the prompt (above 0.3);
    # were it matched only where it was first recorded, every request would go to r0 until 64 were
    # outstanding there. It is a hot spot (planner.sim.affinity), counted as held everywhere: every
    # replica ties on the match and the least loaded wins, one each in turn
    hashes = [[7, 1000 + i] for i in range(8)]
    assert _replicas(hashes, _sglang()) == [0, 1, 2, 3, 0, 1, 2, 3]


def _session_trace(n: int, inp: int, out: int) -> RequestTrace:
    """``n`` requests of one chat session, 10 ms apart, no prefix hashes (DualMap keys the session)."""
    tr = make_trace(np.arange(n) * 0.01, np.full(n, inp), np.full(n, out))
    return RequestTrace(tr.df.with_columns(pl.lit("s1").alias("session_id")), tr.meta)


def _candidates(trace: RequestTrace, cfg: SimConfig) -> tuple[int, int, list[int]]:
    """DualMap's two candidates for the session (as the engine hashes them) and the other replicas."""
    key = make_shard_tasks(trace, cfg)[0].affinity_key[:1]
    h1 = splitmix64_np(key)
    r = cfg.replicas
    c1 = int(h1[0] % np.uint64(r))
    c2 = int(splitmix64_np(h1)[0] % np.uint64(r - 1))
    c2 += 1 if c2 >= c1 else 0
    return c1, c2, [x for x in range(r) if x not in (c1, c2)]


def test_dualmap_switches_to_the_least_queued_replica_when_the_queue_breaks_the_ttft_target() -> None:
    # one sequence per replica, so requests queue; a TTFT target of 1 ms at 10 us per queued token
    cfg = SimConfig(replicas=4, router=RouterName.DUALMAP, engine=EngineConfig(max_num_seqs=1),
                    router_options=RouterOptions(ttft_slo_s=0.001, prefill_s_per_token=1e-5,
                                                 hotspot_factor=100.0))
    trace = _session_trace(6, 200, 500)
    c1, c2, (o1, o2) = _candidates(trace, cfg)
    got = replay(trace, LinearPerf(), config=cfg).requests["replica"].to_list()
    # c1 (all equal); c2 (no queue either, fewer outstanding); c1 (tie): it waits, 200 tokens queued;
    # c2 (fewer queued); then both candidates have 200 tokens queued, 2 ms > 1 ms: the least queued
    # replica (o1, then o2 with fewer outstanding)
    assert got == [c1, c2, c1, c2, o1, o2]
    relaxed = SimConfig(replicas=4, router=RouterName.DUALMAP, engine=EngineConfig(max_num_seqs=1))
    assert set(replay(trace, LinearPerf(), config=relaxed).requests["replica"].to_list()) == {c1, c2}


def test_dualmap_spills_a_hot_spot() -> None:
    trace = _session_trace(5, 200, 500)
    tight = SimConfig(replicas=4, router=RouterName.DUALMAP, router_options=RouterOptions(hotspot_factor=1.0))
    c1, c2, (o1, o2) = _candidates(trace, tight)
    # cap = ceil(1.0 x (outstanding + 1) / 4): 1, 1, 1, 1, 2. c1; c1 would hold 2 > 1: c2; both would:
    # the least loaded (o1, o2); at 4 outstanding the cap is 2 and the pair takes the next (c1)
    assert replay(trace, LinearPerf(), config=tight).requests["replica"].to_list() == [c1, c2, o1, o2, c1]
    # the default 2 x fair share: the session stays on its two candidates
    default = SimConfig(replicas=4, router=RouterName.DUALMAP)
    assert replay(trace, LinearPerf(), config=default).requests["replica"].to_list() == [c1, c2, c1, c2, c1]

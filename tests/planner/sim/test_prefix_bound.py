"""The ideal-LRU prefix reference next to what the replay's routers reach (issue 21's yardstick)."""

from __future__ import annotations

import json

import pytest

from planner.autoscale.workloads import shared_traces_root
from planner.cli.main import main
from planner.perf.model import RooflinePerf
from planner.sim.prefix_bound import prefix_hit_ratio_bound
from traces.default import default_trace
from traces.schema import RequestTrace

MOONCAKE = shared_traces_root() / "mooncake" / "synthetic_trace.jsonl"


def test_a_bigger_cache_never_hits_less_and_no_hashes_means_no_bound() -> None:
    tr = default_trace()
    small, big = (prefix_hit_ratio_bound(tr, capacity_tokens=c) for c in (2_048.0, 2_000_000.0))
    assert small is not None and big is not None and 0.0 <= small <= big < 1.0
    assert 0.2 < big < 0.25  # the bundled hour's system prompts (its docstring: about 0.22)
    assert prefix_hit_ratio_bound(type(tr)(tr.df.drop("prefix_hashes"), tr.meta), capacity_tokens=1e6) is None


def test_replay_json_states_the_hit_ratio_and_the_ideal_cache(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--replicas", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["prefix_hit_ratio"] == pytest.approx(doc["cached_prefix_tokens"] / doc["prompt_tokens"])
    assert 0.15 < doc["prefix_hit_ratio"] <= doc["prefix_hit_ratio_bound"] + 0.01


@pytest.mark.skipif(not MOONCAKE.is_file(), reason="the shared Mooncake trace is not here (../shared)")
def test_on_mooncake_the_routers_reach_a_fraction_of_the_ideal(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured 2026-12-07 (8 x TP4 70B): least-outstanding 5.8 %, prefix-affinity 22.0 %, precise-prefix
    33.1 %, ideal 36.4 %; TTFT p99 14.3 / 16.2 / 11.6 s. Issue 21's bar: the best router at 80 % of the
    ideal with a TTFT p99 no worse than least-outstanding's. Measured 2026-12-07: sglang-cache-aware 35.0 %,
    TTFT p99 13.5 s; dualmap 21.5 %, 9.1 s (its TTFT switch sends queued-up requests elsewhere, at a cost in
    reuse)."""
    got = {}
    for router in ("least-outstanding", "prefix-affinity", "precise-prefix", "sglang-cache-aware", "dualmap"):
        assert main(["replay", "--trace", str(MOONCAKE), "--model", "Llama-3.1-70B", "--tp", "4",
                     "--replicas", "8", "--router", router, "--json"]) == 0
        got[router] = json.loads(capsys.readouterr().out)
    bound = got["prefix-affinity"]["prefix_hit_ratio_bound"]
    assert 0.3 < bound < 0.45 and bound == got["least-outstanding"]["prefix_hit_ratio_bound"]
    assert got["least-outstanding"]["prefix_hit_ratio"] < got["prefix-affinity"]["prefix_hit_ratio"] < bound
    best = got["precise-prefix"]
    assert best["prefix_hit_ratio"] >= 0.8 * bound
    ttft = {r: d["classes"][0]["ttft_p99_s"] for r, d in got.items()}
    assert ttft["precise-prefix"] <= ttft["least-outstanding"]
    assert got["sglang-cache-aware"]["prefix_hit_ratio"] >= 0.8 * bound
    assert ttft["sglang-cache-aware"] <= ttft["least-outstanding"]
    assert got["least-outstanding"]["prefix_hit_ratio"] < got["dualmap"]["prefix_hit_ratio"]
    assert ttft["dualmap"] < ttft["precise-prefix"]


@pytest.mark.parametrize("router", ["prefix-affinity", "precise-prefix", "sglang-cache-aware", "dualmap"])
def test_cache_routers_do_not_collapse_when_every_request_shares_its_first_block(router: str) -> None:
    """A common system prompt in front of every prompt: keyed on the first block, every request would
    hash to the same two replicas (prefix-affinity, dualmap), or score highest wherever that block was first
    cached (precise-prefix) or first recorded (sglang-cache-aware); leaving hot blocks out (counting them
    as held everywhere, for sglang), the load spreads and the reuse stays."""
    import numpy as np
    import polars as pl

    from planner.catalog import load_catalog
    from planner.perf import build_replica_perf
    from planner.sim import RouterName, SimConfig, replay
    from planner.sim.affinity import affinity_blocks

    tr = default_trace()
    common = pl.lit([np.uint64(0xC0FFEE)], dtype=pl.List(pl.UInt64))
    prepended = pl.concat_list(common, pl.col("prefix_hashes")).alias("prefix_hashes")
    shared = type(tr)(tr.df.with_columns(prepended), tr.meta)
    lists = shared.df["prefix_hashes"]
    offsets = np.concatenate([[0], np.cumsum(lists.list.len().to_numpy())]).astype(np.int64)
    keys = affinity_blocks(lists.explode().to_numpy().astype(np.uint64), offsets, replicas=8)
    assert (keys == 0xC0FFEE).mean() < 0.01  # the shared block keys almost nothing
    perf = build_replica_perf(load_catalog().model("Llama-3.1-8B"), load_catalog().gpu("H100-SXM"))
    res = replay(shared, perf, config=SimConfig(replicas=8, router=RouterName(router)))
    per_replica = np.bincount(res.requests["replica"].to_numpy(), minlength=8) / shared.num_requests
    assert (per_replica > 0.05).sum() >= 6 and per_replica.max() < 0.3
    bound = prefix_hit_ratio_bound(shared, capacity_tokens=8 * perf.kv_capacity_tokens)
    assert bound is not None and res.summary.prefix_hit_ratio >= 0.5 * bound


def test_precise_prefix_follows_the_cache_and_spreads_what_shares_nothing() -> None:
    """Replica 0 caches a long prompt; a request that extends it goes there (3 x its held share beats 2 x
    the queue score), while requests sharing nothing spread by queue and load."""
    import numpy as np

    from planner.sim import RouterName, SimConfig, replay
    from planner.sim.testing import LinearPerf, make_trace

    bs = 16
    convo = list(range(1000, 1040))  # a 40-block conversation
    hashes = [convo, [7, 8], [9, 10], [11, 12], [*convo, 2000, 2001]]
    inp = np.array([len(h) * bs for h in hashes])
    trace = make_trace(np.array([0.0, 0.01, 0.02, 0.03, 20.0]), inp, np.array([5, 5, 5, 5, 5]),
                       prefix_hashes=hashes, block_size=bs)
    res = replay(trace, LinearPerf(), config=SimConfig(replicas=4, router=RouterName.PRECISE_PREFIX))
    rep = res.requests["replica"].to_list()
    assert len(set(rep[:4])) == 4  # nothing cached to share: by load, one each
    assert rep[4] == rep[0]  # the next turn goes where its conversation is cached
    assert res.requests["cached_prefix_tokens"].to_list()[4] == 40 * bs


def test_on_multi_turn_chat_precise_prefix_reaches_the_ideal_with_a_lower_ttft() -> None:
    """A synthetic chat half hour (sessions extending their context, one 2,000-token system prompt every
    session shares): measured 2026-12-07 on 4 x H100 8B: hit ratio least-outstanding 70.1 %,
    prefix-affinity 82.4 %, precise-prefix 89.3 % of an ideal 89.4 %; TTFT p99 283 / 154 / 93 ms."""
    from planner.sim import RouterName, SimConfig, replay

    chat, perf = _chat(seed=1)
    got = {r: replay(chat, perf, config=SimConfig(replicas=4, router=r))
           for r in (RouterName.LEAST_OUTSTANDING, RouterName.PRECISE_PREFIX)}
    bound = prefix_hit_ratio_bound(chat, capacity_tokens=4 * perf.kv_capacity_tokens)
    assert bound is not None and bound > 0.8
    lo, best = got[RouterName.LEAST_OUTSTANDING].summary, got[RouterName.PRECISE_PREFIX].summary
    assert best.prefix_hit_ratio >= 0.8 * bound and best.prefix_hit_ratio > lo.prefix_hit_ratio
    assert best.classes[0].ttft_p99_s <= lo.classes[0].ttft_p99_s


def test_on_multi_turn_chat_the_serving_stack_routers_against_the_ideal_and_least_outstanding() -> None:
    """Fifteen minutes of chat (:func:`_chat`, seed 1, 4 x H100 8B), measured 2026-12-07: hit ratio (ideal
    88.5 %) least-outstanding 72.2 %, precise-prefix 88.4 %, sglang-cache-aware 88.4 %, dualmap 81.7 %;
    TTFT p99 225 / 87 / 87 / 165 ms. SGLang's record of what it sent where is as good as reading the caches
    here (turns follow their history; new sessions, whose only match is the shared system prompt, spread
    by load). DualMap splits a session over its two candidates (the less queued, then less loaded, each
    turn), as prefix-affinity does; at this load no queue nears the 2 s target, so its TTFT switch and
    hot-spot spill stay idle and it lands where prefix-affinity does."""
    from planner.sim import RouterName, SimConfig, replay

    chat, perf = _chat(seed=1)
    routers = (RouterName.LEAST_OUTSTANDING, RouterName.PRECISE_PREFIX, RouterName.SGLANG_CACHE_AWARE,
               RouterName.DUALMAP)
    got = {r: replay(chat, perf, config=SimConfig(replicas=4, router=r)).summary for r in routers}
    bound = prefix_hit_ratio_bound(chat, capacity_tokens=4 * perf.kv_capacity_tokens)
    assert bound is not None and bound > 0.8
    hit = {r: s.prefix_hit_ratio for r, s in got.items()}
    p99 = {r: s.classes[0].ttft_p99_s for r, s in got.items()}
    lo = RouterName.LEAST_OUTSTANDING
    sg, dm = RouterName.SGLANG_CACHE_AWARE, RouterName.DUALMAP
    assert all(h <= bound + 0.005 for h in hit.values())
    assert hit[sg] >= 0.95 * bound and hit[sg] >= hit[RouterName.PRECISE_PREFIX] - 0.01
    assert hit[lo] < hit[dm] < hit[sg]
    assert p99[sg] < 0.5 * p99[lo] and p99[dm] < p99[lo]


def test_session_affinity_keeps_conversations_home_within_bounded_loads() -> None:
    """Consistent hashing with bounded loads on the chat sessions: most turns stay on their session's home
    replica (their history stays cached; measured 79 %: at a few outstanding requests per replica the
    1.25 x bound spills often), none of the replicas takes far more than its share, and the reuse beats
    least-outstanding's (on the README's chat half hour: 81.3 % against 70.1 %, TTFT p99 197 vs 283 ms)."""
    import numpy as np
    import polars as pl

    from planner.sim import RouterName, SimConfig, replay

    chat, perf = _chat(seed=2)
    res = {r: replay(chat, perf, config=SimConfig(replicas=4, router=r))
           for r in (RouterName.SESSION_AFFINITY, RouterName.LEAST_OUTSTANDING)}
    req = res[RouterName.SESSION_AFFINITY].requests.with_columns(chat.df["session_id"])
    homes = req.group_by("session_id").agg(pl.col("replica").mode().first().alias("home"),
                                           pl.len().alias("turns"))
    at_home = req.join(homes, on="session_id").select((pl.col("replica") == pl.col("home")).mean()).item()
    assert at_home > 0.7
    share = np.bincount(req["replica"].to_numpy(), minlength=4) / req.height
    assert share.min() > 0.1 and share.max() < 0.45
    sa, lo = (res[r].summary for r in (RouterName.SESSION_AFFINITY, RouterName.LEAST_OUTSTANDING))
    assert sa.prefix_hit_ratio > lo.prefix_hit_ratio


def _chat(seed: int) -> tuple[RequestTrace, RooflinePerf]:
    """Fifteen minutes of synthetic chat (sessions extending their context behind one 2,000-token system
    prompt every session shares, short messages) and an 8B replica on an H100."""
    from planner.catalog import load_catalog
    from planner.perf import build_replica_perf
    from traces.synth import synthesize
    from traces.synth_spec import (
        IndependentLengths,
        LognormalLengths,
        PoissonArrivals,
        SessionSpec,
        SynthSpec,
    )

    spec = SynthSpec(
        arrivals=PoissonArrivals(rate=0.5), duration_s=900.0, seed=seed,
        lengths=IndependentLengths(input=LognormalLengths.from_mean_median(300, 150, max_tokens=32768),
                                   output=LognormalLengths.from_mean_median(250, 180, max_tokens=4096)),
        sessions=SessionSpec(mean_turns=6.0, mean_think_s=45.0, system_tokens=2000))
    cat = load_catalog()
    return synthesize(spec), build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))

"""The ideal-LRU prefix reference next to what the replay's routers reach (issue 21's yardstick)."""

from __future__ import annotations

import json

import pytest

from planner.autoscale.workloads import shared_traces_root
from planner.cli.main import main
from planner.sim.prefix_bound import prefix_hit_ratio_bound
from traces.default import default_trace

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
    """Measured 2026-12-07: least-outstanding 5.8 %, prefix-affinity 22.0 %, ideal 36.4 % (8 x TP4 70B)."""
    got = {}
    for router in ("least-outstanding", "prefix-affinity"):
        assert main(["replay", "--trace", str(MOONCAKE), "--model", "Llama-3.1-70B", "--tp", "4",
                     "--replicas", "8", "--router", router, "--json"]) == 0
        got[router] = json.loads(capsys.readouterr().out)
    bound = got["prefix-affinity"]["prefix_hit_ratio_bound"]
    assert 0.3 < bound < 0.45 and bound == got["least-outstanding"]["prefix_hit_ratio_bound"]
    assert got["least-outstanding"]["prefix_hit_ratio"] < got["prefix-affinity"]["prefix_hit_ratio"] < bound


def test_prefix_affinity_does_not_collapse_when_every_request_shares_its_first_block() -> None:
    """A common system prompt in front of every prompt: keyed on the first block, every request would
    hash to the same two replicas; keyed on the first block that is not a hot spot, the load spreads and
    the reuse stays."""
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
    res = replay(shared, perf, config=SimConfig(replicas=8, router=RouterName.PREFIX_AFFINITY))
    per_replica = np.bincount(res.requests["replica"].to_numpy(), minlength=8) / shared.num_requests
    assert (per_replica > 0.05).sum() >= 6 and per_replica.max() < 0.3
    bound = prefix_hit_ratio_bound(shared, capacity_tokens=8 * perf.kv_capacity_tokens)
    assert bound is not None and res.summary.prefix_hit_ratio >= 0.5 * bound

"""Several pools in one cluster (by model / SLO class) and prefill/decode disaggregation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.sim import EngineConfig, SimConfig, replay
from planner.sim.cluster import replay_cluster
from planner.sim.pools import ClusterConfig, KVLink, Pool, PoolRole, assign_pools
from planner.sim.testing import LinearPerf, poisson_trace
from traces.errors import InputError
from traces.schema import RequestTrace


def _with(tr: RequestTrace, name: str, values: list[str]) -> RequestTrace:
    return RequestTrace(tr.df.with_columns(pl.Series(name, values, dtype=pl.String)), tr.meta)


def test_pools_route_by_model_and_report_each() -> None:
    tr = poisson_trace(900, 30.0, 1)
    models = ["small" if i % 3 else "big" for i in range(tr.num_requests)]
    tr = _with(tr, "model", models)
    pools = [Pool("big", LinearPerf(base_s=0.02), SimConfig(replicas=2), models=("big",)),
             Pool("small", LinearPerf(), SimConfig(replicas=2), models=("small",))]
    res = replay_cluster(tr, pools, config=ClusterConfig())
    req = res.requests
    assert (req["pool"].to_numpy() == np.array(models)).all()
    by = {p.name: p for p in res.pools}
    assert by["big"].summary.requests == models.count("big")
    assert by["small"].summary.requests == models.count("small")
    assert by["big"].summary.classes[0].tpot_p50_s > by["small"].summary.classes[0].tpot_p50_s
    # replicas are numbered across pools: the big pool's requests never land on the small pool's
    big_reps = set(req.filter(pl.col("pool") == "big")["replica"].to_list())
    small_reps = set(req.filter(pl.col("pool") == "small")["replica"].to_list())
    assert big_reps == {0, 1} and small_reps == {2, 3}
    assert res.summary.completed == tr.num_requests
    assert res.summary.gpu_hours == pytest.approx(sum(p.summary.gpu_hours for p in res.pools))


def test_each_pool_matches_its_own_replay() -> None:
    """Pools share nothing without power or P/D: each pool is the replay of its own requests."""
    tr = _with(poisson_trace(600, 20.0, 2), "slo_class", ["hp" if i % 2 else "lp" for i in range(600)])
    pools = [Pool("hp", LinearPerf(), SimConfig(replicas=2), slo_classes=("hp",)),
             Pool("lp", LinearPerf(), SimConfig(replicas=1), slo_classes=("lp",), priority="lp")]
    res = replay_cluster(tr, pools, config=ClusterConfig())
    ids = np.flatnonzero(np.arange(600) % 2 == 1)
    alone = replay(RequestTrace(tr.df[ids.tolist()], tr.meta), LinearPerf(), config=SimConfig(replicas=2))
    np.testing.assert_allclose(res.requests["finish_s"].to_numpy()[ids],
                               alone.requests["finish_s"].to_numpy(), atol=1e-9)


def test_unmatched_requests_are_input_errors() -> None:
    tr = _with(poisson_trace(10, 5.0, 3), "model", ["a"] * 9 + ["zzz"])
    with pytest.raises(InputError, match="no pool") as e:
        assign_pools(tr, [Pool("a", LinearPerf(), SimConfig(replicas=1), models=("a",))])
    assert "row 10" in str(e.value)
    with pytest.raises(InputError, match="unique"):
        replay_cluster(tr, [Pool("a", LinearPerf(), SimConfig(replicas=1))] * 2, config=ClusterConfig())
    with pytest.raises(InputError, match="decode pool"):
        replay_cluster(tr, [Pool("p", LinearPerf(), SimConfig(replicas=1), role=PoolRole.PREFILL,
                                 decode_pool="nope")], config=ClusterConfig())


LINK = KVLink(gbytes_per_s=2.0, latency_s=0.005, kv_bytes_per_token=131_072.0)


def _pd(tr: RequestTrace, link: KVLink = LINK) -> pl.DataFrame:
    pools = [Pool("prefill", LinearPerf(), SimConfig(replicas=2), role=PoolRole.PREFILL,
                  decode_pool="decode"),
             Pool("decode", LinearPerf(), SimConfig(replicas=2), role=PoolRole.DECODE)]
    res = replay_cluster(tr, pools, config=ClusterConfig(link=link))
    assert res.summary.violations == 0
    return res.requests


def test_pd_conservation_and_transfer_time() -> None:
    tr = poisson_trace(800, 25.0, 4)
    req = _pd(tr)
    assert req.height == tr.num_requests
    assert req["finish_s"].is_not_null().all()  # every request finishes exactly once (one row each)
    multi = req.filter(pl.col("output_tokens") >= 2)
    single = req.filter(pl.col("output_tokens") == 1)
    expect = 0.005 + 131_072.0 * multi["input_tokens"].cast(pl.Float64) / 2e9
    np.testing.assert_allclose(multi["kv_transfer_s"].to_numpy(), expect.to_numpy(), rtol=1e-9)
    assert (multi["decode_pool"] == "decode").all() and (multi["decode_replica"] >= 2).all()
    assert single["decode_pool"].is_null().all() and single["kv_transfer_s"].is_null().all()
    # decode cannot start before the KV arrives: finish >= first token + transfer + one decode step each
    min_step = LinearPerf().base_s
    slack = multi["finish_s"] - multi["first_token_s"] - multi["kv_transfer_s"] - (
        multi["output_tokens"] - 1) * min_step
    assert (slack >= -1e-9).all()
    assert (req["ttft_s"] > 0).all()


def test_slower_link_raises_tpot_not_ttft() -> None:
    tr = poisson_trace(400, 10.0, 5)
    fast = _pd(tr)
    slow = _pd(tr, KVLink(gbytes_per_s=0.2, latency_s=0.05, kv_bytes_per_token=131_072.0))
    np.testing.assert_allclose(fast["ttft_s"].to_numpy(), slow["ttft_s"].to_numpy(), atol=1e-12)
    assert slow["tpot_s"].mean() > fast["tpot_s"].mean()  # type: ignore[operator]
    assert slow["e2e_s"].mean() > fast["e2e_s"].mean()  # type: ignore[operator]


def test_default_link_comes_from_the_gpu_nic() -> None:
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    tr = poisson_trace(50, 5.0, 6)
    pools = [Pool("p", LinearPerf(), SimConfig(replicas=1), gpu=gpu, role=PoolRole.PREFILL, decode_pool="d"),
             Pool("d", LinearPerf(), SimConfig(replicas=1), gpu=gpu, role=PoolRole.DECODE)]
    res = replay_cluster(tr, pools, config=ClusterConfig(link=KVLink(kv_bytes_per_token=1e5)))
    multi = res.requests.filter(pl.col("output_tokens") >= 2)
    bw = gpu.nic_gbit / 8 * 1e9
    expect = 2e-4 + 1e5 * multi["input_tokens"].cast(pl.Float64) / bw
    np.testing.assert_allclose(multi["kv_transfer_s"].to_numpy(), expect.to_numpy(), rtol=1e-9)


def test_every_pool_hands_tokens_over_as_a_single_pool_replay_does() -> None:
    tr = poisson_trace(200, 5.0, 1)
    eng = EngineConfig(output_delay_s=0.05, output_delay_steps=1.0)
    cfg = SimConfig(replicas=2, engine=eng)
    pool = replay_cluster(tr, [Pool("a", LinearPerf(), cfg)], config=ClusterConfig()).requests
    single = replay(tr, LinearPerf(), config=cfg).requests
    plain = SimConfig(replicas=2)
    bare = replay_cluster(tr, [Pool("a", LinearPerf(), plain)], config=ClusterConfig()).requests
    lag = (pool["ttft_s"] - bare["ttft_s"]).to_numpy()
    assert lag.min() >= 0.05 - 1e-12 and lag.max() > 0.05  # fixed part plus a step of the pool's engine
    np.testing.assert_allclose(pool["ttft_s"].to_numpy(), single["ttft_s"].to_numpy(), rtol=1e-9)

"""Candidate scoring: length mix, memory feasibility, goodput under the SLO, and its queueing estimate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf
from planner.sim import EngineConfig, SimConfig, SLOTarget, replay
from solvers.capacity import (
    SLO,
    LengthMix,
    Role,
    ScoringOptions,
    goodput,
    length_mix,
    score_gpu,
    select_configs,
)
from solvers.capacity.demand import demand_windows
from traces.default import default_trace
from traces.errors import InputError
from traces.load import load_trace


@pytest.fixture(scope="module")
def mix() -> LengthMix:
    return length_mix(default_trace())


def test_length_mix_keeps_the_tail(mix: LengthMix) -> None:
    tr = default_trace()
    assert mix.weight.sum() == pytest.approx(1.0)
    assert mix.mean_input == pytest.approx(tr.df["input_tokens"].cast(pl.Float64).mean(), rel=1e-6)
    # the top input bucket holds the longest 1 % of prompts, far above the mean
    assert mix.input_tokens.max() > 3 * mix.mean_input
    assert mix.weight[mix.input_tokens.argmax()] == pytest.approx(0.01, abs=0.01)


def test_demand_windows_cover_the_trace() -> None:
    tr = default_trace()
    ws = demand_windows(tr, window_s=600.0)
    assert len(ws) == 6 and sum(w.duration_s for w in ws) == pytest.approx(tr.duration_s)
    mean = tr.num_requests / tr.duration_s
    assert max(w.demand_rps for w in ws) > mean  # peak minutes are above the mean rate
    with pytest.raises(InputError, match="window_s"):
        demand_windows(tr, window_s=0.0)


def test_candidates_that_do_not_fit_stay_with_a_reason(mix: LengthMix) -> None:
    cat = load_catalog()
    df = score_gpu(cat.model("Llama-3.1-405B"), cat.gpu("L40S"), mix,
                   ScoringOptions(max_num_seqs=(256,), max_batched_tokens=(8192,)))
    assert df.height > 0 and not df["feasible"].any()
    assert all(r for r in df["reason"].to_list())


def test_tighter_tpot_slo_lowers_goodput(mix: LengthMix) -> None:
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
    loose = goodput(perf, Role.AGGREGATED, mix, SLO(ttft_s=2.0, tpot_s=0.1), max_num_seqs=256,
                    max_batched_tokens=8192)
    tight = goodput(perf, Role.AGGREGATED, mix, SLO(ttft_s=2.0, tpot_s=0.03), max_num_seqs=256,
                    max_batched_tokens=8192)
    assert 0 < tight.goodput_rps < loose.goodput_rps
    impossible = goodput(perf, Role.DECODE, mix, SLO(tpot_s=1e-4), max_num_seqs=256, max_batched_tokens=8192)
    assert impossible.goodput_rps == 0 and "TPOT" in impossible.reason


def test_predicted_goodput_holds_in_replay(mix: LengthMix) -> None:
    """One replica fed at 90 % of its predicted goodput meets the p99 SLO in the simulator; at 3x it
    does not (the estimate is neither wildly optimistic nor wildly pessimistic)."""
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), gpu, Parallelism(tp=1))
    slo = SLO(ttft_s=2.0, tpot_s=0.1)
    op = goodput(perf, Role.AGGREGATED, mix, slo, max_num_seqs=256, max_batched_tokens=8192)
    tr = default_trace()
    cfg = SimConfig(replicas=1, engine=EngineConfig(max_batched_tokens=8192, max_num_seqs=256),
                    default_slo=SLOTarget(ttft_s=slo.ttft_s, tpot_s=slo.tpot_s))
    mean_rate = tr.num_requests / tr.duration_s

    def at(rate: float) -> float:
        df = tr.df.with_columns(pl.col("arrival_s") * (mean_rate / rate)).head(6000)
        return replay(replace(tr, df=df), perf, config=cfg, gpu=gpu).summary.classes[0].attainment

    assert at(0.9 * op.goodput_rps) >= 0.98
    assert at(3.0 * op.goodput_rps) < 0.9


def test_select_configs_prunes_dominated_rows(mix: LengthMix) -> None:
    cat = load_catalog()
    df = score_gpu(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), mix, ScoringOptions())
    kept = select_configs(df, per_group=8)
    assert 0 < len(kept) <= 3 * 8
    feasible = df.filter(pl.col("feasible"))
    for role in ("aggregated", "prefill", "decode"):
        best = float(feasible.filter(pl.col("role") == role)["usd_per_million_requests"].min())  # type: ignore[arg-type]
        kept_best = min(c.cost_per_goodput for c in kept if c.role.value == role) / 3600 * 1e6
        assert kept_best == pytest.approx(best)  # the cheapest per request is never pruned


def test_real_trace_mix_changes_the_scores(shared_traces: Path, mix: LengthMix) -> None:
    """Azure code 2023 has longer prompts and shorter answers than the default (conversation) trace: the
    same replica's aggregated goodput differs, which is why the planner scores the trace's own mix."""
    code = length_mix(load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"))
    assert code.mean_input > mix.mean_input
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
    a = goodput(perf, Role.AGGREGATED, mix, SLO(), max_num_seqs=256, max_batched_tokens=8192)
    b = goodput(perf, Role.AGGREGATED, code, SLO(), max_num_seqs=256, max_batched_tokens=8192)
    assert a.goodput_rps > 0 and b.goodput_rps > 0
    assert not np.isclose(a.goodput_rps, b.goodput_rps, rtol=0.1)


def test_expert_imbalance_lowers_moe_goodput(mix: LengthMix) -> None:
    """The placement's imbalance reaches the planner: MoE expert-parallel candidates lose goodput."""
    cat = load_catalog()
    model, gpu = cat.model("Mixtral-8x7B"), cat.gpu("H200-SXM")
    base = ScoringOptions(max_num_seqs=(128,), max_batched_tokens=(8192,), roles=(Role.AGGREGATED,),
                          max_gpus=2)
    even = score_gpu(model, gpu, mix, base).filter(pl.col("feasible") & (pl.col("ep") > 1))
    skew = score_gpu(model, gpu, mix, replace(base, expert_imbalance=1.5)).filter(
        pl.col("feasible") & (pl.col("ep") > 1))
    assert even.height > 0 and even.height == skew.height
    assert (skew["goodput_rps"] < even["goodput_rps"]).all()

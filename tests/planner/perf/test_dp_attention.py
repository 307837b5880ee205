"""DP attention for MoE (DeepSeek-V3's MLA above all): what it changes in one replica, and that the
search weighs it."""

from __future__ import annotations

import pytest

from planner.catalog import load_catalog
from planner.perf.api import Parallelism
from planner.perf.layouts import enumerate_layouts
from planner.perf.model import build_replica_perf
from traces.errors import InputError


def _pair(model: str, gpu: str, tp: int) -> tuple[object, object]:
    cat = load_catalog()
    m, g = cat.model(model), cat.gpu(gpu)
    tp_perf = build_replica_perf(m, g, Parallelism(tp=tp, ep=tp), weight_dtype="fp8")
    dp_perf = build_replica_perf(m, g, Parallelism(tp=tp, ep=tp, dp_attention=True), weight_dtype="fp8")
    return tp_perf, dp_perf


def test_dp_attention_trades_replicated_attention_weights_for_kv_and_no_all_reduce() -> None:
    tp_perf, dp_perf = _pair("DeepSeek-V3", "H200-SXM", 8)
    assert isinstance(tp_perf, type(dp_perf))
    cat = load_catalog()
    m = cat.model("DeepSeek-V3")
    mla = m.mla
    assert mla is not None
    # every GPU holds the whole attention: its weights grow by (1 - 1/8) of the split attention weights
    qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    split = ((mla.q_lora_rank or m.hidden_size) * m.num_heads * qk
             + mla.kv_lora_rank * m.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim)
             + m.num_heads * mla.v_head_dim * m.hidden_size) * m.num_layers  # fp8: 1 byte each
    grown = dp_perf.memory.weights - tp_perf.memory.weights  # type: ignore[attr-defined]
    assert grown > split * (1 - 1 / 8) * 0.99
    # the latent KV, which TP can only replicate, is spread: the replica holds several times as much
    assert dp_perf.kv_capacity_tokens > 3 * tp_perf.kv_capacity_tokens  # type: ignore[attr-defined]
    b_tp = tp_perf.breakdown(0.0, 0.0, 256.0, 256 * 3000.0)  # type: ignore[attr-defined]
    b_dp = dp_perf.breakdown(0.0, 0.0, 256.0, 256 * 3000.0)  # type: ignore[attr-defined]
    assert "tp_allreduce" in b_tp.families_s and "tp_allreduce" not in b_dp.families_s
    assert b_dp.families_s["ep_alltoall"] == pytest.approx(b_tp.families_s["ep_alltoall"])
    assert b_dp.families_s["experts"] == pytest.approx(b_tp.families_s["experts"])


def test_dp_attention_is_refused_where_it_does_not_apply() -> None:
    cat = load_catalog()
    for model, par in (("Llama-3.1-70B", Parallelism(tp=4, dp_attention=True)),
                       ("DeepSeek-V3", Parallelism(tp=8, ep=4, dp_attention=True))):
        with pytest.raises(InputError, match="DP attention"):
            build_replica_perf(cat.model(model), cat.gpu("H200-SXM"), par, weight_dtype="fp8")


def test_the_search_offers_dp_attention_for_moe_only() -> None:
    cat = load_catalog()
    moe = enumerate_layouts(cat.model("DeepSeek-V3"), ["H200-SXM"], max_gpus=8)
    dpa = moe.filter("dp_attention")
    assert dpa.height and (dpa["tp"] == dpa["ep"]).all() and (dpa["pp"] == 1).all()
    assert not enumerate_layouts(cat.model("Llama-3.1-70B"), ["H200-SXM"])["dp_attention"].any()


def test_replay_and_perf_take_dp_attention(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from planner.cli.main import main

    base = ["perf", "--model", "DeepSeek-V3", "--gpu", "H200-SXM", "--tp", "8", "--ep", "8",
            "--weight-dtype", "fp8", "--decode-batch", "64", "--context", "2000", "--json"]
    assert main(base) == 0
    tp_doc = json.loads(capsys.readouterr().out)
    assert main([*base, "--dp-attention"]) == 0
    dp_doc = json.loads(capsys.readouterr().out)
    assert str(dp_doc) != str(tp_doc)
    assert main(["replay", "--model", "Llama-3.1-8B", "--dp-attention"]) == 2
    assert "DP attention" in capsys.readouterr().err

"""The bundled catalog: every entry loads, and the architecture arithmetic matches published numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.catalog import Catalog, GPUSpec, ModelSpec, MoESpec, load_catalog
from planner.catalog.load import PARAM_TOLERANCE, source_of
from traces.errors import InputError

REQUIRED_GPUS = ("A100-80GB-SXM", "H100-SXM", "H200-SXM", "B200", "L40S", "MI300X")
REQUIRED_MODELS = ("Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B", "Qwen3-32B", "Qwen3-235B-A22B",
                   "Mixtral-8x7B", "DeepSeek-V3", "GPT-3-175B", "Grok-1")
GPU_NUMBERS = ("bf16_tflops", "fp8_tflops", "hbm_gb", "hbm_tbps", "tdp_w", "idle_w", "link_gbps", "nic_gbit",
               "gpus_per_node", "max_sm_clock_mhz", "min_sm_clock_mhz", "price_per_hour", "node_max_w")


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def test_every_required_entry_is_bundled(cat: Catalog) -> None:
    assert set(REQUIRED_GPUS) <= set(cat.gpus)
    assert set(REQUIRED_MODELS) <= set(cat.models)


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_computed_params_within_tolerance(cat: Catalog, name: str) -> None:
    m = cat.model(name)
    assert m.computed_params() / 1e9 == pytest.approx(m.params_b, rel=PARAM_TOLERANCE)
    if m.active_params_b is not None:
        assert m.active_params() / 1e9 == pytest.approx(m.active_params_b, rel=PARAM_TOLERANCE)


def test_llama_8b_exact_count_and_bf16_weights(cat: Catalog) -> None:
    m = cat.model("Llama-3.1-8B")
    # 8,030,261,248 is the parameter count of the published safetensors checkpoint.
    assert m.computed_params() == 8_030_261_248
    assert round(m.weight_bytes(2.0) / 1e9, 2) == 16.06
    assert m.weight_bytes(1.0) == m.weight_bytes(2.0) / 2


def test_llama_8b_kv_bytes(cat: Catalog) -> None:
    m = cat.model("Llama-3.1-8B")
    assert m.kv_values_per_token_per_layer() * 2 == 2 * 8 * 128 * 2 == 4096
    assert m.kv_bytes_per_token(2.0) == 131072
    assert m.kv_bytes_per_token(1.0) == 65536  # FP8 cache halves it


def test_deepseek_v3_mla_kv_and_structure(cat: Catalog) -> None:
    m = cat.model("DeepSeek-V3")
    assert m.mla is not None and m.moe is not None
    assert m.kv_values_per_token_per_layer() * 2 == (512 + 64) * 2
    assert m.kv_bytes_per_token(2.0) == (512 + 64) * 2 * 61
    assert (m.num_layers, m.moe.first_dense_layers, m.moe_layers) == (61, 3, 58)
    assert (m.moe.num_experts, m.moe.experts_per_token, m.moe.num_shared_experts) == (256, 8, 1)
    assert (m.moe.expert_ffn_size, m.moe.dense_ffn_size, m.vocab_size) == (2048, 18432, 129280)
    # Dense layers are much smaller than MoE layers: the first three must not be counted as MoE.
    assert m.layer_params(0) < m.layer_params(3) / 10
    # Within 0.5 % of 671B, tighter than the loader's 3 %: the MLA/MoE formulas are right, not lucky.
    assert m.computed_params() / 1e9 == pytest.approx(671, rel=0.005)


def test_mha_and_gqa_kv_differ_by_group_size(cat: Catalog) -> None:
    gpt3 = cat.model("GPT-3-175B")
    assert gpt3.kv_values_per_token_per_layer() == 2 * 96 * 128  # MHA: every head cached
    qwen = cat.model("Qwen3-235B-A22B")
    assert qwen.kv_values_per_token_per_layer() == 2 * 4 * 128


def test_qwen3_qk_norm_is_counted(cat: Catalog) -> None:
    m = cat.model("Qwen3-32B")
    without = replace(m, qk_norm=False)
    assert m.computed_params() - without.computed_params() == m.num_layers * 2 * m.head_dim
    assert not m.qkv_bias  # Qwen3 dropped Qwen2's QKV bias


def test_gpt3_biases_layernorm_and_positions_are_counted(cat: Catalog) -> None:
    m = cat.model("GPT-3-175B")
    h, f, n = m.hidden_size, m.ffn_size, m.num_layers
    bare = replace(m, qkv_bias=False, o_bias=False, mlp_bias=False, norm_bias=False, learned_pos_embeddings=0)
    biases = n * (3 * h + h + f + h)          # qkv, out, MLP up and down
    ln_shifts = (2 * n + 1) * h                 # LayerNorm bias for two norms per block plus final
    assert m.computed_params() - bare.computed_params() == biases + ln_shifts + 2048 * h
    assert not m.gated_mlp and m.tied_embeddings


def test_moe_active_params_count_top_k_experts(cat: Catalog) -> None:
    m = cat.model("Mixtral-8x7B")
    assert m.moe is not None
    expert = m.mlp_params(m.moe.expert_ffn_size)
    assert m.computed_params() - m.active_params() == m.num_layers * 6 * expert


def test_grok1_has_sandwich_norms_and_tied_embeddings(cat: Catalog) -> None:
    m = cat.model("Grok-1")
    assert m.norms_per_layer == 4 and m.tied_embeddings
    assert m.moe is not None and m.moe.expert_ffn_size == 32768


def test_gpu_numbers_all_have_sources_and_estimates_say_so(cat: Catalog) -> None:
    for g in cat.gpus.values():
        for key in GPU_NUMBERS:
            text = source_of(g, key)
            assert text, f"{g.name}.{key} has no source"
    # The measured idle figures say how they were measured; the reasoned ones say they are estimates.
    assert "measured" in (source_of(cat.gpu("H100-SXM"), "idle_w") or "")
    assert "estimate" in (source_of(cat.gpu("B200"), "idle_w") or "")
    assert "configurable" in (source_of(cat.gpu("L40S"), "price_per_hour") or "")


@pytest.mark.parametrize("name", REQUIRED_GPUS)
def test_gpu_peaks_are_dense_and_consistent(cat: Catalog, name: str) -> None:
    g = cat.gpu(name)
    # Dense FP8 is twice dense BF16 on every part here; a sparse figure slipped in would break it.
    assert g.fp8_tflops == 0 or g.fp8_tflops == pytest.approx(2 * g.bf16_tflops, rel=0.02)
    assert g.idle_w < 0.25 * g.tdp_w
    assert g.min_sm_clock_mhz < g.max_sm_clock_mhz
    assert g.node_max_w is None or g.node_max_w > g.gpus_per_node * g.tdp_w


def test_a100_has_no_fp8(cat: Catalog) -> None:
    a100 = cat.gpu("A100-80GB-SXM")
    assert a100.fp8_tflops == 0 and not a100.has_fp8
    assert cat.gpu("H100-SXM").has_fp8


def test_lookup_by_alias_case_and_hf_id(cat: Catalog) -> None:
    assert cat.gpu("a100-sxm").name == "A100-80GB-SXM"
    assert cat.gpu("h200").name == "H200-SXM"
    assert cat.model("deepseek-ai/DeepSeek-V3").name == "DeepSeek-V3"
    assert cat.model("LLAMA-3.1-70B").name == "Llama-3.1-70B"
    with pytest.raises(InputError, match="unknown GPU 'H999'"):
        cat.gpu("H999")
    with pytest.raises(InputError, match=r"Llama-3\.1-8B"):
        cat.model("")  # empty name never matches GPT-3's empty hf_id


@st.composite
def small_moe_models(draw: st.DrawFn) -> ModelSpec:
    """Small random MoE architectures (dense leading layers, GQA) for the arithmetic properties."""
    layers = draw(st.integers(min_value=1, max_value=8))
    kv = draw(st.integers(min_value=1, max_value=8))
    experts = draw(st.integers(min_value=1, max_value=16))
    ffn = draw(st.integers(min_value=1, max_value=512))
    dense = draw(st.integers(min_value=0, max_value=layers - 1))
    moe = MoESpec(num_experts=experts, experts_per_token=draw(st.integers(min_value=1, max_value=experts)),
                  num_shared_experts=draw(st.integers(min_value=0, max_value=2)), expert_ffn_size=ffn,
                  first_dense_layers=dense, dense_ffn_size=ffn if dense else 0)
    return ModelSpec(name="t", hf_id="", num_layers=layers, hidden_size=64,
                     num_heads=kv * draw(st.sampled_from([1, 2, 4])), num_kv_heads=kv,
                     head_dim=draw(st.sampled_from([16, 64])), ffn_size=0, vocab_size=100, gated_mlp=True,
                     tied_embeddings=draw(st.booleans()), params_b=1.0, moe=moe)


@given(m=small_moe_models())
def test_param_arithmetic_properties(m: ModelSpec) -> None:
    assert m.moe is not None
    total = m.computed_params()
    # The total is the sum of its parts, and routing never touches more than exists.
    parts = m.embedding_params() + m.norm_params() + sum(m.layer_params(i) for i in range(m.num_layers))
    assert total == parts
    assert 0 < m.active_params() <= total
    assert (m.active_params() == total) == (m.moe.experts_per_token == m.moe.num_experts)
    assert m.kv_bytes_per_token(2.0) == 2 * m.num_kv_heads * m.head_dim * m.num_layers * 2


def test_gpuspec_is_frozen(cat: Catalog) -> None:
    g: GPUSpec = cat.gpu("H100-SXM")
    with pytest.raises(AttributeError):
        g.tdp_w = 1.0  # type: ignore[misc]

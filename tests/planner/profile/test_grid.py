"""The shape grids: the catalog's linear layers split by TP, attention and step grids."""

from __future__ import annotations

from planner.profile import grid
from planner.profile.grid import LLAMA_8B, MLAShape, ModelShape, StepCase


def test_catalog_models_are_read_with_plain_yaml() -> None:
    models = grid.load_catalog_models()
    names = {m.name for m in models}
    assert "Llama-3.1-8B" in names
    llama = next(m for m in models if m.name == "Llama-3.1-8B")
    assert (llama.hidden_size, llama.num_heads, llama.num_kv_heads, llama.ffn_size) == (4096, 32, 8, 14336)
    assert llama.num_layers == 32


def test_llama_8b_linear_layers_split_by_tensor_parallelism() -> None:
    tp1 = {x.layer: (x.n, x.k) for x in grid.linear_layers(LLAMA_8B, 1)}
    assert tp1 == {
        "qkv": (6144, 4096),
        "o": (4096, 4096),
        "gate_up": (28672, 4096),
        "down": (4096, 14336),
        "lm_head": (128256, 4096),
    }
    tp4 = {x.layer: (x.n, x.k) for x in grid.linear_layers(LLAMA_8B, 4)}
    # column-parallel layers divide n, row-parallel layers divide k
    assert tp4["qkv"] == (1536, 4096)
    assert tp4["o"] == (4096, 1024)
    assert tp4["down"] == (4096, 3584)


def test_kv_heads_are_replicated_beyond_their_count() -> None:
    model = ModelShape("m", 1024, 16, 2, 64, 4096, 1000)
    qkv = next(x for x in grid.linear_layers(model, 8) if x.layer == "qkv")
    assert qkv.n == (16 // 8 + 2 * 1) * 64


def test_mla_layers_use_the_latent_ranks() -> None:
    ds = next(m for m in grid.REFERENCE_MODELS if m.mla is not None)
    layers = {x.layer: (x.n, x.k) for x in grid.linear_layers(ds, 1)}
    assert layers["kv_a"] == (512 + 64, 7168)
    assert layers["kv_b"] == (128 * (128 + 128), 512)
    assert layers["q_b"] == (128 * (128 + 64), 1536)
    assert "qkv" not in layers
    assert layers["expert_gate_up"] == (2 * 2048, 7168)


def test_gemm_grid_covers_decode_to_prefill_token_counts() -> None:
    shapes = grid.gemm_shapes([LLAMA_8B], tps=[1])
    ms = sorted({m for m, _, _ in shapes})
    assert ms[0] == 1 and ms[-1] == 16384 and len(ms) == 15
    assert len(shapes) == len(set(shapes)) == 5 * 15


def test_merge_keeps_catalog_entries_first() -> None:
    cat = [ModelShape("Llama-3.1-8B", 1, 1, 1, 1, 1, 1)]
    merged = grid.merge_models(cat, grid.REFERENCE_MODELS)
    assert merged[0].hidden_size == 1
    assert sum(m.name == "Llama-3.1-8B" for m in merged) == 1


def test_decode_cases_respect_the_cache_cap() -> None:
    head = grid.HeadConfig(32, 8, 128)
    per_token = 2 * 8 * 128 * 2
    cases = grid.decode_cases(head, quick=False, max_cache_bytes=1 << 30)
    assert cases and all(b * kv * per_token <= 1 << 30 for b, kv in cases)
    assert len(grid.decode_cases(head, quick=False, coarse=True)) < len(grid.decode_cases(head, quick=False))


def test_step_aggregates_follow_the_perf_contract() -> None:
    # planner/perf/api.py: prefill_pairs = sum n * (ctx + (n + 1) / 2); decode_kv = sum of KV lengths
    case = StepCase("mixed", prefill_seqs=2, prefill_len=100, prefill_ctx=50, decode_seqs=3, decode_len=40)
    assert case.prefill_tokens == 200
    assert case.prefill_pairs == 2 * 100 * (50 + 101 / 2)
    assert case.decode_kv == 120
    kinds = {c.kind for c in grid.step_cases(quick=False)}
    assert kinds == {"prefill", "decode", "mixed"}
    assert all(c.decode_kv <= 2_200_000 for c in grid.step_cases(quick=False))


def test_model_from_mapping_reads_nested_moe_and_mla() -> None:
    entry = {
        "hidden_size": 64,
        "num_heads": 4,
        "num_kv_heads": 4,
        "head_dim": 16,
        "ffn_size": 0,
        "vocab_size": 100,
        "num_layers": 3,
        "moe": {"num_experts": 8, "expert_ffn_size": 32, "experts_per_token": 2},
        "mla": {
            "q_lora_rank": 0,
            "kv_lora_rank": 16,
            "qk_nope_head_dim": 8,
            "qk_rope_head_dim": 4,
            "v_head_dim": 8,
        },
    }
    m = grid.model_from_mapping("x", entry)
    assert m.moe is not None and m.moe.num_experts == 8
    assert m.mla == MLAShape(0, 16, 8, 4, 8)
    assert {x.layer for x in grid.linear_layers(m, 1)} >= {"q_b", "kv_a", "kv_b", "expert_gate_up", "router"}

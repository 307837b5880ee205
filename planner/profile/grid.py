"""The grids the profiler measures, as pure functions of the model shapes (no torch here).

The GEMM grid is the set of linear layers the catalog's models actually run, split the way tensor
parallelism splits them (column-parallel layers divide ``n``, row-parallel ones divide ``k``), times a
range of token counts from one decode token to a long prefill chunk. Measuring the shapes that will be
asked for, rather than a synthetic sweep, keeps the fitter's error where it matters.

The catalog (``planner/catalog/data/models.yaml``) is read with plain yaml on the GPU host, where the
planner's pydantic loader is not installed. A few well-known public architectures are added so the
grid covers larger and MoE shapes even when the catalog is small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_MODELS = Path(__file__).resolve().parents[1] / "catalog" / "data" / "models.yaml"
"""Where the catalog's model architectures live in the repository."""

TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8)
"""Tensor-parallel splits measured for every model's linear layers."""


@dataclass(frozen=True)
class MoEShape:
    """Expert layout of a mixture-of-experts model (only what the GEMM shapes need)."""

    num_experts: int
    expert_ffn_size: int
    dense_ffn_size: int = 0


@dataclass(frozen=True)
class MLAShape:
    """Multi-head latent attention ranks (DeepSeek-V2/V3)."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer that set its operator shapes.

    Attributes:
        name: catalog key.
        hidden_size: model width.
        num_heads: query heads.
        num_kv_heads: key/value heads.
        head_dim: per-head dimension.
        ffn_size: dense MLP intermediate size (0 when every layer is MoE).
        vocab_size: vocabulary (LM head rows).
        gated_mlp: three-matrix SwiGLU MLP (gate and up fused into one GEMM, as engines do).
        moe: expert layout, or None.
        mla: MLA ranks, or None.
        num_layers: transformer blocks (0 when unknown; only whole-step models need it).
    """

    name: str
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    gated_mlp: bool = True
    moe: MoEShape | None = None
    mla: MLAShape | None = None
    num_layers: int = 0


LLAMA_8B = ModelShape("Llama-3.1-8B", 4096, 32, 8, 128, 14336, 128256, num_layers=32)
"""The model of the whole-step and engine runs (huggingface.co/meta-llama/Llama-3.1-8B config.json)."""

REFERENCE_MODELS: tuple[ModelShape, ...] = (
    LLAMA_8B,
    # huggingface.co/meta-llama/Llama-3.1-70B config.json
    ModelShape("Llama-3.1-70B", 8192, 64, 8, 128, 28672, 128256),
    # huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json
    ModelShape("Mixtral-8x7B", 4096, 32, 8, 128, 0, 32000, moe=MoEShape(8, 14336)),
    # huggingface.co/Qwen/Qwen3-30B-A3B config.json
    ModelShape("Qwen3-30B-A3B", 2048, 32, 4, 128, 0, 151936, moe=MoEShape(128, 768)),
    # huggingface.co/deepseek-ai/DeepSeek-V3 config.json
    ModelShape(
        "DeepSeek-V3",
        7168,
        128,
        128,
        128,
        0,
        129280,
        moe=MoEShape(256, 2048, dense_ffn_size=18432),
        mla=MLAShape(1536, 512, 128, 64, 128),
    ),
)
"""Public architectures measured besides the catalog's, so larger and MoE shapes are always covered."""


def token_counts(*, quick: bool) -> tuple[int, ...]:
    """GEMM ``m`` values: powers of two from one decode token to a 16k-token prefill chunk.

    >>> token_counts(quick=True)
    (1, 16, 256, 4096)
    >>> len(token_counts(quick=False))
    15
    """
    if quick:
        return (1, 16, 256, 4096)
    return tuple(2**i for i in range(15))


def _int(entry: Mapping[str, Any], key: str, name: str, default: int | None = None) -> int:
    value = entry.get(key, default)
    if value is None:
        raise ValueError(f"{CATALOG_MODELS.name}: model {name}: field {key}: missing (expected an integer)")
    return int(value)


def model_from_mapping(name: str, entry: Mapping[str, Any]) -> ModelShape:
    """A :class:`ModelShape` from one model record of the catalog's YAML.

    Args:
        name: the model's catalog key.
        entry: its record (``hidden_size``, ``num_heads`` ... and optional ``moe`` / ``mla`` maps).

    Raises:
        ValueError: a required field is missing (the CLI reports it; the profiler skips the model).

    >>> model_from_mapping("m", {"hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
    ...                          "ffn_size": 128, "vocab_size": 1000}).num_kv_heads
    2
    """
    moe_raw = entry.get("moe")
    mla_raw = entry.get("mla")
    moe = None
    if isinstance(moe_raw, Mapping):
        moe = MoEShape(
            num_experts=_int(moe_raw, "num_experts", name),
            expert_ffn_size=_int(moe_raw, "expert_ffn_size", name),
            dense_ffn_size=_int(moe_raw, "dense_ffn_size", name, 0),
        )
    mla = None
    if isinstance(mla_raw, Mapping):
        mla = MLAShape(
            q_lora_rank=_int(mla_raw, "q_lora_rank", name, 0),
            kv_lora_rank=_int(mla_raw, "kv_lora_rank", name),
            qk_nope_head_dim=_int(mla_raw, "qk_nope_head_dim", name),
            qk_rope_head_dim=_int(mla_raw, "qk_rope_head_dim", name),
            v_head_dim=_int(mla_raw, "v_head_dim", name),
        )
    num_heads = _int(entry, "num_heads", name)
    return ModelShape(
        name=name,
        hidden_size=_int(entry, "hidden_size", name),
        num_heads=num_heads,
        num_kv_heads=_int(entry, "num_kv_heads", name, num_heads),
        head_dim=_int(entry, "head_dim", name),
        ffn_size=_int(entry, "ffn_size", name, 0),
        vocab_size=_int(entry, "vocab_size", name),
        gated_mlp=bool(entry.get("gated_mlp", True)),
        moe=moe,
        mla=mla,
        num_layers=_int(entry, "num_layers", name, 0),
    )


def load_catalog_models(path: Path = CATALOG_MODELS) -> tuple[ModelShape, ...]:
    """The catalog's models, read with plain yaml; empty when yaml or the file is unavailable.

    A malformed record is skipped rather than fatal: the profiler's job is to measure, and the
    reference models keep the grid meaningful (the planner's own loader reports catalog errors).
    """
    try:
        import yaml
    except ImportError:
        return ()
    if not path.is_file():
        return ()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    models = raw.get("models", {}) if isinstance(raw, Mapping) else {}
    out: list[ModelShape] = []
    for name, entry in (models or {}).items():
        if not isinstance(entry, Mapping):
            continue
        try:
            out.append(model_from_mapping(str(name), entry))
        except (ValueError, TypeError):
            continue
    return tuple(out)


def merge_models(catalog: Iterable[ModelShape], reference: Iterable[ModelShape]) -> tuple[ModelShape, ...]:
    """Catalog models first, then reference models whose names the catalog lacks (case-insensitive).

    >>> [m.name for m in merge_models([LLAMA_8B], REFERENCE_MODELS)][:2]
    ['Llama-3.1-8B', 'Llama-3.1-70B']
    """
    seen: set[str] = set()
    out: list[ModelShape] = []
    for model in (*catalog, *reference):
        key = model.name.lower()
        if key not in seen:
            seen.add(key)
            out.append(model)
    return tuple(out)


@dataclass(frozen=True)
class Linear:
    """One linear layer as a GEMM ``Y[m, n] = X[m, k] @ W[n, k]^T``.

    Attributes:
        model: model name.
        layer: ``qkv``, ``o``, ``gate_up``, ``down``, ``lm_head``, ``expert_gate_up``, ``expert_down``,
            ``router``, ``q_a``, ``q_b``, ``kv_a``, ``kv_b``.
        tp: tensor-parallel degree of the split.
        n: output features per GPU.
        k: input features per GPU.
    """

    model: str
    layer: str
    tp: int
    n: int
    k: int


def linear_layers(model: ModelShape, tp: int) -> list[Linear]:
    """The linear layers of ``model`` on one GPU of a ``tp``-way tensor-parallel split.

    Column-parallel layers (QKV, gate/up, LM head, MLA up-projections) divide ``n``; row-parallel ones
    (O, down) divide ``k``. KV heads are replicated when there are fewer than ``tp`` of them. Expert
    FFNs are split like dense MLPs (tensor-parallel experts; expert parallelism keeps the ``tp=1`` shape).

    >>> [(x.layer, x.n, x.k) for x in linear_layers(LLAMA_8B, 8)][:3]
    [('qkv', 768, 4096), ('o', 4096, 512), ('gate_up', 3584, 4096)]
    """
    h = model.hidden_size
    heads = max(1, model.num_heads // tp)
    kv_heads = max(1, model.num_kv_heads // tp)
    mats = 2 if model.gated_mlp else 1
    out: list[Linear] = []

    def add(layer: str, n: int, k: int) -> None:
        if n > 0 and k > 0:
            out.append(Linear(model.name, layer, tp, n, k))

    if model.mla is None:
        add("qkv", (heads + 2 * kv_heads) * model.head_dim, h)
        add("o", h, heads * model.head_dim)
    else:
        m = model.mla
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            add("q_a", m.q_lora_rank, h)
            add("q_b", heads * qk_head, m.q_lora_rank)
        else:
            add("q_b", heads * qk_head, h)
        add("kv_a", m.kv_lora_rank + m.qk_rope_head_dim, h)
        add("kv_b", heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank)
        add("o", h, heads * m.v_head_dim)
    dense_ffn = model.ffn_size if model.moe is None else model.moe.dense_ffn_size
    if dense_ffn:
        add("gate_up", mats * dense_ffn // tp, h)
        add("down", h, dense_ffn // tp)
    if model.moe is not None:
        eff = model.moe.expert_ffn_size
        add("expert_gate_up", mats * eff // tp, h)
        add("expert_down", h, eff // tp)
        if tp == 1:
            add("router", model.moe.num_experts, h)
    add("lm_head", model.vocab_size // tp, h)
    return out


def gemm_shapes(
    models: Iterable[ModelShape], *, tps: Iterable[int] = TP_DEGREES, quick: bool = False
) -> list[tuple[int, int, int]]:
    """Distinct ``(m, n, k)`` GEMMs of the models' linear layers over the token counts, sorted.

    In quick mode only the first model at TP 1 and 8 is measured.

    >>> shapes = gemm_shapes([LLAMA_8B], tps=[1], quick=True)
    >>> (1, 6144, 4096) in shapes and (4096, 128256, 4096) in shapes
    True
    """
    model_list = list(models)
    tp_list = list(tps)
    if quick:
        model_list = model_list[:1]
        tp_list = [t for t in tp_list if t in (1, 8)] or tp_list[:1]
    nk = {(x.n, x.k) for model in model_list for tp in tp_list for x in linear_layers(model, tp)}
    return sorted((m, n, k) for (n, k) in nk for m in token_counts(quick=quick))


@dataclass(frozen=True)
class HeadConfig:
    """Per-GPU attention heads of one model at one TP split."""

    num_heads: int
    num_kv_heads: int
    head_dim: int


def head_configs(models: Iterable[ModelShape], *, quick: bool = False) -> list[HeadConfig]:
    """Distinct GQA/MHA head layouts: the first model at every TP split, the others at TP 1.

    MLA models are left out here (their absorbed decode is measured separately).

    >>> [(c.num_heads, c.num_kv_heads) for c in head_configs([LLAMA_8B])]
    [(32, 8), (16, 4), (8, 2), (4, 1)]
    """
    out: list[HeadConfig] = []
    for i, model in enumerate(models):
        if model.mla is not None:
            continue
        tps = TP_DEGREES if i == 0 else (1,)
        if quick:
            tps = (1,) if i == 0 else ()
        for tp in tps:
            cfg = HeadConfig(max(1, model.num_heads // tp), max(1, model.num_kv_heads // tp), model.head_dim)
            if cfg not in out:
                out.append(cfg)
    return out


def prefill_lengths(*, quick: bool) -> tuple[int, ...]:
    """Causal prefill lengths (q_len = kv_len), 128 to 32k tokens.

    >>> prefill_lengths(quick=True)
    (512, 4096)
    """
    return (512, 4096) if quick else tuple(2**i for i in range(7, 16))


def chunked_prefill_cases(*, quick: bool) -> tuple[tuple[int, int], ...]:
    """``(q_len, kv_len)`` of prefill chunks that attend to an earlier context (q_len < kv_len).

    >>> all(q < kv for q, kv in chunked_prefill_cases(quick=False))
    True
    """
    if quick:
        return ((512, 4096),)
    return tuple((q, kv) for kv in (2048, 8192, 32768) for q in (256, 1024, 2048) if q < kv)


def decode_cases(
    head: HeadConfig, *, quick: bool, coarse: bool = False, max_cache_bytes: int = 8 << 30
) -> list[tuple[int, int]]:
    """``(batch, kv_len)`` of decode attention, capped so one layer's bf16 KV fits ``max_cache_bytes``.

    ``coarse`` thins the grid (for the secondary models' head layouts).

    >>> decode_cases(HeadConfig(32, 8, 128), quick=True)
    [(1, 1024), (1, 16384), (32, 1024), (32, 16384), (256, 1024)]
    """
    batches: tuple[int, ...] = (1, 32, 256) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256)
    kvs: tuple[int, ...] = (1024, 16384) if quick else tuple(2**i for i in range(7, 16))
    if coarse and not quick:
        batches, kvs = (1, 4, 16, 64, 256), (256, 1024, 4096, 16384)
    per_token = 2 * head.num_kv_heads * head.head_dim * 2
    return [(b, kv) for b in batches for kv in kvs if b * kv * per_token <= max_cache_bytes]


ELEMENTWISE_OPS: tuple[str, ...] = ("rmsnorm", "silu_mul", "rope", "add")


def elementwise_cases(models: Iterable[ModelShape], *, quick: bool) -> list[tuple[str, int, int]]:
    """``(op, tokens, hidden)``: each op at the widths it runs at in the models (TP 1).

    ``hidden`` is the width the op works on: the model width for ``rmsnorm`` and ``add``, the (dense or
    expert) FFN width for ``silu_mul``, and the query-plus-key width for ``rope``.

    >>> sorted({h for op, _, h in elementwise_cases([LLAMA_8B], quick=True) if op == "silu_mul"})
    [14336]
    """
    tokens = (1, 64, 4096) if quick else tuple(2**i for i in range(0, 15, 2))
    widths: dict[str, set[int]] = {op: set() for op in ELEMENTWISE_OPS}
    for model in list(models)[: 1 if quick else None]:
        widths["rmsnorm"].add(model.hidden_size)
        widths["add"].add(model.hidden_size)
        ffn = model.ffn_size or (model.moe.expert_ffn_size if model.moe else 0)
        if ffn:
            widths["silu_mul"].add(ffn)
        if model.mla is None:
            widths["rope"].add((model.num_heads + model.num_kv_heads) * model.head_dim)
    return [(op, t, h) for op in ELEMENTWISE_OPS for h in sorted(widths[op]) for t in tokens]


def memcpy_sizes(*, quick: bool) -> tuple[int, ...]:
    """Device-to-device copy sizes in bytes, 1 MiB to 4 GiB.

    >>> memcpy_sizes(quick=True)
    (1048576, 268435456)
    """
    if quick:
        return (1 << 20, 1 << 28)
    return tuple(1 << i for i in range(20, 33, 2))


@dataclass(frozen=True)
class StepCase:
    """One whole forward step of the Llama stack, described by :mod:`planner.perf.api`'s aggregates.

    Attributes:
        kind: ``prefill``, ``decode`` or ``mixed``.
        prefill_seqs: sequences in the prefill part (equal length).
        prefill_len: new tokens per prefill sequence.
        prefill_ctx: cached context each prefill chunk attends to before its own tokens.
        decode_seqs: decode sequences.
        decode_len: KV length of each decode sequence (including the new token).
    """

    kind: str
    prefill_seqs: int = 0
    prefill_len: int = 0
    prefill_ctx: int = 0
    decode_seqs: int = 0
    decode_len: int = 0

    @property
    def prefill_tokens(self) -> int:
        return self.prefill_seqs * self.prefill_len

    @property
    def prefill_pairs(self) -> float:
        """``sum n * (ctx + (n + 1) / 2)`` over the prefill chunks (planner/perf/api.py).

        >>> StepCase("prefill", 1, 4).prefill_pairs
        10.0
        """
        n = self.prefill_len
        return float(self.prefill_seqs * n * (self.prefill_ctx + (n + 1) / 2))

    @property
    def decode_kv(self) -> int:
        return self.decode_seqs * self.decode_len


def step_cases(*, quick: bool, max_kv_tokens: int = 2_200_000) -> list[StepCase]:
    """The whole-step grid: prefills, decodes (batch x KV length) and a few mixed steps.

    ``max_kv_tokens`` bounds ``decode_seqs * decode_len`` (one layer's KV for Llama-8B is 4 KiB a token).

    >>> [c.kind for c in step_cases(quick=True)]
    ['prefill', 'prefill', 'decode', 'decode', 'mixed']
    """
    if quick:
        return [
            StepCase("prefill", 1, 512),
            StepCase("prefill", 1, 2048),
            StepCase("decode", decode_seqs=8, decode_len=1024),
            StepCase("decode", decode_seqs=64, decode_len=2048),
            StepCase("mixed", 1, 512, 0, 32, 1024),
        ]
    cases = [StepCase("prefill", 1, n) for n in (128, 256, 512, 1024, 2048, 4096, 8192, 16384)]
    cases += [StepCase("prefill", s, n) for s, n in ((4, 256), (8, 512), (4, 1024), (2, 4096))]
    cases += [StepCase("prefill", 1, n, ctx) for n, ctx in ((512, 3584), (2048, 6144), (2048, 14336))]
    for b in (1, 4, 16, 32, 64, 128, 256):
        for kv in (256, 1024, 4096, 8192):
            if b * kv <= max_kv_tokens:
                cases.append(StepCase("decode", decode_seqs=b, decode_len=kv))
    for chunk, b, kv in (
        (256, 32, 1024),
        (512, 64, 2048),
        (1024, 16, 4096),
        (2048, 128, 1024),
        (512, 256, 512),
    ):
        cases.append(StepCase("mixed", 1, chunk, 0, b, kv))
    return cases

"""Catalog entries as frozen dataclasses (the core's view) built from pydantic records (the edge).

Units are in the field names: ``_tflops`` dense TFLOP/s (no sparsity), ``_gb`` 1e9 bytes, ``_tbps``
1e12 bytes/s, ``_gbps`` 1e9 bytes/s, ``_gbit`` 1e9 bits/s, ``_w`` watts, ``_mhz`` MHz.

The parameter arithmetic lives here, next to the architecture it describes, because the loader checks
every model's published parameter count against it: a wrong layer formula shows up as a load error,
not as a silently wrong memory estimate in the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from traces.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator type, per GPU.

    Attributes:
        name: catalog key, e.g. ``H100-SXM``.
        vendor: ``NVIDIA``, ``AMD`` ...
        arch: GPU architecture (``hopper``, ``ampere``, ``ada``, ``blackwell``, ``cdna3``; empty if unknown):
            what decides whether kernel curves measured on one GPU carry to another.
        bf16_tflops: dense BF16 tensor-core peak.
        fp8_tflops: dense FP8 tensor-core peak (0 when the GPU has no FP8 units).
        hbm_gb: device memory capacity (datasheet).
        cuda_memory_gib: the device memory CUDA reports as total (GiB), which is what an engine's
            ``gpu_memory_utilization`` is a fraction of; 0 when not measured (``hbm_gb`` GB is then used).
        hbm_tbps: device memory bandwidth.
        tdp_w: board power limit (TDP / TBP).
        idle_w: power at idle with the driver loaded.
        link_gbps: intra-node GPU-to-GPU bandwidth per direction per GPU (NVLink, Infinity Fabric, PCIe).
        nic_gbit: inter-node network per GPU, Gbit/s.
        gpus_per_node: GPUs in the standard server (DGX/HGX: 8).
        max_sm_clock_mhz: highest SM (boost) clock.
        min_sm_clock_mhz: lowest clock that can be locked (for clock-locking power control).
        price_per_hour: default on-demand price per GPU-hour in USD (configurable by user YAML).
        node_max_w: peak power of one whole server (GPUs, CPUs, NICs, fans) for rack power budgets;
            None when unknown.
        aliases: other names the GPU is looked up by (NVML-style names, older keys).
        sources: where each number came from, keyed by field name.
    """

    name: str
    vendor: str
    bf16_tflops: float
    fp8_tflops: float
    hbm_gb: float
    hbm_tbps: float
    tdp_w: float
    idle_w: float
    link_gbps: float
    nic_gbit: float
    gpus_per_node: int
    max_sm_clock_mhz: float
    min_sm_clock_mhz: float
    price_per_hour: float
    node_max_w: float | None = None
    arch: str = ""
    cuda_memory_gib: float = 0.0
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def memory_bytes(self) -> float:
        """Device memory an engine sizes its KV cache against (see ``cuda_memory_gib``)."""
        return self.cuda_memory_gib * 2**30 if self.cuda_memory_gib > 0 else self.hbm_gb * 1e9

    @property
    def has_fp8(self) -> bool:
        """Whether FP8 weights/KV run on tensor cores (an FP8 plan on an A100 is not a plan)."""
        return self.fp8_tflops > 0


@dataclass(frozen=True)
class MoESpec:
    """Mixture-of-experts layout.

    Attributes:
        num_experts: routed experts per MoE layer.
        experts_per_token: routed experts each token activates (top-k).
        num_shared_experts: always-active shared experts per MoE layer.
        expert_ffn_size: intermediate size of one routed (and shared) expert.
        first_dense_layers: leading layers with a dense MLP instead of MoE (DeepSeek-V3: 3).
        dense_ffn_size: intermediate size of those dense MLPs (0 when there are none).
        num_groups: expert groups for group-limited routing (DeepSeek-V3: 8; 1 otherwise).
        router_bias: the router carries a per-expert bias (DeepSeek-V3's load-balancing
            ``e_score_correction_bias``).
    """

    num_experts: int
    experts_per_token: int
    num_shared_experts: int
    expert_ffn_size: int
    first_dense_layers: int = 0
    dense_ffn_size: int = 0
    num_groups: int = 1
    router_bias: bool = False


@dataclass(frozen=True)
class MLASpec:
    """DeepSeek multi-head latent attention ranks.

    The KV cache holds ``kv_lora_rank + qk_rope_head_dim`` values per token per layer.
    """

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer architecture.

    Attributes:
        name: catalog key, e.g. ``Llama-3.1-8B``.
        hf_id: Hugging Face repository id (also accepted by :meth:`Catalog.model`, since serving
            engines report models by it).
        num_layers: transformer blocks.
        hidden_size: model width.
        num_heads: query heads.
        num_kv_heads: key/value heads (GQA); equals ``num_heads`` for MHA.
        head_dim: per-head dimension of Q/K/V (for MLA models the value head; see ``mla``).
        ffn_size: intermediate size of the dense MLP (0 for models whose every layer is MoE).
        vocab_size: vocabulary.
        gated_mlp: SwiGLU-style MLP with three matrices (gate, up, down); False for GPT-style (two).
        tied_embeddings: input embedding and LM head share weights.
        params_b: published total parameter count, billions (checked against the computed count).
        moe: MoE layout, or None for dense models.
        mla: MLA ranks, or None for standard (GQA/MHA) attention.
        qkv_bias: Q, K and V projections carry biases (Qwen2, GPT-3; not Qwen3 or Llama).
        o_bias: the attention output projection carries a bias (GPT-3).
        mlp_bias: MLP (and expert) matrices carry biases (GPT-3).
        norm_bias: norms are LayerNorms with a bias (GPT-3); False for RMSNorm.
        qk_norm: per-head RMSNorm on queries and keys (Qwen3).
        norms_per_layer: norms per block: 2 (pre-attention, pre-MLP) for most models, 4 for
            Grok-1's sandwich norms.
        learned_pos_embeddings: rows of a learned position-embedding table (GPT-3: 2048); 0 for RoPE.
        context_length: longest sequence the model was built for (``max_position_embeddings``);
            None when unknown.
        active_params_b: published parameters active per token (MoE), billions; None when unpublished.
        native_dtype: the dtype its published weights are in (``bf16``, or ``fp8`` for DeepSeek-V3): what
            plans serve it in by default (:mod:`planner.perf.precision`).
        mtp_layers: multi-token-prediction modules its checkpoint ships (DeepSeek-V3: 1), what MTP
            speculative decoding drafts with; 0: none.
        sources: where the numbers came from.
    """

    name: str
    hf_id: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    gated_mlp: bool
    tied_embeddings: bool
    params_b: float
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    learned_pos_embeddings: int = 0
    context_length: int | None = None
    active_params_b: float | None = None
    native_dtype: str = "bf16"
    mtp_layers: int = 0
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def moe_layers(self) -> int:
        """Blocks whose MLP is a mixture of experts (0 for dense models)."""
        return 0 if self.moe is None else self.num_layers - self.moe.first_dense_layers

    def kv_values_per_token_per_layer(self) -> int:
        """Cached scalars per token per layer: K and V for GQA/MHA, the latent plus rope key for MLA.

        >>> from planner.catalog import load_catalog
        >>> load_catalog().model("Llama-3.1-8B").kv_values_per_token_per_layer()
        2048
        """
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> float:
        """KV-cache bytes one token occupies over all layers (``bytes_per_value`` 2 for BF16, 1 for FP8).

        >>> from planner.catalog import load_catalog
        >>> load_catalog().model("Llama-3.1-8B").kv_bytes_per_token()
        131072.0
        """
        return self.kv_values_per_token_per_layer() * self.num_layers * bytes_per_value

    def norm_params(self) -> int:
        """Weights of one norm over the hidden size (scale, plus shift for LayerNorm)."""
        return self.hidden_size * (2 if self.norm_bias else 1)

    def attention_params_per_layer(self) -> int:
        """Weights of one attention block: projections, their biases and attention-internal norms.

        The block's own pre/post norms are counted in :meth:`computed_params`; MLA's latent norms
        and Qwen3's per-head q/k norms sit inside attention and are counted here.
        """
        h = self.hidden_size
        if self.mla is not None:
            m = self.mla
            qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
            q = h * m.q_lora_rank + m.q_lora_rank * self.num_heads * qk_head if m.q_lora_rank else (
                h * self.num_heads * qk_head
            )
            kv_down = h * (m.kv_lora_rank + m.qk_rope_head_dim)
            kv_up = m.kv_lora_rank * self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
            o = self.num_heads * m.v_head_dim * h
            norms = m.kv_lora_rank + (m.q_lora_rank or 0)
            return q + kv_down + kv_up + o + norms
        q_out = self.num_heads * self.head_dim
        kv_out = 2 * self.num_kv_heads * self.head_dim
        total = h * q_out + h * kv_out + q_out * h
        if self.qkv_bias:
            total += q_out + kv_out
        if self.o_bias:
            total += h
        if self.qk_norm:
            total += 2 * self.head_dim
        return total

    def mlp_params(self, ffn: int) -> int:
        """Weights of one MLP (or one expert) of intermediate size ``ffn``, biases included."""
        mats = 3 if self.gated_mlp else 2
        total = mats * self.hidden_size * ffn
        if self.mlp_bias:
            total += (mats - 1) * ffn + self.hidden_size
        return total

    def embedding_params(self) -> int:
        """Token embedding, LM head (unless tied) and learned position table."""
        h = self.hidden_size
        return self.vocab_size * h * (1 if self.tied_embeddings else 2) + self.learned_pos_embeddings * h

    def layer_params(self, layer: int) -> int:
        """Weights of block ``layer`` (0-based): attention, norms, and its MLP or experts plus router."""
        h = self.hidden_size
        total = self.attention_params_per_layer() + self.norms_per_layer * self.norm_params()
        if self.moe is None or layer < self.moe.first_dense_layers:
            ffn = self.ffn_size if self.moe is None else self.moe.dense_ffn_size
            return total + self.mlp_params(ffn)
        e = self.moe
        total += (e.num_experts + e.num_shared_experts) * self.mlp_params(e.expert_ffn_size)
        total += h * e.num_experts + (e.num_experts if e.router_bias else 0)
        return total

    def computed_params(self) -> int:
        """Total parameters from the architecture (embeddings, attention, MLP/experts, router, norms).

        >>> from planner.catalog import load_catalog
        >>> round(load_catalog().model("Llama-3.1-8B").computed_params() / 1e9, 2)
        8.03
        """
        total = self.embedding_params() + self.norm_params()  # final norm
        return total + sum(self.layer_params(i) for i in range(self.num_layers))

    def active_params(self) -> int:
        """Parameters touched per token (routed experts counted top-k times, not all of them)."""
        if self.moe is None:
            return self.computed_params()
        e = self.moe
        inactive = (e.num_experts - e.experts_per_token) * self.mlp_params(e.expert_ffn_size)
        return self.computed_params() - self.moe_layers * inactive

    def weight_bytes(self, bytes_per_param: float = 2.0) -> float:
        """Bytes of all weights at ``bytes_per_param`` (2 for BF16, 1 for FP8).

        >>> from planner.catalog import load_catalog
        >>> round(load_catalog().model("Llama-3.1-8B").weight_bytes() / 1e9, 2)
        16.06
        """
        return self.computed_params() * bytes_per_param


@dataclass(frozen=True)
class KVTierSpec:
    """One KV-cache tier below GPU memory (host DRAM, local NVMe, a shared remote pool).

    Why per GPU: with tensor parallelism each GPU holds and moves its own share of every token's KV over
    its own link (PCIe lane set, NIC), so a tier's capacity and read bandwidth per GPU scale with the
    replica exactly as HBM does. A ``shared`` tier (a Mooncake-store-like pool) is one pool for the
    whole fleet: its ``capacity_gb`` is the pool's, its ``read_gbps`` still per reading GPU.

    Attributes:
        name: catalog key (``dram``, ``ssd``, ``remote``).
        capacity_gb: KV bytes it holds per GPU (the pool's total when ``shared``).
        read_gbps: GB/s into one GPU's HBM when a prefix is loaded from it.
        latency_us: fixed cost of one load (issue, lookup, first byte).
        price_per_gb_hour: USD per GB-hour of capacity, to weigh a tier against GPUs.
        shared: one pool read by every replica (else a per-replica tier).
        sources: where each number came from.
    """

    name: str
    capacity_gb: float
    read_gbps: float
    latency_us: float
    price_per_gb_hour: float
    shared: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Catalog:
    """All known GPUs and models, keyed by name.

    Lookup is case-insensitive and also accepts a GPU's ``aliases`` and a model's ``hf_id``, so names
    that come from NVML or from a serving engine's metrics resolve without a mapping table.
    """

    gpus: dict[str, GPUSpec]
    models: dict[str, ModelSpec]
    kv_tiers: dict[str, KVTierSpec] = field(default_factory=dict)

    def kv_tier(self, name: str) -> KVTierSpec:
        """The KV tier called ``name`` (``dram``, ``ssd``, ``remote`` in the bundled catalog).

        Raises:
            InputError: no such tier; the message lists the known names.

        >>> from planner.catalog import load_catalog
        >>> load_catalog().kv_tier("DRAM").shared
        False
        """
        return _lookup(self.kv_tiers, {}, name, "KV tier")

    def gpu(self, name: str) -> GPUSpec:
        """The GPU called ``name`` (or one of its aliases).

        Raises:
            InputError: no such GPU; the message lists the known names.

        >>> from planner.catalog import load_catalog
        >>> load_catalog().gpu("a100-sxm").name
        'A100-80GB-SXM'
        """
        extra = {alias: spec for spec in self.gpus.values() for alias in spec.aliases}
        return _lookup(self.gpus, extra, name, "GPU")

    def model(self, name: str) -> ModelSpec:
        """The model called ``name`` (or whose ``hf_id`` is ``name``).

        Raises:
            InputError: no such model; the message lists the known names.

        >>> from planner.catalog import load_catalog
        >>> load_catalog().model("meta-llama/Llama-3.1-8B").name
        'Llama-3.1-8B'
        """
        extra = {spec.hf_id: spec for spec in self.models.values() if spec.hf_id}
        return _lookup(self.models, extra, name, "model")


def _lookup(table: dict[str, T], extra: dict[str, T], name: str, what: str) -> T:
    if name in table:
        return table[name]
    folded = {k.lower(): v for k, v in extra.items()}
    folded.update({k.lower(): v for k, v in table.items()})
    if name.lower() in folded:
        return folded[name.lower()]
    raise InputError(f"unknown {what} {name!r}", field=what.lower(),
                     expected="one of " + ", ".join(sorted(table)))

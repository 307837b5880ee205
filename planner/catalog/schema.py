"""Catalog entries as frozen dataclasses (the core's view) built from pydantic records (the edge).

Units are in the field names: ``_tflops`` dense TFLOP/s (no sparsity), ``_gb`` 1e9 bytes, ``_tbps``
1e12 bytes/s, ``_gbps`` 1e9 bytes/s, ``_gbit`` 1e9 bits/s, ``_w`` watts, ``_mhz`` MHz.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator type, per GPU.

    Attributes:
        name: catalog key, e.g. ``H100-SXM``.
        bf16_tflops: dense BF16 tensor-core peak.
        fp8_tflops: dense FP8 tensor-core peak (0 when the GPU has no FP8 units).
        hbm_gb: device memory capacity.
        hbm_tbps: device memory bandwidth.
        tdp_w: board power limit (TDP / TBP).
        idle_w: power at idle with the driver loaded.
        link_gbps: intra-node GPU-to-GPU bandwidth per direction per GPU (NVLink, Infinity Fabric, PCIe).
        nic_gbit: inter-node network per GPU, Gbit/s.
        gpus_per_node: GPUs in the standard server (DGX/HGX: 8).
        max_sm_clock_mhz: highest SM (boost) clock.
        min_sm_clock_mhz: lowest clock that can be locked (for clock-locking power control).
        price_per_hour: default on-demand price per GPU-hour in USD (configurable by user YAML).
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
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


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
    """

    num_experts: int
    experts_per_token: int
    num_shared_experts: int
    expert_ffn_size: int
    first_dense_layers: int = 0
    dense_ffn_size: int = 0
    num_groups: int = 1


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
        num_layers: transformer blocks.
        hidden_size: model width.
        num_heads: query heads.
        num_kv_heads: key/value heads (GQA); equals ``num_heads`` for MHA.
        head_dim: per-head dimension of Q/K/V (for MLA models, see ``mla``).
        ffn_size: intermediate size of the dense MLP (0 for models whose every layer is MoE).
        vocab_size: vocabulary.
        gated_mlp: SwiGLU-style MLP with three matrices (gate, up, down); False for GPT-style (two).
        tied_embeddings: input embedding and LM head share weights.
        params_b: published total parameter count, billions (checked against the computed count).
        moe: MoE layout, or None for dense models.
        mla: MLA ranks, or None for standard (GQA/MHA) attention.
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
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def kv_values_per_token_per_layer(self) -> int:
        """Cached scalars per token per layer: K and V for GQA/MHA, the latent plus rope key for MLA."""
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def attention_params_per_layer(self) -> int:
        """Weights of one attention block (projections only; norms are counted separately)."""
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
        q = h * self.num_heads * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        o = self.num_heads * self.head_dim * h
        return q + kv + o

    def mlp_params(self, ffn: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * ffn

    def computed_params(self) -> int:
        """Total parameters from the architecture (embeddings, attention, MLP/experts, router, norms)."""
        h = self.hidden_size
        total = self.vocab_size * h * (1 if self.tied_embeddings else 2)
        total += h  # final norm
        for layer in range(self.num_layers):
            total += self.attention_params_per_layer() + 2 * h  # two norms per block
            if self.moe is None or layer < self.moe.first_dense_layers:
                ffn = self.ffn_size if self.moe is None else self.moe.dense_ffn_size
                total += self.mlp_params(ffn)
            else:
                e = self.moe
                total += (e.num_experts + e.num_shared_experts) * self.mlp_params(e.expert_ffn_size)
                total += h * e.num_experts  # router
        return total

    def active_params(self) -> int:
        """Parameters touched per token (routed experts counted top-k times, not all of them)."""
        if self.moe is None:
            return self.computed_params()
        e = self.moe
        moe_layers = self.num_layers - e.first_dense_layers
        inactive = (e.num_experts - e.experts_per_token) * self.mlp_params(e.expert_ffn_size)
        return self.computed_params() - moe_layers * inactive


@dataclass(frozen=True)
class Catalog:
    """All known GPUs and models, keyed by name (case-insensitive lookup)."""

    gpus: dict[str, GPUSpec]
    models: dict[str, ModelSpec]

    def gpu(self, name: str) -> GPUSpec:
        return _lookup(self.gpus, name, "GPU")

    def model(self, name: str) -> ModelSpec:
        return _lookup(self.models, name, "model")


def _lookup(table: dict[str, T], name: str, what: str) -> T:
    if name in table:
        return table[name]
    folded = {k.lower(): v for k, v in table.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    from traces.errors import InputError

    raise InputError(f"unknown {what} {name!r}", expected="one of " + ", ".join(sorted(table)))

"""The roofline per-node model: one replica of a model on a GPU type in a TP/PP/EP layout.

:func:`build_replica_perf` checks the layout, works out memory (weights, KV bytes per token, activations,
reserve, KV capacity) and folds the architecture, the layout, the GPU's peaks, the SM clock and the
calibration into the flat parameter vector that :mod:`planner.perf.kernel` evaluates. The returned
:class:`RooflinePerf` implements :class:`planner.perf.api.ReplicaPerf`.

Operators per transformer block (per GPU, after TP/EP splits):

- QKV projection (GQA: ``h -> (Hq + 2 Hkv) d / tp``; MLA: q down/up, kv down, kv up), O projection;
- attention: prefill FLOPs ``2 * pairs * Hq/tp * (d_qk + d_v)`` (quadratic in context through
  ``prefill_pairs``); decode reads ``kv`` cached tokens (``2 Hkv/tp d`` values each for GQA, the
  ``kv_lora + rope`` latent for MLA, which TP replicates) and, for absorbed MLA, does
  ``2 Hq/tp (2 kv_lora + rope)`` FLOPs per cached token. For MLA the kv up-projection runs as a GEMM over
  the step's tokens in both paths: naive prefill up-projects the new tokens' latents; absorbed decode
  multiplies queries and outputs by the same ``W_UK``/``W_UV`` matrices (same FLOPs and weight bytes);
- MLP (gate/up and down) or MoE: routed experts (``E/ep`` per GPU, each sliced ``tp/ep`` ways, rows per
  expert ``T k / E * imbalance`` on the busiest GPU, experts touched ``1 - (1 - k/E)^T``), shared
  experts (TP-split like a dense MLP) and the router GEMM;
- norms, RoPE, SiLU*mul, residual adds (elementwise, bandwidth-bound), embedding gather, LM head over
  the last token of each sequence;
- communication: ring all-reduce after attention and after dense MLPs (and after MoE when experts are
  TP-sliced), dispatch + combine all-to-all for EP, activations between PP stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.perf import kernel as kn
from planner.perf.api import Parallelism, ReplicaPerf
from planner.perf.calibration import Calibration, resolve_calibration
from planner.perf.spec_decode import SpecDecode
from traces.errors import InputError

_SINGLE_GPU = Parallelism()

DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}

FRAMEWORK_RESERVE_GB = 1.0
"""CUDA context, cuBLAS/NCCL workspaces and CUDA graphs held outside the KV cache (vLLM-like engines
reserve on the order of a gigabyte; the engine validation data pins it down when present)."""


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per-GPU memory of the largest pipeline stage, bytes (1e9 per GB).

    Attributes:
        usable: ``mem_fraction * hbm``.
        weights: parameters held by the GPU.
        activations: peak activations and workspace for ``max_batch_tokens`` tokens.
        reserve: framework reserve.
        kv_bytes_per_token: KV cache bytes per token on this GPU (all its layers).
        kv_capacity_tokens: tokens of KV cache that fit in what is left.
    """

    usable: float
    weights: float
    activations: float
    reserve: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int


@dataclass(frozen=True)
class _Layout:
    """Derived per-GPU shapes of a layout (after validation)."""

    stage_layers: int
    moe_layers: int
    dense_layers: int
    hq: float
    hkv: float
    kv_values: float
    dp: int = 1
    """GPUs that run attention data-parallel (1: attention is tensor-parallel)."""


def _check_layout(model: ModelSpec, gpu: GPUSpec, par: Parallelism) -> _Layout:
    tp, pp, ep = par.tp, par.pp, par.ep
    where = f"{model.name} on {gpu.name} tp={tp} pp={pp} ep={ep}"
    for name, v in (("tp", tp), ("pp", pp), ("ep", ep)):
        if v < 1:
            raise InputError(f"{where}: {name} must be >= 1", field=name, expected="a positive integer")
    if model.num_heads % tp:
        raise InputError(f"{where}: tp={tp} does not divide the {model.num_heads} attention heads",
                         field="tp", expected=f"a divisor of {model.num_heads}")
    if model.mla is None and model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise InputError(f"{where}: tp={tp} neither divides nor is a multiple of the {model.num_kv_heads} "
                         "KV heads", field="tp", expected="a divisor or multiple of num_kv_heads")
    if pp > model.num_layers:
        raise InputError(f"{where}: pp={pp} exceeds the {model.num_layers} layers", field="pp",
                         expected=f"at most {model.num_layers}")
    if ep > 1:
        if model.moe is None:
            raise InputError(f"{where}: ep={ep} on a dense model", field="ep", expected="1 for dense models")
        if model.moe.num_experts % ep:
            raise InputError(f"{where}: ep={ep} does not divide the {model.moe.num_experts} experts",
                             field="ep", expected=f"a divisor of {model.moe.num_experts}")
        if tp % ep:
            raise InputError(f"{where}: ep={ep} must divide tp={tp} (experts are spread over the TP GPUs "
                             "of a stage, each sliced tp/ep ways)", field="ep", expected=f"a divisor of {tp}")
    if par.dp_attention and (model.moe is None or ep != tp or pp != 1 or tp < 2):
        raise InputError(f"{where}: DP attention needs a MoE model with ep == tp >= 2 and pp == 1 (the "
                         "GPUs share the experts)", field="dp_attention",
                         expected="an MoE layout with ep == tp")
    if model.moe is not None and tp // ep > 1:
        ffn = model.moe.expert_ffn_size
        if ffn % (tp // ep):
            raise InputError(f"{where}: tp/ep={tp // ep} does not divide the expert size {ffn}",
                             field="tp", expected="tp/ep dividing expert_ffn_size")
    stage_layers = math.ceil(model.num_layers / pp)
    n_moe = 0 if model.moe is None else model.num_layers - model.moe.first_dense_layers
    moe_layers = min(stage_layers, n_moe)
    # per GPU per token of the replica's batch: with DP attention a GPU runs all heads for 1/dp of the
    # tokens, which costs what 1/dp of the heads for all of them costs (hq, hkv below)
    hq = model.num_heads / tp
    dp = tp if par.dp_attention else 1
    if model.mla is not None:
        hkv = 1.0 / dp
        kv_values = float(model.mla.kv_lora_rank + model.mla.qk_rope_head_dim)  # replicated over TP
    else:
        hkv = model.num_kv_heads / tp if par.dp_attention else max(1.0, model.num_kv_heads / tp)
        kv_values = 2.0 * (model.num_kv_heads if par.dp_attention else hkv) * model.head_dim
    return _Layout(stage_layers=stage_layers, moe_layers=moe_layers, dense_layers=stage_layers - moe_layers,
                   hq=hq, hkv=hkv, kv_values=kv_values, dp=dp)


def _gemm_ops(model: ModelSpec, par: Parallelism, lay: _Layout, *, wb: float,
              imbalance: float) -> list[list[float]]:
    """GEMM table rows ``[family, N, K, count, rows_mode, p_hit, row_scale, wbytes, launches]``."""
    h = model.hidden_size
    # with DP attention the attention, dense MLPs, shared experts, router and LM head run whole on each
    # GPU over its 1/dp of the tokens (rows scaled by 1/dp, weights not split); experts stay EP
    dp = lay.dp
    tp = 1 if dp > 1 else par.tp
    rows = 1.0 / dp
    hq = model.num_heads / tp
    L = float(lay.stage_layers)
    ops: list[list[float]] = []

    def op(fam: int, n: float, k: float, count: float, *, mode: float = kn.ROWS_ALL, p_hit: float = 0.0,
           scale: float = rows, w: float = wb, launches: float | None = None) -> None:
        if count > 0 and n > 0 and k > 0:
            ops.append([float(fam), float(n), float(k), float(count), mode, p_hit, scale, w,
                        float(count if launches is None else launches)])

    if model.mla is None:
        d = model.head_dim
        hkv = model.num_kv_heads if dp > 1 else lay.hkv
        op(kn.F_QKV_PROJ, (hq + 2 * hkv) * d, h, L)
        op(kn.F_O_PROJ, h, hq * d, L)
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            op(kn.F_QKV_PROJ, m.q_lora_rank, h, L)
            op(kn.F_QKV_PROJ, hq * qk, m.q_lora_rank, L)
        else:
            op(kn.F_QKV_PROJ, hq * qk, h, L)
        op(kn.F_QKV_PROJ, m.kv_lora_rank + m.qk_rope_head_dim, h, L)
        op(kn.F_QKV_PROJ, hq * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, L)
        op(kn.F_O_PROJ, h, hq * m.v_head_dim, L)
    mats = 2 if model.gated_mlp else 1  # gate+up fused into one GEMM
    if lay.dense_layers:
        ffn = model.ffn_size if model.moe is None else model.moe.dense_ffn_size
        op(kn.F_MLP, mats * ffn / tp, h, lay.dense_layers)
        op(kn.F_MLP, h, ffn / tp, lay.dense_layers)
    if model.moe is not None and lay.moe_layers:
        e = model.moe
        slice_ = par.tp // par.ep
        fe = e.expert_ffn_size / slice_
        per_gpu = e.num_experts / par.ep
        p_hit = e.experts_per_token / e.num_experts
        # grouped GEMM (fused MoE): one launch per layer covers all of the GPU's experts
        op(kn.F_EXPERTS, mats * fe, h, lay.moe_layers * per_gpu, mode=kn.ROWS_EXPERT, p_hit=p_hit,
           scale=imbalance, launches=lay.moe_layers)
        op(kn.F_EXPERTS, h, fe, lay.moe_layers * per_gpu, mode=kn.ROWS_EXPERT, p_hit=p_hit,
           scale=imbalance, launches=lay.moe_layers)  # rows: every token of the replica routed here
        if e.num_shared_experts:
            fs = e.num_shared_experts * e.expert_ffn_size / tp
            op(kn.F_SHARED_EXPERTS, mats * fs, h, lay.moe_layers)
            op(kn.F_SHARED_EXPERTS, h, fs, lay.moe_layers)
        op(kn.F_ROUTER, e.num_experts, h, lay.moe_layers, w=2.0)
    # LM head on the last stage (embedding and head stay bf16), the largest stage takes it
    op(kn.F_LM_HEAD, model.vocab_size / tp, h, 1.0, mode=kn.ROWS_LAST, w=2.0)
    return ops


def _memory(model: ModelSpec, gpu: GPUSpec, par: Parallelism, lay: _Layout, *, wb: float, kvb: float,
            mem_fraction: float, max_batch_tokens: int) -> MemoryBreakdown:
    h = model.hidden_size
    ep = par.ep
    tp = 1 if lay.dp > 1 else par.tp  # DP attention: attention, dense MLPs, shared experts and LM head whole
    # attention weights of one layer on one GPU
    if model.mla is None:
        d = model.head_dim
        hq, hkv = model.num_heads / tp, (model.num_kv_heads if lay.dp > 1 else lay.hkv)
        attn = h * (hq + 2 * hkv) * d + hq * d * h
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        replicated = h * (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim)
        split = (m.q_lora_rank or h) * model.num_heads * qk + m.kv_lora_rank * model.num_heads * (
            m.qk_nope_head_dim + m.v_head_dim) + model.num_heads * m.v_head_dim * h
        attn = replicated + split / tp
    linear = lay.stage_layers * attn
    if lay.dense_layers:
        ffn = model.ffn_size if model.moe is None else model.moe.dense_ffn_size
        linear += lay.dense_layers * model.mlp_params(ffn) / tp
    if model.moe is not None and lay.moe_layers:
        e = model.moe
        experts = e.num_experts / ep * model.mlp_params(e.expert_ffn_size) / max(par.tp // ep, 1)
        shared = e.num_shared_experts * model.mlp_params(e.expert_ffn_size) / tp
        linear += lay.moe_layers * (experts + shared)
    small = lay.stage_layers * (2 * h + (h * model.moe.num_experts if model.moe and lay.moe_layers else 0))
    tables = 1 if (model.tied_embeddings or par.pp > 1) else 2
    weights = linear * wb + (small + h + tables * model.vocab_size * h / tp) * 2.0
    # activations: one max-size batch through the widest layer, plus fp32 logits for up to 256 seqs
    ffn_w = (model.ffn_size if model.moe is None else
             max(model.moe.dense_ffn_size, model.moe.expert_ffn_size * model.moe.experts_per_token)) / tp
    qkv_w = model.num_heads * (model.head_dim if model.mla is None else
                               model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim) / tp
    acts = max_batch_tokens * (4 * h + qkv_w + 3 * ffn_w) * 2.0
    acts += min(max_batch_tokens, 256) * model.vocab_size / tp * 4.0
    kv_per_token = lay.stage_layers * lay.kv_values * kvb
    usable = mem_fraction * gpu.memory_bytes
    reserve = FRAMEWORK_RESERVE_GB * 1e9
    free = usable - weights - acts - reserve
    # each GPU holds the KV of its own sequences under DP attention: the replica holds dp times as many
    cap = int(max(free, 0.0) // kv_per_token) * lay.dp
    return MemoryBreakdown(usable=usable, weights=weights, activations=acts, reserve=reserve,
                           kv_bytes_per_token=kv_per_token, kv_capacity_tokens=cap)


def _params(model: ModelSpec, gpu: GPUSpec, par: Parallelism, lay: _Layout, cal: Calibration, *,
            wb: float, kvb: float, clock_r: float, imbalance: float) -> NDArray[np.float64]:
    h = model.hidden_size
    ops = _gemm_ops(model, par, lay, wb=wb, imbalance=imbalance)
    prm = np.zeros(kn.HEADER + kn.OP_WIDTH * len(ops))
    bw_nominal = gpu.hbm_tbps * 1e12
    mem_slow = 1.0 + cal.mem_clock_sensitivity * (1.0 / clock_r - 1.0)
    prm[kn.H_PEAK_BF16] = gpu.bf16_tflops * 1e12 * clock_r
    prm[kn.H_PEAK_FP8] = (gpu.fp8_tflops or gpu.bf16_tflops) * 1e12 * clock_r
    prm[kn.H_BW] = bw_nominal / mem_slow
    prm[kn.H_BW_NOMINAL] = bw_nominal
    prm[kn.H_PP] = par.pp
    prm[kn.H_LAYERS] = lay.stage_layers
    prm[kn.H_MOE_SLOWDOWN] = cal.moe_compute_slowdown
    prm[kn.H_MOE_LAUNCH] = cal.moe_launch_s
    prm[kn.H_OVER_STEP] = cal.step_s
    prm[kn.H_OVER_SEQ] = cal.per_seq_s
    # operator fixed costs (launch, ramp-up, tail) were measured under CUDA-graph replay, as engines run
    # a step, so they apply here; kernel_s is any extra per-kernel cost on top (0 unless fitted)
    for base, g, fp in ((kn.H_G16_EC, cal.gemm_bf16, kn.H_G16_OVERLAP),
                        (kn.H_G8_EC, cal.gemm_fp8, kn.H_G8_OVERLAP)):
        prm[base:base + 6] = [g.ec_max, g.m_half, g.w_half, g.em_max, g.p, g.launch_s + cal.kernel_s]
        prm[fp] = g.overlap
    a = cal.attention
    prm[kn.H_PF_EC], prm[kn.H_PF_XHALF], prm[kn.H_PF_EM], prm[kn.H_PF_LAUNCH] = (
        a.prefill_ec, a.prefill_x_half, a.prefill_em, a.prefill_launch_s + cal.kernel_s)
    prm[kn.H_PF_WHALF], prm[kn.H_PF_BALHALF], prm[kn.H_PF_P] = (
        a.prefill_w_half, a.prefill_bal_half, a.prefill_p)
    prm[kn.H_PF_HEADS] = lay.hq
    # an fp8 cache is dequantized in the kernel: it streams its (half as many) bytes less efficiently
    slow = cal.kv_fp8_attn_slowdown if kvb < 2.0 else 1.0
    prm[kn.H_DEC_EM], prm[kn.H_DEC_EC], prm[kn.H_DEC_LAUNCH] = (
        a.decode_em / slow, a.decode_ec, a.decode_launch_s + cal.kernel_s)
    prm[kn.H_DEC_EM_NOSPLIT], prm[kn.H_DEC_SPLIT_UNITS] = a.decode_em_nosplit / slow, a.decode_split_units
    prm[kn.H_DEC_UNIT_FRAC], prm[kn.H_DEC_Q], prm[kn.H_DEC_LHALF] = (
        a.decode_unit_frac, a.decode_q, a.decode_l_half)
    # decode work units per sequence: KV heads on this GPU (MLA: the one shared latent)
    prm[kn.H_DEC_UNITS_PER_SEQ] = 1.0 / lay.dp if model.mla is not None else lay.hkv
    if model.mla is None:
        d = model.head_dim
        prm[kn.H_PF_FLOPS_PER_PAIR] = 4.0 * lay.hq * d
        prm[kn.H_PF_BYTES_PER_TOKEN] = 2 * lay.hq * d * kn.ACT_BYTES  # queries in, outputs out
        prm[kn.H_PF_KV_BYTES_PER_TOKEN] = 2 * lay.hkv * d * kvb  # keys and values of the context
        prm[kn.H_DEC_FLOPS_PER_KV] = 4.0 * lay.hq * d
    else:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        prm[kn.H_PF_FLOPS_PER_PAIR] = 2.0 * lay.hq * (qk + m.v_head_dim)
        prm[kn.H_PF_BYTES_PER_TOKEN] = lay.hq * (qk + m.v_head_dim) * kn.ACT_BYTES
        prm[kn.H_PF_KV_BYTES_PER_TOKEN] = lay.hq * (qk + m.v_head_dim) * kn.ACT_BYTES  # up-projected k, v
        prm[kn.H_DEC_FLOPS_PER_KV] = 2.0 * lay.hq * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
    prm[kn.H_DEC_BYTES_PER_KV] = lay.kv_values * kvb / lay.dp  # a GPU reads its own sequences' KV
    # elementwise bytes per token over the stage: 2 rmsnorm (r+w h), 2 residual adds (2r+w h),
    # RoPE on q and k (r+w), SiLU*mul (read 2f, write f); embedding gather and final norm
    q_rope = lay.hq * (model.head_dim if model.mla is None else model.mla.qk_rope_head_dim)
    k_rope = lay.hkv * (model.head_dim if model.mla is None else model.mla.qk_rope_head_dim)
    act_dense = 0.0
    if lay.dense_layers:
        ffn = model.ffn_size if model.moe is None else model.moe.dense_ffn_size
        act_dense = lay.dense_layers * 3 * ffn / par.tp
    act_moe = 0.0
    if model.moe is not None and lay.moe_layers:
        e = model.moe
        fe = e.expert_ffn_size / (par.tp // par.ep)
        act_moe = lay.moe_layers * 3 * fe * (e.experts_per_token * imbalance / par.ep + e.num_shared_experts)
    # bytes per token by operator kind, each streamed at its own fitted fraction of peak bandwidth
    kinds = {
        "rmsnorm": lay.stage_layers * 2 * 2 * h + 2 * h,
        "add": lay.stage_layers * 2 * 3 * h + 2 * h,
        "rope": lay.stage_layers * 2 * (q_rope + k_rope),
        "silu_mul": act_dense + act_moe,
    }
    ew_bytes = sum(kinds.values()) * kn.ACT_BYTES
    ew_time = sum(v / cal.ew_fraction(k) for k, v in kinds.items()) * kn.ACT_BYTES
    prm[kn.H_EW_BYTES_PER_TOKEN] = ew_bytes
    prm[kn.H_EW_LAUNCHES] = 6 * lay.stage_layers + 2
    prm[kn.H_EW_EM] = ew_bytes / ew_time
    prm[kn.H_EW_LAUNCH] = cal.ew_launch_s + cal.kernel_s
    prm[kn.H_EW_OVERLAP] = cal.ew_overlap
    # communication
    slice_ = par.tp // par.ep
    moe_allreduce = lay.moe_layers if slice_ > 1 else 0
    # DP attention: nothing is tensor-parallel, so no all-reduce (the experts' all-to-all remains)
    prm[kn.H_AR_CALLS] = 0 if lay.dp > 1 else lay.stage_layers + lay.dense_layers + moe_allreduce
    prm[kn.H_TP] = par.tp
    prm[kn.H_AR_BYTES_PER_TOKEN] = h * kn.ACT_BYTES
    in_node = par.gpus <= gpu.gpus_per_node
    link = (gpu.link_gbps * 1e9 if par.tp <= gpu.gpus_per_node else gpu.nic_gbit / 8 * 1e9) * cal.link_eff
    prm[kn.H_LINK_BW] = link
    prm[kn.H_ALPHA] = cal.alpha_s
    prm[kn.H_COLL_BASE] = cal.collective_base_s
    prm[kn.H_EP] = par.ep
    prm[kn.H_A2A_CALLS] = 2 * lay.moe_layers if par.ep > 1 else 0
    if model.moe is not None and par.ep > 1:
        # each GPU dispatches its 1/ep share of the tokens to k experts, (ep-1)/ep of them remote;
        # the busiest GPU receives `imbalance` times the mean
        prm[kn.H_A2A_BYTES_PER_TOKEN] = (model.moe.experts_per_token * h * kn.ACT_BYTES * imbalance
                                        * (par.ep - 1) / par.ep / par.ep)
    for op, slots, n in (("all_reduce", (kn.H_AR_BASE, kn.H_AR_ALPHA, kn.H_AR_BW_LL, kn.H_AR_BASE_SIMPLE,
                                          kn.H_AR_BW_SIMPLE), par.tp),
                         ("all_to_all", (kn.H_A2A_BASE, kn.H_A2A_ALPHA, kn.H_A2A_BW_LL, kn.H_A2A_BASE_SIMPLE,
                                         kn.H_A2A_BW_SIMPLE), par.ep)):
        cf = cal.comm(op)
        if n <= gpu.gpus_per_node:  # NVLink: the fitted protocols
            vals = (cf.base_s, cf.alpha_s, cf.ll_eff * gpu.link_gbps * 1e9, cf.simple_base_s,
                    cf.simple_eff * gpu.link_gbps * 1e9)
        else:  # across nodes the NIC bounds both protocols (not measured: the prior's line)
            nic = gpu.nic_gbit / 8 * 1e9 * cal.link_eff
            vals = (cal.collective_base_s, cal.alpha_s, nic, cal.collective_base_s, nic)
        for slot, v in zip(slots, vals, strict=True):
            prm[slot] = v
    prm[kn.H_PP_BYTES_PER_TOKEN] = h * kn.ACT_BYTES
    prm[kn.H_PP_LINK_BW] = (gpu.link_gbps * 1e9 if in_node else gpu.nic_gbit / 8 * 1e9) * cal.link_eff
    pw = cal.power
    prm[kn.H_P_IDLE], prm[kn.H_P_BUSY], prm[kn.H_P_COMPUTE], prm[kn.H_P_MEM] = (
        pw.idle_w, pw.busy_w, pw.compute_w, pw.mem_w)
    prm[kn.H_CLOCK_R] = clock_r
    prm[kn.H_CLOCK_EXP] = pw.clock_exp
    prm[kn.H_TDP] = gpu.tdp_w
    prm[kn.H_THROTTLE_EXP] = cal.throttle_exp
    prm[kn.H_N_OPS] = len(ops)
    for j, row in enumerate(ops):
        prm[kn.HEADER + j * kn.OP_WIDTH: kn.HEADER + (j + 1) * kn.OP_WIDTH] = row
    return prm


def _lm_head_bytes(model: ModelSpec, par: Parallelism, lay: _Layout) -> float:
    """Bytes of the LM head on one GPU (bf16, split over TP unless attention is data-parallel)."""
    return model.vocab_size * model.hidden_size / (1 if lay.dp > 1 else par.tp) * 2.0


def _draft_bytes(model: ModelSpec, par: Parallelism, lay: _Layout, mem: MemoryBreakdown,
                 spec: SpecDecode) -> float:
    """Weights one draft proposal streams per GPU: ``draft_layers`` average transformer layers of the
    stage (MTP: DeepSeek-V3's one extra block; EAGLE: a one-layer head), plus the LM head they share
    with the target model (n-gram lookup: none)."""
    if spec.draft_layers <= 0.0:
        return 0.0
    lm = _lm_head_bytes(model, par, lay)
    tables = 1 if (model.tied_embeddings or par.pp > 1) else 2
    layer = max(mem.weights - tables * lm, 0.0) / lay.stage_layers
    return spec.draft_layers * layer + lm


def _with_spec(prm: NDArray[np.float64], model: ModelSpec, par: Parallelism, lay: _Layout,
               mem: MemoryBreakdown, spec: SpecDecode | None) -> NDArray[np.float64]:
    """Fill the speculative-decoding slots (left 0, i.e. off, when ``spec`` is None).

    The draft's share of a one-token decode forward is its weight bytes over the replica's (all stages):
    decode GEMMs stream weights at light load and do FLOPs in the same proportion under load."""
    if spec is None:
        return prm
    out = prm.copy()
    out[kn.H_SPEC_Q] = spec.k + 1.0
    out[kn.H_SPEC_E] = spec.expected_tokens
    out[kn.H_SPEC_DRAFT] = spec.k * _draft_bytes(model, par, lay, mem, spec) / (mem.weights * par.pp)
    return out


_Arr = NDArray[np.float64]


def _evaluate(prm: _Arr, xs: tuple[_Arr | float, _Arr | float, _Arr | float, _Arr | float],
              want_power: bool) -> _Arr:
    """Broadcast the four aggregates, run the kernel over them, restore the broadcast shape."""
    a, b, c, d = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in xs))
    flat = [np.ascontiguousarray(v, dtype=np.float64).ravel() for v in (a, b, c, d)]
    res: _Arr = kn.eval_many(prm, flat[0], flat[1], flat[2], flat[3], want_power)
    return res.reshape(a.shape)


@dataclass(frozen=True)
class StepBreakdown:
    """One step, explained: seconds per operator family, FLOPs and bytes per GPU, power."""

    total_s: float
    families_s: dict[str, float]
    flops_per_gpu: float
    bytes_per_gpu: float
    busy_s: float
    power_w: float


@dataclass(frozen=True)
class RooflinePerf:
    """Calibrated roofline model of one replica; implements :class:`planner.perf.api.ReplicaPerf`.

    Build it with :func:`build_replica_perf`; all fields are derived there.

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    >>> round(perf.memory.weights / 1e9, 1)
    16.1
    >>> float(perf.step_time_s(0, 0, 64, 64 * 1024)) > 0
    True
    """

    model: ModelSpec
    gpu: GPUSpec
    par: Parallelism
    weight_dtype: str
    kv_dtype: str
    sm_clock_mhz: float
    calibration: Calibration
    mem_fraction: float
    expert_imbalance: float
    max_batch_tokens: int
    memory: MemoryBreakdown
    params: NDArray[np.float64] = field(repr=False, compare=False)
    spec_decode: SpecDecode | None = None
    """Speculative decoding modelled in expectation (None: off, one token per decode step)."""

    @property
    def kv_capacity_tokens(self) -> int:
        return self.memory.kv_capacity_tokens

    @property
    def kv_bytes_per_token(self) -> float:
        return self.memory.kv_bytes_per_token

    @property
    def gpus(self) -> int:
        return self.par.gpus

    def step_time_s(self, prefill_tokens: NDArray[np.float64] | float,
                    prefill_pairs: NDArray[np.float64] | float,
                    decode_seqs: NDArray[np.float64] | float,
                    decode_kv: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Step latency in seconds, broadcast over the four aggregates (see :mod:`planner.perf.api`)."""
        return _evaluate(self.params, (prefill_tokens, prefill_pairs, decode_seqs, decode_kv), False)

    def step_power_w(self, prefill_tokens: NDArray[np.float64] | float,
                     prefill_pairs: NDArray[np.float64] | float,
                     decode_seqs: NDArray[np.float64] | float,
                     decode_kv: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Average power per GPU over such a step, watts (idle watts for an empty step)."""
        return _evaluate(self.params, (prefill_tokens, prefill_pairs, decode_seqs, decode_kv), True)

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        """``(a, b)`` with ``step(decode_seqs, kv) = a + b * kv`` for pure-decode steps (exact: every
        term but decode attention is independent of ``kv``, which is linear)."""
        t0 = kn.step_time(self.params, 0.0, 0.0, float(decode_seqs), 0.0)
        t1 = kn.step_time(self.params, 0.0, 0.0, float(decode_seqs), 1.0e6)
        return t0, (t1 - t0) / 1.0e6

    def kernel(self) -> tuple[object, NDArray[np.float64]]:
        """``(planner.perf.kernel.step_time, params)``; ``fn(params, pt, pairs, ds, kv) -> seconds``."""
        return kn.step_time, self.params

    def power_kernel(self) -> tuple[object, NDArray[np.float64]]:
        """``(planner.perf.kernel.step_power, params)``; ``fn(params, pt, pairs, ds, kv) -> watts`` per
        GPU, the numba-callable form of :meth:`step_power_w` (power in the simulator's loop)."""
        return kn.step_power, self.params

    def at_clock(self, sm_clock_mhz: float) -> RooflinePerf:
        """The same replica with the SM clock locked to ``sm_clock_mhz``."""
        return build_replica_perf(self.model, self.gpu, self.par, weight_dtype=self.weight_dtype,
                                  kv_dtype=self.kv_dtype, sm_clock_mhz=sm_clock_mhz,
                                  calibration=self.calibration, mem_fraction=self.mem_fraction,
                                  expert_imbalance=self.expert_imbalance,
                                  max_batch_tokens=self.max_batch_tokens, spec_decode=self.spec_decode)

    def with_calibration(self, calibration: Calibration) -> RooflinePerf:
        """The same replica under another calibration (used by the fitter)."""
        lay = _check_layout(self.model, self.gpu, self.par)
        prm = _params(self.model, self.gpu, self.par, lay, calibration, wb=DTYPE_BYTES[self.weight_dtype],
                      kvb=DTYPE_BYTES[self.kv_dtype], clock_r=self.sm_clock_mhz / self.gpu.max_sm_clock_mhz,
                      imbalance=self.expert_imbalance)
        return replace(self, calibration=calibration,
                       params=_with_spec(prm, self.model, self.par, lay, self.memory, self.spec_decode))

    def breakdown(self, prefill_tokens: float, prefill_pairs: float, decode_seqs: float,
                  decode_kv: float) -> StepBreakdown:
        """Seconds per operator family (they add up to the step), FLOPs, bytes and power of one step."""
        out = np.zeros(kn.OUT_SIZE)
        t = kn.step_eval(self.params, float(prefill_tokens), float(prefill_pairs), float(decode_seqs),
                        float(decode_kv), out)
        fams = {name: float(out[i]) for i, name in enumerate(kn.FAMILIES) if out[i] > 0.0}
        return StepBreakdown(total_s=float(t), families_s=fams, flops_per_gpu=float(out[kn.OUT_FLOPS]),
                             bytes_per_gpu=float(out[kn.OUT_BYTES]), busy_s=float(out[kn.OUT_BUSY]),
                             power_w=float(kn.power_of(self.params, t, out)))


def build_replica_perf(
    model: ModelSpec,
    gpu: GPUSpec,
    par: Parallelism = _SINGLE_GPU,
    *,
    weight_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    sm_clock_mhz: float | None = None,
    calibration: Calibration | None = None,
    mem_fraction: float = 0.9,
    expert_imbalance: float = 1.0,
    max_batch_tokens: int = 8192,
    min_kv_tokens: int = 2048,
    spec_decode: SpecDecode | None = None,
) -> RooflinePerf:
    """Performance model of one replica.

    Args:
        model: architecture from the catalog.
        gpu: GPU type from the catalog.
        par: TP/PP/EP layout (DP is replicas: nothing per replica).
        weight_dtype: ``bf16`` or ``fp8`` for the transformer blocks' linear layers (embeddings stay bf16).
        kv_dtype: ``bf16`` or ``fp8`` KV cache.
        sm_clock_mhz: locked SM clock; None runs at the catalog's maximum.
        calibration: efficiency/overhead/power numbers; None resolves the shipped ones
            (:func:`planner.perf.calibration.resolve_calibration`).
        mem_fraction: share of HBM the engine may use (vLLM's ``gpu_memory_utilization``).
        expert_imbalance: MoE load on the busiest GPU over the mean (max/mean >= 1), e.g. from the
            expert-placement solver.
        max_batch_tokens: largest batch the engine schedules (sizes the activation workspace).
        min_kv_tokens: the least KV cache a usable layout must hold.
        spec_decode: speculative decoding in expectation (:mod:`planner.perf.spec_decode`); None: off.
            Its draft layers' weights come out of the KV cache; the step becomes token-equivalent.

    Returns:
        A frozen :class:`RooflinePerf`.

    Raises:
        InputError: unknown dtype, clock out of range, TP/EP not dividing heads/experts, or the weights
            plus ``min_kv_tokens`` of KV cache do not fit (the message gives the numbers).

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=3))
    Traceback (most recent call last):
    ...
    traces.errors.InputError: field tp: ... tp=3 does not divide the 32 attention heads ...
    """
    for name, dt in (("weight_dtype", weight_dtype), ("kv_dtype", kv_dtype)):
        if dt not in DTYPE_BYTES:
            raise InputError(f"unknown dtype {dt!r}", field=name, expected="bf16 or fp8")
    if weight_dtype == "fp8" and gpu.fp8_tflops <= 0:
        raise InputError(f"{gpu.name} has no FP8 tensor cores", field="weight_dtype", expected="bf16")
    if not 0.0 < mem_fraction <= 1.0:
        raise InputError(f"mem_fraction {mem_fraction} out of range", field="mem_fraction",
                         expected="0 < mem_fraction <= 1")
    if expert_imbalance < 1.0:
        raise InputError(f"expert_imbalance {expert_imbalance} below 1", field="expert_imbalance",
                         expected="max/mean load >= 1")
    clock = gpu.max_sm_clock_mhz if sm_clock_mhz is None else float(sm_clock_mhz)
    if not gpu.min_sm_clock_mhz <= clock <= gpu.max_sm_clock_mhz:
        raise InputError(f"SM clock {clock:g} MHz outside {gpu.name}'s range", field="sm_clock_mhz",
                         expected=f"{gpu.min_sm_clock_mhz:g}..{gpu.max_sm_clock_mhz:g} MHz")
    lay = _check_layout(model, gpu, par)
    cal = calibration if calibration is not None else resolve_calibration(gpu)
    wb, kvb = DTYPE_BYTES[weight_dtype], DTYPE_BYTES[kv_dtype]
    mem = _memory(model, gpu, par, lay, wb=wb, kvb=kvb, mem_fraction=mem_fraction,
                  max_batch_tokens=max_batch_tokens)
    if spec_decode is not None and spec_decode.method.value == "mtp" and model.mtp_layers == 0:
        raise InputError(f"{model.name} ships no multi-token-prediction module, so MTP cannot draft for it",
                         field="--spec-decode", expected="eagle or ngram (or a model with mtp_layers, "
                         "e.g. DeepSeek-V3)")
    if spec_decode is not None and spec_decode.draft_layers > 0.0:
        # the draft's own layers (MTP module, EAGLE head) take KV room; the LM head is shared. They stay
        # out of ``weights`` (the target model's), which the draft's step share is measured against
        extra = _draft_bytes(model, par, lay, mem, spec_decode) - _lm_head_bytes(model, par, lay)
        free = max(mem.usable - mem.weights - extra - mem.activations - mem.reserve, 0.0)
        mem = replace(mem, kv_capacity_tokens=int(free // mem.kv_bytes_per_token) * lay.dp)
    if mem.kv_capacity_tokens < min_kv_tokens:
        raise InputError(
            f"{model.name} on {gpu.name} tp={par.tp} pp={par.pp} ep={par.ep} does not fit: "
            f"{mem.weights / 1e9:.1f} GB weights + {mem.activations / 1e9:.1f} GB activations + "
            f"{mem.reserve / 1e9:.1f} GB reserve leave room for {mem.kv_capacity_tokens} KV tokens "
            f"of {mem.usable / 1e9:.1f} GB usable per GPU",
            field="layout", expected=f"at least {min_kv_tokens} KV tokens (more GPUs, fp8, or a larger GPU)")
    prm = _params(model, gpu, par, lay, cal, wb=wb, kvb=kvb, clock_r=clock / gpu.max_sm_clock_mhz,
                  imbalance=expert_imbalance)
    return RooflinePerf(model=model, gpu=gpu, par=par, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                        sm_clock_mhz=clock, calibration=cal, mem_fraction=mem_fraction,
                        expert_imbalance=expert_imbalance, max_batch_tokens=max_batch_tokens, memory=mem,
                        params=_with_spec(prm, model, par, lay, mem, spec_decode), spec_decode=spec_decode)


def _protocol_check(p: RooflinePerf) -> ReplicaPerf:
    """Static proof (mypy) that :class:`RooflinePerf` satisfies the :class:`ReplicaPerf` protocol."""
    return p

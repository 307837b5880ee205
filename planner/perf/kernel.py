"""The numba kernel: step time, per-operator breakdown, FLOPs and bytes from a flat parameter vector.

Everything model-specific is folded into a float64 parameter vector by :mod:`planner.perf.model` (header
slots named ``H_*`` below, then a table of GEMM operators, ``OP_WIDTH`` floats each). The kernel knows
nothing of models or GPUs, so one compiled function serves every replica, and the simulator can call it
from its own ``@njit`` code. :func:`step_eval` is the single source of truth: ``step_time_s``,
``step_power_w``, the breakdown and :meth:`kernel` all go through it, so they cannot drift apart.

Step structure (per replica, ``p`` pipeline stages, ``m = min(max(decode_seqs, 1), p)`` micro-batches in
flight): the decodes are spread over the ``m`` micro-batches, the prefill chunk rides whole in one of them
(a sequence is not split). A micro-batch crosses ``p`` stages and each stage serves the ``m <= p``
micro-batches in turn, so the cycle, i.e. the step every sequence sees, is ``p`` times the largest
micro-batch's stage time: ``step = p * t_stage(pt + ds/m) + (p-1) * t_send + overhead``. With fewer
micro-batches than stages the GPUs idle (the bubble). ``t_stage`` is the largest stage (``ceil(L/p)``
layers plus embedding and LM head: stage imbalance). ``p = 1`` reduces to the plain sum of operators.

Speculative decoding (``H_SPEC_*``, appended to the header; all 0 means off and leaves every number as it
was) is modelled in expectation in :func:`step_eval`: a verify step with ``k + 1`` query tokens per decode
plus the draft, its decode part divided by the expected tokens per step ``E``
(:mod:`planner.perf.spec_decode`).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

# ---- header slots ------------------------------------------------------------------------------
H_PEAK_BF16 = 0
H_PEAK_FP8 = 1
H_BW = 2
H_PP = 3
H_LAYERS = 4
H_OVER_STEP = 5
H_OVER_SEQ = 6
H_G16_EC = 7
H_G16_MHALF = 8
H_G16_WHALF = 9
H_G16_EM = 10
H_G16_P = 11
H_G16_LAUNCH = 12
H_G8_EC = 13
H_G8_MHALF = 14
H_G8_WHALF = 15
H_G8_EM = 16
H_G8_P = 17
H_G8_LAUNCH = 18
H_PF_EC = 19
H_PF_XHALF = 20
H_PF_EM = 21
H_PF_LAUNCH = 22
H_PF_FLOPS_PER_PAIR = 23
H_PF_BYTES_PER_TOKEN = 24
H_DEC_EM = 25
H_DEC_EC = 26
H_DEC_UNIT_FRAC = 27
H_DEC_LAUNCH = 28
H_DEC_BYTES_PER_KV = 29
H_DEC_FLOPS_PER_KV = 30
H_EW_EM = 31
H_EW_LAUNCH = 32
H_EW_BYTES_PER_TOKEN = 33
H_EW_LAUNCHES = 34
H_AR_CALLS = 35
H_TP = 36
H_AR_BYTES_PER_TOKEN = 37
H_LINK_BW = 38
H_ALPHA = 39
H_A2A_CALLS = 40
H_EP = 41
H_A2A_BYTES_PER_TOKEN = 42
H_PP_BYTES_PER_TOKEN = 43
H_PP_LINK_BW = 44
H_P_IDLE = 45
H_P_BUSY = 46
H_P_COMPUTE = 47
H_P_MEM = 48
H_CLOCK_R = 49
H_CLOCK_EXP = 50
H_TDP = 51
H_BW_NOMINAL = 52
H_N_OPS = 53
H_COLL_BASE = 54
H_G16_OVERLAP = 55
H_G8_OVERLAP = 56
H_PF_WHALF = 57
H_PF_BALHALF = 58
H_PF_P = 59
H_PF_HEADS = 60
H_DEC_EM_NOSPLIT = 61
H_DEC_SPLIT_UNITS = 62
H_DEC_Q = 63
H_DEC_LHALF = 64
H_DEC_UNITS_PER_SEQ = 65
H_EW_OVERLAP = 66
H_PF_KV_BYTES_PER_TOKEN = 67
# collectives, two NCCL protocols each (low-latency and simple; NCCL runs the faster one)
H_AR_BASE = 68
H_AR_ALPHA = 69
H_AR_BW_LL = 70
H_AR_BASE_SIMPLE = 71
H_AR_BW_SIMPLE = 72
H_A2A_BASE = 73
H_A2A_ALPHA = 74
H_A2A_BW_LL = 75
H_A2A_BASE_SIMPLE = 76
H_A2A_BW_SIMPLE = 77
H_THROTTLE_EXP = 78
H_MOE_SLOWDOWN = 79
H_MOE_LAUNCH = 80
# speculative decoding (appended: 0 in all three means off, the plain one-token step)
H_SPEC_Q = 81
"""Query tokens each decode sequence verifies per step, ``k + 1`` (0 or 1: off)."""
H_SPEC_E = 82
"""Expected tokens emitted per verify step per sequence, ``E`` (:mod:`planner.perf.spec_decode`)."""
H_SPEC_DRAFT = 83
"""Draft cost of one step as a fraction of a one-token decode forward over the same batch."""
HEADER = 84
H_NAMES: tuple[str, ...] = (
    "PEAK_BF16",
    "PEAK_FP8",
    "BW",
    "PP",
    "LAYERS",
    "OVER_STEP",
    "OVER_SEQ",
    "G16_EC",
    "G16_MHALF",
    "G16_WHALF",
    "G16_EM",
    "G16_P",
    "G16_LAUNCH",
    "G8_EC",
    "G8_MHALF",
    "G8_WHALF",
    "G8_EM",
    "G8_P",
    "G8_LAUNCH",
    "PF_EC",
    "PF_XHALF",
    "PF_EM",
    "PF_LAUNCH",
    "PF_FLOPS_PER_PAIR",
    "PF_BYTES_PER_TOKEN",
    "DEC_EM",
    "DEC_EC",
    "DEC_UNIT_FRAC",
    "DEC_LAUNCH",
    "DEC_BYTES_PER_KV",
    "DEC_FLOPS_PER_KV",
    "EW_EM",
    "EW_LAUNCH",
    "EW_BYTES_PER_TOKEN",
    "EW_LAUNCHES",
    "AR_CALLS",
    "TP",
    "AR_BYTES_PER_TOKEN",
    "LINK_BW",
    "ALPHA",
    "A2A_CALLS",
    "EP",
    "A2A_BYTES_PER_TOKEN",
    "PP_BYTES_PER_TOKEN",
    "PP_LINK_BW",
    "P_IDLE",
    "P_BUSY",
    "P_COMPUTE",
    "P_MEM",
    "CLOCK_R",
    "CLOCK_EXP",
    "TDP",
    "BW_NOMINAL",
    "N_OPS",
    "COLL_BASE",
    "G16_OVERLAP",
    "G8_OVERLAP",
    "PF_WHALF",
    "PF_BALHALF",
    "PF_P",
    "PF_HEADS",
    "DEC_EM_NOSPLIT",
    "DEC_SPLIT_UNITS",
    "DEC_Q",
    "DEC_LHALF",
    "DEC_UNITS_PER_SEQ",
    "EW_OVERLAP",
    "PF_KV_BYTES_PER_TOKEN",
    "AR_BASE",
    "AR_ALPHA",
    "AR_BW_LL",
    "AR_BASE_SIMPLE",
    "AR_BW_SIMPLE",
    "A2A_BASE",
    "A2A_ALPHA",
    "A2A_BW_LL",
    "A2A_BASE_SIMPLE",
    "A2A_BW_SIMPLE",
    "THROTTLE_EXP",
    "MOE_SLOWDOWN",
    "MOE_LAUNCH",
    "SPEC_Q",
    "SPEC_E",
    "SPEC_DRAFT",
)

# ---- GEMM operator table -------------------------------------------------------------------------
OP_FAMILY, OP_N, OP_K, OP_COUNT, OP_ROWS_MODE, OP_P_HIT, OP_ROW_SCALE, OP_WBYTES, OP_LAUNCHES = range(9)
OP_WIDTH = 9
"""``OP_COUNT`` GEMMs of one shape per stage issued as ``OP_LAUNCHES`` kernels (grouped expert GEMMs: one
launch per layer for all of a GPU's experts)."""
ROWS_ALL, ROWS_LAST, ROWS_EXPERT = 0.0, 1.0, 2.0
"""Rows a GEMM sees: every token of the step, the last token of each sequence (LM head), or the tokens
routed to one expert."""

# ---- breakdown families (slots of the ``out`` vector) ---------------------------------------------
FAMILIES: tuple[str, ...] = (
    "qkv_proj", "o_proj", "mlp", "experts", "shared_experts", "router", "lm_head",
    "attn_prefill", "attn_decode", "elementwise", "tp_allreduce", "ep_alltoall", "pp_sendrecv",
    "overhead",
)
F_QKV_PROJ = 0
F_O_PROJ = 1
F_MLP = 2
F_EXPERTS = 3
F_SHARED_EXPERTS = 4
F_ROUTER = 5
F_LM_HEAD = 6
F_ATTN_PREFILL = 7
F_ATTN_DECODE = 8
F_ELEMENTWISE = 9
F_TP_ALLREDUCE = 10
F_EP_ALLTOALL = 11
F_PP_SENDRECV = 12
F_OVERHEAD = 13
OUT_FLOPS = len(FAMILIES)
OUT_BYTES = OUT_FLOPS + 1
OUT_BUSY = OUT_FLOPS + 2
OUT_CLOCK = OUT_FLOPS + 3
"""SM clock the step ran at, as a fraction of the replica's set clock (below 1: held at the power limit)."""
OUT_SIZE = OUT_FLOPS + 4
ACT_BYTES = 2.0
"""Activations are bf16 throughout."""


@njit(cache=True)
def pnorm(a: float, b: float, p: float) -> float:
    """``(a**p + b**p) ** (1/p)`` for ``a, b >= 0`` with two powers instead of three (hot loop)."""
    if p == 1.0:
        return a + b
    hi, lo = (a, b) if a >= b else (b, a)
    if hi <= 0.0:
        return 0.0
    return float(hi * (1.0 + (lo / hi) ** p) ** (1.0 / p))


@njit(cache=True)
def gemm_time(m: float, n: float, k: float, wbytes: float, peak: float, bw: float,
              ec: float, mhalf: float, whalf: float, em: float, p: float, launch: float) -> float:
    """Time of one ``M x K @ K x N`` GEMM (see :mod:`planner.perf.calibration`)."""
    if m <= 0.0:
        return 0.0
    w = n * k
    flops = 2.0 * m * n * k
    nbytes = w * wbytes + m * k * ACT_BYTES + m * n * ACT_BYTES
    eff = ec * (m / (m + mhalf)) * (w / (w + whalf))
    tc = flops / (peak * eff)
    tm = nbytes / (bw * em)
    return float(pnorm(tc, tm, p) + launch)


@njit(cache=True)
def soft_sum(t: float, floor: float, a: float) -> float:
    """A kernel's streaming time ``t`` and its fixed cost ``floor`` combined without powers (hot loop):
    ``t + floor * floor / (floor + a * t)``. ``a = 0`` adds them; a larger ``a`` hides more of the fixed
    cost behind long streams (ramp-up overlapping the previous wave). Equals ``floor`` at ``t = 0``."""
    if floor <= 0.0:
        return t
    return t + floor * floor / (floor + a * t)


PF_TILE = 128.0
"""Query rows per FlashAttention tile (one CTA each) in the prefill parallelism feature."""


@njit(cache=True)
def prefill_kv_len(pt: float, pairs: float, seqs: float) -> float:
    """Keys each of ``seqs`` equal causal chunks of ``pt`` tokens in total attends to at its last query
    (cached context plus the chunk), recovered from the pair count."""
    if pt <= 0.0:
        return 0.0
    return pairs / pt + (pt / max(seqs, 1.0) - 1.0) / 2.0


@njit(cache=True)
def prefill_attn_bytes(pt: float, pairs: float, seqs: float, bytes_per_token: float,
                       kv_bytes_per_token: float) -> float:
    """Bytes one layer's prefill attention moves: queries and outputs of the new tokens, and the keys
    and values of every sequence's whole context."""
    return bytes_per_token * pt + kv_bytes_per_token * max(seqs, 1.0) * prefill_kv_len(pt, pairs, seqs)


@njit(cache=True)
def prefill_attn_time(pt: float, pairs: float, seqs: float, flops_per_pair: float, bytes_per_token: float,
                      kv_bytes_per_token: float, heads: float, peak: float, bw: float, ec: float,
                      xhalf: float, em: float, whalf: float, balhalf: float, p: float,
                      launch: float) -> float:
    """One layer's prefill attention: ``seqs`` equal chunks, ``pt`` new tokens, ``pairs`` causal
    query-key pairs, ``heads`` query heads (see :mod:`planner.perf.calibration`)."""
    if pt <= 0.0:
        return 0.0
    x = pairs / pt
    ctx = prefill_kv_len(pt, pairs, seqs)
    bal = x / ctx if ctx > 0.0 else 1.0
    w = heads * pt / PF_TILE
    eff = ec * (x / (x + xhalf)) * (w / (w + whalf)) * (bal + (1.0 - bal) * w / (w + balhalf))
    tc = flops_per_pair * pairs / (peak * eff)
    tm = prefill_attn_bytes(pt, pairs, seqs, bytes_per_token, kv_bytes_per_token) / (bw * em)
    if p == 1.0:
        return tc + tm + launch
    return float((tc**p + tm**p + launch**p) ** (1.0 / p))


@njit(cache=True)
def decode_attn_time(ds: float, kv: float, units_per_seq: float, bytes_per_kv: float, flops_per_kv: float,
                     peak: float, bw: float, em: float, em_nosplit: float, split_units: float,
                     unit_frac: float, q: float, lhalf: float, ec: float, launch: float) -> float:
    """One layer's decode attention: ``ds`` sequences reading ``kv`` cached tokens in total; affine in
    ``kv`` for a given ``ds`` (see :mod:`planner.perf.calibration`)."""
    if ds <= 0.0:
        return 0.0
    units = ds * units_per_seq
    e = em if (units < split_units or em_nosplit <= 0.0) else em_nosplit
    # soft minimum of the whole-GPU fraction and what ``units`` streams reach: 1/e_u = ||1/e, 1/(U u)||_q
    e_u = 1.0 / pnorm(1.0 / e, 1.0 / (units * unit_frac), q)
    per_kv = max(bytes_per_kv / (bw * e_u), flops_per_kv / (peak * ec))
    return float(launch + (kv + ds * lhalf) * per_kv)


@njit(cache=True)
def gemm_times(m: NDArray[np.float64], n: NDArray[np.float64], k: NDArray[np.float64],
               wbytes: float, peak: float, bw: float, curve: NDArray[np.float64]) -> NDArray[np.float64]:
    """:func:`gemm_time` over arrays of shapes; ``curve`` = ec, m_half, w_half, em, p, launch."""
    res = np.empty(m.shape[0])
    for i in range(m.shape[0]):
        res[i] = gemm_time(m[i], n[i], k[i], wbytes, peak, bw, curve[0], curve[1], curve[2], curve[3],
                           curve[4], curve[5])
    return res


@njit(cache=True)
def _stage(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float,
           out: NDArray[np.float64], scale: float, q: float) -> float:
    """One stage's time for a micro-batch; adds ``scale *`` each family's time, FLOPs, bytes to out.

    Each decode sequence brings ``q`` query tokens (1; ``k + 1`` in a speculative verify step): GEMM
    rows, LM-head rows and decode-attention FLOPs scale by ``q``, the KV bytes read do not."""
    write = out.shape[0] > 0
    T = pt + ds * q
    last_rows = ds * q + (1.0 if pt > 0.0 else 0.0)
    bw = prm[H_BW]
    total = 0.0
    flops = 0.0
    nbytes = 0.0
    # GEMMs
    n_ops = int(prm[H_N_OPS])
    for j in range(n_ops):
        b = HEADER + j * OP_WIDTH
        fam = int(prm[b + OP_FAMILY])
        n = prm[b + OP_N]
        k = prm[b + OP_K]
        count = prm[b + OP_COUNT]
        mode = prm[b + OP_ROWS_MODE]
        wb = prm[b + OP_WBYTES]
        if mode == ROWS_ALL:
            rows = T * prm[b + OP_ROW_SCALE]
        elif mode == ROWS_LAST:
            rows = last_rows * prm[b + OP_ROW_SCALE]
        else:
            ph = prm[b + OP_P_HIT]
            frac = 1.0 - (1.0 - ph) ** T
            rows = T * ph * prm[b + OP_ROW_SCALE] / frac if frac > 0.0 else 0.0
            count = count * frac
        if rows <= 0.0 or count <= 0.0:
            continue
        launches = max(prm[b + OP_LAUNCHES], 1.0)
        # grouped expert GEMMs (fused MoE) reach less of the compute peak than dense GEMMs and pay
        # their routing kernels (top-k, sort, permute) once per launch
        grouped = fam == F_EXPERTS
        slow = prm[H_MOE_SLOWDOWN] if grouped and prm[H_MOE_SLOWDOWN] > 0.0 else 1.0
        extra = prm[H_MOE_LAUNCH] if grouped else 0.0
        # each launch runs count/launches GEMMs (grouped experts) and pays its fixed cost softly
        if wb == 1.0:
            g = count / launches * gemm_time(rows, n, k, wb, prm[H_PEAK_FP8] / slow, bw, prm[H_G8_EC],
                                             prm[H_G8_MHALF], prm[H_G8_WHALF], prm[H_G8_EM], prm[H_G8_P], 0.0)
            t = launches * (soft_sum(g, prm[H_G8_LAUNCH], prm[H_G8_OVERLAP]) + extra)
        else:
            g = count / launches * gemm_time(rows, n, k, wb, prm[H_PEAK_BF16] / slow, bw, prm[H_G16_EC],
                                             prm[H_G16_MHALF], prm[H_G16_WHALF], prm[H_G16_EM], prm[H_G16_P],
                                             0.0)
            t = launches * (soft_sum(g, prm[H_G16_LAUNCH], prm[H_G16_OVERLAP]) + extra)
        total += t
        flops += count * 2.0 * rows * n * k
        nbytes += count * (n * k * wb + rows * (n + k) * ACT_BYTES)
        if write:
            out[fam] += scale * t
    layers = prm[H_LAYERS]
    peak_attn = prm[H_PEAK_BF16]
    # attention, prefill part
    if pt > 0.0:
        # the step's prefill tokens are taken as one chunk (one sequence)
        t = layers * prefill_attn_time(pt, pairs, 1.0, prm[H_PF_FLOPS_PER_PAIR], prm[H_PF_BYTES_PER_TOKEN],
                                       prm[H_PF_KV_BYTES_PER_TOKEN], prm[H_PF_HEADS], peak_attn, bw,
                                       prm[H_PF_EC], prm[H_PF_XHALF], prm[H_PF_EM], prm[H_PF_WHALF],
                                       prm[H_PF_BALHALF], prm[H_PF_P], prm[H_PF_LAUNCH])
        total += t
        flops += layers * prm[H_PF_FLOPS_PER_PAIR] * pairs
        nbytes += layers * prefill_attn_bytes(pt, pairs, 1.0, prm[H_PF_BYTES_PER_TOKEN],
                                              prm[H_PF_KV_BYTES_PER_TOKEN])
        if write:
            out[F_ATTN_PREFILL] += scale * t
    # attention, decode part (affine in kv)
    if ds > 0.0:
        t = layers * decode_attn_time(ds, kv, prm[H_DEC_UNITS_PER_SEQ], prm[H_DEC_BYTES_PER_KV],
                                      prm[H_DEC_FLOPS_PER_KV] * q, peak_attn, bw, prm[H_DEC_EM],
                                      prm[H_DEC_EM_NOSPLIT], prm[H_DEC_SPLIT_UNITS], prm[H_DEC_UNIT_FRAC],
                                      prm[H_DEC_Q], prm[H_DEC_LHALF], prm[H_DEC_EC], prm[H_DEC_LAUNCH])
        total += t
        flops += layers * prm[H_DEC_FLOPS_PER_KV] * q * kv
        nbytes += layers * prm[H_DEC_BYTES_PER_KV] * kv
        if write:
            out[F_ATTN_DECODE] += scale * t
    # elementwise
    if T > 0.0:
        by = prm[H_EW_BYTES_PER_TOKEN] * T
        nk = max(prm[H_EW_LAUNCHES], 1.0)
        t = nk * soft_sum(by / nk / (bw * prm[H_EW_EM]), prm[H_EW_LAUNCH], prm[H_EW_OVERLAP])
        total += t
        nbytes += by
        if write:
            out[F_ELEMENTWISE] += scale * t
    # tensor-parallel all-reduce (ring: 2(tp-1) hops, 2(tp-1)/tp of the data over each link)
    tp = prm[H_TP]
    if tp > 1.0 and T > 0.0:
        x = 2.0 * (tp - 1.0) / tp * prm[H_AR_BYTES_PER_TOKEN] * T
        lat = 2.0 * (tp - 1.0) * prm[H_AR_ALPHA]
        per = lat + min(prm[H_AR_BASE] + x / prm[H_AR_BW_LL], prm[H_AR_BASE_SIMPLE] + x / prm[H_AR_BW_SIMPLE])
        t = prm[H_AR_CALLS] * per
        total += t
        if write:
            out[F_TP_ALLREDUCE] += scale * t
    # expert-parallel dispatch + combine (pairwise all-to-all)
    ep = prm[H_EP]
    if ep > 1.0 and T > 0.0:
        x = prm[H_A2A_BYTES_PER_TOKEN] * T
        lat = (ep - 1.0) * prm[H_A2A_ALPHA]
        per = lat + min(prm[H_A2A_BASE] + x / prm[H_A2A_BW_LL],
                        prm[H_A2A_BASE_SIMPLE] + x / prm[H_A2A_BW_SIMPLE])
        t = prm[H_A2A_CALLS] * per
        total += t
        if write:
            out[F_EP_ALLTOALL] += scale * t
    if write:
        out[OUT_FLOPS] += scale * flops
        out[OUT_BYTES] += scale * nbytes
    return total


@njit(cache=True)
def _step_at_clock(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float,
                   out: NDArray[np.float64], q: float, draft: float) -> float:
    """:func:`step_eval` at the replica's set clock (no power-limit throttling); ``q`` query tokens per
    decode sequence and a draft costing ``draft`` one-token decode forwards (speculative verify step)."""
    write = out.shape[0] > 0
    if write:
        out[:] = 0.0
    seqs = ds + (1.0 if pt > 0.0 else 0.0)
    if seqs <= 0.0:
        return 0.0
    p = prm[H_PP]
    m = min(max(ds, 1.0), p)
    # the largest micro-batch: the prefill chunk (never split) plus its share of the decodes;
    # families are scaled by p so that they add up to the step
    t_big = _stage(prm, pt, pairs, ds / m, kv / m, out, p, q)
    total = p * t_big
    if write:
        # work per GPU: this micro-batch and m-1 decode-only ones pass through the GPU's stage once each
        f_big = out[OUT_FLOPS] / p
        b_big = out[OUT_BYTES] / p
        busy = t_big
        if m > 1.0:
            tmp = np.zeros(OUT_SIZE)
            t_small = _stage(prm, 0.0, 0.0, ds / m, kv / m, tmp, 1.0, q)
            f_big += (m - 1.0) * tmp[OUT_FLOPS]
            b_big += (m - 1.0) * tmp[OUT_BYTES]
            busy += (m - 1.0) * t_small
        out[OUT_FLOPS] = f_big
        out[OUT_BYTES] = b_big
        out[OUT_BUSY] = busy
    if p > 1.0:
        t_send = (p - 1.0) * (prm[H_COLL_BASE]
                              + prm[H_PP_BYTES_PER_TOKEN] * (pt + ds * q / m) / prm[H_PP_LINK_BW])
        total += t_send
        if write:
            out[F_PP_SENDRECV] = t_send
    if draft > 0.0 and ds > 0.0:
        # the draft: a share of a one-token decode forward over the same sequences (its own KV)
        dbuf = np.zeros(OUT_SIZE) if write else out
        t_d = _stage(prm, 0.0, 0.0, ds / m, kv / m, dbuf, 1.0, 1.0)
        total += draft * p * t_d
        if write:
            for i in range(F_OVERHEAD):
                out[i] += draft * p * dbuf[i]
            out[OUT_FLOPS] += draft * m * dbuf[OUT_FLOPS]
            out[OUT_BYTES] += draft * m * dbuf[OUT_BYTES]
            out[OUT_BUSY] += draft * m * t_d
    over = prm[H_OVER_STEP] + prm[H_OVER_SEQ] * seqs
    total += over
    if write:
        out[F_OVERHEAD] = over
    return float(total)


THROTTLE_MIN_CLOCK = 0.3
"""Lowest clock fraction the power-limit search goes to (H100/H200 boards floor near 0.3 of boost)."""


@njit(cache=True)
def _clock_stretch(f: float, s: float) -> float:
    """Kernel time at clock fraction ``s`` over time at full clock: the compute-bound share ``f`` slows
    as ``1/s``, memory-bound work does not (decode latency is nearly flat in the SM clock)."""
    return f / s + (1.0 - f)


@njit(cache=True)
def _power_at(prm: NDArray[np.float64], t: float, out: NDArray[np.float64], f: float, s: float) -> float:
    """Unclipped watts of the step in ``out`` (timed ``t`` at the set clock) run at clock fraction ``s``."""
    ts = t * _clock_stretch(f, s)
    busy = min(out[OUT_BUSY] / t, 1.0)
    uc = min(out[OUT_FLOPS] / (prm[H_PEAK_BF16] * s * ts), 1.0)
    um = min(out[OUT_BYTES] / (prm[H_BW_NOMINAL] * ts), 1.0)
    g = prm[H_CLOCK_R] ** prm[H_CLOCK_EXP] * s ** prm[H_THROTTLE_EXP]
    return float(prm[H_P_IDLE] + g * (prm[H_P_BUSY] * busy + prm[H_P_COMPUTE] * uc) + prm[H_P_MEM] * um)


@njit(cache=True)
def step_eval(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float,
              out: NDArray[np.float64]) -> float:
    """Step time in seconds; fills ``out`` as :func:`_step_eval_q` does.

    With speculative decoding on (``H_SPEC_Q > 1``) and decodes in the step, the step is the verify
    step (``k + 1`` query tokens per decode, plus the draft) made *token-equivalent*: its decode part
    (over the same step with the prefill chunk alone) is divided by ``E``, the prefill part is not, so
    the event loop keeps emitting one token per sequence per step and TPOT is verify-step / ``E``. The
    ``out`` vector is scaled to the shorter step, so the average power is the verify step's power and
    its energy is spread over the ``E`` tokens.
    """
    if prm[H_SPEC_Q] <= 1.0 or ds <= 0.0:
        return _step_eval_q(prm, pt, pairs, ds, kv, out, 1.0, 0.0)
    t_v = _step_eval_q(prm, pt, pairs, ds, kv, out, prm[H_SPEC_Q], prm[H_SPEC_DRAFT])
    t_pf = _step_eval_q(prm, pt, pairs, 0.0, 0.0, np.empty(0), 1.0, 0.0) if pt > 0.0 else 0.0
    t = t_pf + (t_v - t_pf) / max(prm[H_SPEC_E], 1.0)
    if out.shape[0] > 0 and t_v > 0.0:
        r = t / t_v
        for i in range(OUT_CLOCK):
            out[i] *= r
    return float(t)


@njit(cache=True)
def _step_eval_q(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float,
                 out: NDArray[np.float64], q: float, draft: float) -> float:
    """Step time in seconds; fills ``out`` (length :data:`OUT_SIZE`, or 0 to skip) with the
    per-family seconds, the FLOPs and bytes per GPU, the GPU busy seconds and the clock fraction.

    With ``H_THROTTLE_EXP`` set (curves fitted at full clock), a step whose power would pass the board
    limit runs at the clock that holds the limit, found by bisection on :func:`_power_at` (dynamic
    power scales as clock to ``H_THROTTLE_EXP``), and its kernels stretch by :func:`_clock_stretch`.
    Without it the step keeps its set clock (curves fitted on throttled loops already include it).
    """
    if prm[H_THROTTLE_EXP] <= 0.0:
        t = _step_at_clock(prm, pt, pairs, ds, kv, out, q, draft)
        if out.shape[0] > 0:
            out[OUT_CLOCK] = 1.0
        return t
    buf = out if out.shape[0] > 0 else np.empty(OUT_SIZE)
    t = _step_at_clock(prm, pt, pairs, ds, kv, buf, q, draft)
    buf[OUT_CLOCK] = 1.0
    if t <= 0.0:
        return t
    f = min(buf[OUT_FLOPS] / (prm[H_PEAK_BF16] * t * max(prm[H_G16_EC], 1e-3)), 1.0)
    if _power_at(prm, t, buf, f, 1.0) <= prm[H_TDP]:
        return t
    lo, hi = THROTTLE_MIN_CLOCK, 1.0
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        if _power_at(prm, t, buf, f, mid) > prm[H_TDP]:
            hi = mid
        else:
            lo = mid
    k = _clock_stretch(f, lo)
    over = buf[F_OVERHEAD]
    for i in range(F_OVERHEAD):
        buf[i] *= k
    buf[OUT_BUSY] *= k
    buf[OUT_CLOCK] = lo
    return float(over + (t - over) * k)


@njit(cache=True)
def step_time(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float) -> float:
    """The simulator's entry: step seconds of one batch composition (callable from njit code)."""
    return float(step_eval(prm, pt, pairs, ds, kv, np.empty(0)))


@njit(cache=True)
def power_of(prm: NDArray[np.float64], step_s: float, out: NDArray[np.float64]) -> float:
    """Average power per GPU over a step whose :func:`step_eval` ``out`` vector is given."""
    if step_s <= 0.0:
        return float(prm[H_P_IDLE])
    if 0.0 < out[OUT_CLOCK] < 1.0:  # held at the limit by throttling (step_eval)
        return float(prm[H_TDP])
    busy = min(out[OUT_BUSY] / step_s, 1.0)
    uc = min(out[OUT_FLOPS] / (prm[H_PEAK_BF16] * step_s), 1.0)
    um = min(out[OUT_BYTES] / (prm[H_BW_NOMINAL] * step_s), 1.0)
    g = prm[H_CLOCK_R] ** prm[H_CLOCK_EXP]
    w = prm[H_P_IDLE] + g * (prm[H_P_BUSY] * busy + prm[H_P_COMPUTE] * uc) + prm[H_P_MEM] * um
    return float(min(w, prm[H_TDP]))


@njit(cache=True)
def step_power(prm: NDArray[np.float64], pt: float, pairs: float, ds: float, kv: float) -> float:
    """The simulator's power entry: average watts per GPU over one step (callable from njit code).

    Same numbers as ``step_power_w`` (both go through :func:`step_eval` and :func:`power_of`).
    """
    out = np.empty(OUT_SIZE)
    t = step_eval(prm, pt, pairs, ds, kv, out)
    return float(power_of(prm, t, out))


@njit(cache=True)
def eval_many(prm: NDArray[np.float64], pt: NDArray[np.float64], pairs: NDArray[np.float64],
              ds: NDArray[np.float64], kv: NDArray[np.float64], want_power: bool) -> NDArray[np.float64]:
    """Vectorised :func:`step_eval` over equal-length 1-D arrays: step seconds or watts per GPU."""
    n = pt.shape[0]
    res = np.empty(n)
    out = np.empty(OUT_SIZE)
    for i in range(n):
        t = step_eval(prm, pt[i], pairs[i], ds[i], kv[i], out)
        res[i] = power_of(prm, t, out) if want_power else t
    return res

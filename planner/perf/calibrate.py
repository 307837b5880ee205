"""Fit the per-node model to measured profiles, and score it on shapes the fit never saw.

``fleetwise calibrate [--gpu H100-SXM]`` (:func:`calibrate_gpu`) reads ``data/profiles/<GPU>/`` (written by
``fleetwise profile``) and writes ``data/calibration/<GPU>.json``, so the shipped calibration is
reproducible from the shipped measurements.

What is fitted, from what (least squares on log time ratios, i.e. relative error):

================  ===========================================  ===================================
curve             parameters                                   data
================  ===========================================  ===================================
GEMM (per dtype)  ec_max, m_half, w_half, em_max, p, launch_s,  ``gemm.parquet``
                  overlap
prefill attention ec, x_half, w_half, bal_half, em, p,         ``attention.parquet`` phase prefill
                  launch_s
decode attention  em, em_nosplit, unit_frac, q, l_half,        ``attention.parquet`` phase decode
                  launch_s (ec from the MLA rows)
elementwise       ew_em (adds), ew_em_silu, ew_em_rope,        ``elementwise.parquet``
                  ew_em_norm, ew_norm_rows_half, ew_launch_s,
                  ew_overlap
step overhead     step_s, per_seq_s                            ``steps.parquet`` (train split)
power             idle_w, busy_w, compute_w, mem_w (NNLS)      ``power.parquet`` idle + train steps
================  ===========================================  ===================================

Every curve is a roofline: achieved fractions of the catalog peaks, each in (0, 1] and rising with
the operator's size, plus a fixed per-kernel cost. The profile times small operators by CUDA-graph
replay (meta.json, "why graphs"), so those costs are GPU-side launch/ramp/tail times (1-10 us), not
the ~45 us of host dispatch an eager loop pays; the step model charges them per kernel as well. The
decode split-KV threshold is not fitted: it is the profiled GPU's SM count (meta ``sm_count``).

Held-out split (deterministic, documented): a row is held out when ``crc32(key) % 4 == 0`` where the
key is the operator *shape* without the token count for GEMMs (``"n,k,dtype"``: every ``m`` of a held-out
weight shape is unseen), ``"phase,batch,q_len,kv_len,heads,kv_heads,head_dim"`` for attention,
``"op,tokens,hidden"`` for elementwise operators and ``"kind,prefill_tokens,prefill_pairs,decode_seqs,
decode_kv"`` for steps. If a table's split leaves no held-out row, its middle row is held out.

Not measurable here, so not fitted (stated in the calibration's ``source``): the collective latency
and link efficiency (single-GPU profile), and the clock response (the profiler never changes clocks:
POLCA and arXiv 2605.11999 anchor it, see :mod:`planner.perf.calibration`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.optimize import least_squares, nnls

from planner.catalog.load import load_catalog
from planner.catalog.schema import GPUSpec, ModelSpec
from planner.perf import comm
from planner.perf import kernel as kn
from planner.perf.calibration import (
    PRIOR,
    AttentionCurve,
    Calibration,
    CommFit,
    GemmCurve,
    PowerCoeffs,
    calibration_dir,
    polca_clock_exponent,
)
from planner.perf.engine_check import engine_model, fit_engine, load_requests
from planner.perf.model import DTYPE_BYTES, RooflinePerf, build_replica_perf
from traces.atomic import write_text_atomic
from traces.errors import InputError

Arr = NDArray[np.float64]

STEP_MODEL = "Llama-3.1-8B"
"""The architecture of the profiled whole-step layer stack."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k", "dtype", "time_s"),
    "attention": ("phase", "batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim", "dtype",
                  "time_s"),
    "elementwise": ("op", "tokens", "hidden", "time_s"),
    "steps": ("kind", "prefill_tokens", "prefill_pairs", "decode_seqs", "decode_kv", "time_s"),
    "power": ("phase", "power_w_mean"),
    "memcpy": ("bytes", "time_s"),
}
ELEMENTWISE_OPS: dict[str, tuple[float, float]] = {
    "rmsnorm": (2.0, 1.0),
    "add": (3.0, 1.0),
    "silu_mul": (5.0, 2.0),
    "rope": (9.0, 7.0),
}
"""``(tensor passes, kernels)`` of each elementwise operator *as the profiler runs it*
(:mod:`planner.profile.micro`); a pass is a read or write of ``tokens x hidden`` bf16 values.
``rmsnorm`` is ``F.rms_norm`` (read, write). ``add`` reads two halves and writes one (3 passes).
``silu_mul`` is ``silu(a) * b``, two kernels: silu reads and writes ``a`` (2), mul reads two, writes
one (3). ``rope`` is the unfused rotate-half: four half-width products (1 pass each), two half-width
sums (1.5 each) and a ``cat`` (2): 9 passes in 7 kernels. Serving engines fuse these; the step model
counts fused passes (:mod:`planner.perf.model`) at the fractions of peak fitted here."""


@dataclass(frozen=True)
class Profile:
    """The measured tables of one GPU (any may be None when the profiler skipped it)."""

    gpu: str
    folder: str
    meta: dict[str, Any]
    gemm: pl.DataFrame | None
    attention: pl.DataFrame | None
    elementwise: pl.DataFrame | None
    steps: pl.DataFrame | None
    power: pl.DataFrame | None
    memcpy: pl.DataFrame | None


def load_profile(folder: str | Path) -> Profile:
    """Read a profile folder and check each table's columns.

    Raises:
        InputError: folder missing, a table unreadable or lacking a required column.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("profile folder not found", path=str(root))
    meta: dict[str, Any] = {}
    mp = root / "meta.json"
    if mp.is_file():
        try:
            meta = json.loads(mp.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON ({exc.msg})", path=str(mp), row=exc.lineno) from None
    tables: dict[str, pl.DataFrame | None] = {}
    for name, cols in REQUIRED.items():
        path = root / f"{name}.parquet"
        if not path.is_file():
            tables[name] = None
            continue
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for corrupt files
            raise InputError(f"unreadable Parquet ({type(exc).__name__})", path=str(path)) from None
        for c in cols:
            if c not in df.columns:
                raise InputError(f"missing column {c!r}", path=str(path), field=c,
                                 expected="columns " + ", ".join(cols))
        bad = df.filter(pl.col("time_s") <= 0) if "time_s" in df.columns else df.clear()
        if bad.height:
            row = int(df.with_row_index().filter(pl.col("time_s") <= 0)["index"][0]) + 1
            raise InputError("non-positive time", path=str(path), row=row, field="time_s", expected="> 0")
        tables[name] = df
    return Profile(gpu=str(meta.get("catalog_gpu", root.name)), folder=str(root), meta=meta,
                   gemm=tables["gemm"], attention=tables["attention"], elementwise=tables["elementwise"],
                   steps=tables["steps"], power=tables["power"], memcpy=tables["memcpy"])


def holdout_mask(keys: Sequence[str]) -> NDArray[np.bool_]:
    """True where a row is held out: ``crc32(key) % 4 == 0`` (middle row if none).

    >>> holdout_mask(["a", "b", "c", "d", "e"]).tolist()
    [False, False, False, True, False]
    """
    mask = np.array([zlib.crc32(k.encode()) % 4 == 0 for k in keys], dtype=bool)
    if len(keys) > 1 and not mask.any():
        mask[len(keys) // 2] = True
    return mask


def _keys(df: pl.DataFrame, cols: Sequence[str]) -> list[str]:
    return [",".join(str(v) for v in row) for row in df.select(cols).iter_rows()]


def ape(pred: Arr, meas: Arr) -> Arr:
    """Absolute percentage errors."""
    return np.asarray(np.abs(pred - meas) / meas * 100.0, dtype=np.float64)


@dataclass(frozen=True)
class ErrorRow:
    """Error summary of one family on one split."""

    family: str
    split: str
    n: int
    median_ape: float
    p90_ape: float


def _row(family: str, split: str, pred: Arr, meas: Arr) -> ErrorRow:
    e = ape(pred, meas)
    if e.size == 0:
        return ErrorRow(family, split, 0, float("nan"), float("nan"))
    return ErrorRow(family, split, int(e.size), float(np.median(e)), float(np.percentile(e, 90)))


# ---------------------------------------------------------------------------------------------------
# operator-level predictions (the same kernel functions the step model uses)


def _soft(t: Arr, floor: float, a: float) -> Arr:
    """A kernel's streaming time and its fixed cost combined (:func:`planner.perf.kernel.soft_sum`)."""
    if floor <= 0.0:
        return t
    return np.asarray(t + floor * floor / (floor + a * t), dtype=np.float64)


def predict_gemm(df: pl.DataFrame, gpu: GPUSpec, cal: Calibration) -> Arr:
    """Predicted seconds for each row of a gemm table."""
    res = np.empty(df.height)
    for dt, curve in (("bf16", cal.gemm_bf16), ("fp8", cal.gemm_fp8)):
        sel = (df["dtype"] == dt).to_numpy()
        if not sel.any():
            continue
        sub = df.filter(pl.Series(sel))
        peak = (gpu.fp8_tflops if dt == "fp8" else gpu.bf16_tflops) * 1e12
        cv = np.array([curve.ec_max, curve.m_half, curve.w_half, curve.em_max, curve.p, 0.0])
        m, n, k = (sub[c].cast(pl.Float64).to_numpy() for c in ("m", "n", "k"))
        t = kn.gemm_times(m, n, k, DTYPE_BYTES[dt], peak, gpu.hbm_tbps * 1e12, cv)
        res[sel] = _soft(t, curve.launch_s, curve.overlap)
    return res


def _attn_shapes(df: pl.DataFrame) -> dict[str, Arr]:
    """Aggregates of each attention row: tokens, pairs, sequences, kv, work units, FLOPs and bytes."""
    b = df["batch"].cast(pl.Float64).to_numpy()
    q = df["q_len"].cast(pl.Float64).to_numpy()
    c = df["kv_len"].cast(pl.Float64).to_numpy()
    hq = df["num_heads"].cast(pl.Float64).to_numpy()
    hkv = df["num_kv_heads"].cast(pl.Float64).to_numpy()
    d = df["head_dim"].cast(pl.Float64).to_numpy()
    kvb = np.where(df["dtype"].to_numpy() == "fp8", 1.0, 2.0)
    ctx = c - q
    # MLA-shaped rows (absorbed): one shared latent "kv head" of 512 + 64; values are the 512 part
    mla = (hkv == 1) & (d == 576)
    v_dim = np.where(mla, 512.0, d)
    return {
        "tokens": b * q,
        "pairs": b * q * (ctx + (q + 1) / 2),
        "seqs": b,
        "heads": hq,
        "kv": b * c,
        "units_per_seq": hkv,
        "flops_per_pair": 2.0 * hq * (d + v_dim),
        "bytes_per_token": 2 * hq * d * 2.0,
        "kv_bytes_per_token": 2 * hkv * d * kvb,
        "bytes_per_kv": np.where(mla, d, 2 * hkv * d) * kvb,
        "flops_per_kv": 2.0 * hq * (d + v_dim),
    }


def split_units(profile_meta: dict[str, Any]) -> float:
    """Decode work units from which the kernel stops splitting KV: the profiled GPU's SM count."""
    try:
        return float(profile_meta.get("sm_count", 132))
    except (TypeError, ValueError):
        raise InputError("sm_count is not a number", field="sm_count", expected="an integer") from None


def predict_attention(df: pl.DataFrame, gpu: GPUSpec, cal: Calibration) -> Arr:
    """Predicted seconds for each row of an attention table (one layer)."""
    s = _attn_shapes(df)
    a = cal.attention
    peak, bw = gpu.bf16_tflops * 1e12, gpu.hbm_tbps * 1e12
    out = np.empty(df.height)
    phase = df["phase"].to_numpy()
    for i in range(df.height):
        if phase[i] == "prefill":
            out[i] = kn.prefill_attn_time(
                s["tokens"][i], s["pairs"][i], s["seqs"][i], s["flops_per_pair"][i], s["bytes_per_token"][i],
                s["kv_bytes_per_token"][i], s["heads"][i], peak, bw, a.prefill_ec, a.prefill_x_half,
                a.prefill_em, a.prefill_w_half, a.prefill_bal_half, a.prefill_p, a.prefill_launch_s)
        else:
            out[i] = kn.decode_attn_time(
                s["seqs"][i], s["kv"][i], s["units_per_seq"][i], s["bytes_per_kv"][i], s["flops_per_kv"][i],
                peak, bw, a.decode_em, a.decode_em_nosplit, a.decode_split_units, a.decode_unit_frac,
                a.decode_q, a.decode_l_half, a.decode_ec, a.decode_launch_s)
    return out


def predict_elementwise(df: pl.DataFrame, gpu: GPUSpec, cal: Calibration) -> Arr:
    """Predicted seconds for each row of an elementwise table (see :data:`ELEMENTWISE_OPS`)."""
    ops = df["op"].to_list()
    unknown = sorted({o for o in ops if o not in ELEMENTWISE_OPS})
    if unknown:
        raise InputError(f"unknown elementwise op {unknown[0]!r}", field="op",
                         expected=", ".join(ELEMENTWISE_OPS))
    passes = np.array([ELEMENTWISE_OPS[o][0] for o in ops])
    kernels = np.array([ELEMENTWISE_OPS[o][1] for o in ops])
    frac = np.array([cal.ew_fraction(o) for o in ops])
    tokens = df["tokens"].cast(pl.Float64).to_numpy()
    elems = tokens * df["hidden"].cast(pl.Float64).to_numpy()
    norm = np.array([o == "rmsnorm" for o in ops])
    # RMSNorm runs one row per CTA: few rows leave SMs idle
    frac = np.where(norm, frac * tokens / (tokens + cal.ew_norm_rows_half), frac)
    per_kernel = passes * elems * 2.0 / kernels / (gpu.hbm_tbps * 1e12 * frac)
    return np.asarray(kernels * _soft(per_kernel, cal.ew_launch_s, cal.ew_overlap), dtype=np.float64)


def step_perf(gpu: GPUSpec, cal: Calibration, model: ModelSpec) -> RooflinePerf:
    """The model of the profiled whole-step stack (one GPU, bf16, unlocked clock)."""
    return build_replica_perf(model, gpu, calibration=cal, min_kv_tokens=0)


def _step_cols(df: pl.DataFrame) -> tuple[Arr, Arr, Arr, Arr]:
    c = [df[n].cast(pl.Float64).to_numpy() for n in ("prefill_tokens", "prefill_pairs", "decode_seqs",
                                                       "decode_kv")]
    return c[0], c[1], c[2], c[3]


def predict_steps(df: pl.DataFrame, perf: RooflinePerf) -> tuple[Arr, Arr]:
    """Predicted (seconds, watts per GPU) for each row of a steps table."""
    pt, pr, ds, kv = _step_cols(df)
    return perf.step_time_s(pt, pr, ds, kv), perf.step_power_w(pt, pr, ds, kv)


# ---------------------------------------------------------------------------------------------------
# fitting


def _fit_log(fn: Callable[[Arr], Arr], meas: Arr, x0: Sequence[float], lo: Sequence[float],
             hi: Sequence[float]) -> Arr:
    """Least squares on ``log(pred / meas)`` from ``x0`` within bounds (soft-L1 against outliers)."""
    x = np.clip(np.asarray(x0, dtype=np.float64), np.asarray(lo) * 1.000001, np.asarray(hi) * 0.999999)
    lm = np.log(meas)

    def resid(v: Arr) -> Arr:
        return np.asarray(np.log(np.maximum(fn(v), 1e-12)) - lm, dtype=np.float64)

    r = least_squares(resid, x, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, x_scale="jac", max_nfev=400)
    return np.asarray(r.x, dtype=np.float64)


def fit_gemm(df: pl.DataFrame, gpu: GPUSpec, dtype: str, start: GemmCurve, *,
             at_max_clock: bool = False) -> GemmCurve:
    """Fit one dtype's GEMM curve to the given (training) rows.

    ``at_max_clock``: read each row at the SM clock it ran at (column ``sm_clock_mhz``: its compute peak
    scaled by clock over maximum), so the curve is the unthrottled chip's
    (:func:`planner.perf.engine_kernels.fit_gemm_at_max_clock` says why).
    """
    sub = df.filter(pl.col("dtype") == dtype)
    meas = sub["time_s"].cast(pl.Float64).to_numpy()
    m, n, k = (sub[c].cast(pl.Float64).to_numpy() for c in ("m", "n", "k"))
    peak = (gpu.fp8_tflops if dtype == "fp8" else gpu.bf16_tflops) * 1e12
    bw = gpu.hbm_tbps * 1e12
    wb = DTYPE_BYTES[dtype]
    ratio = np.ones(sub.height)
    if at_max_clock:
        ratio = np.clip(sub["sm_clock_mhz"].cast(pl.Float64).fill_null(gpu.max_sm_clock_mhz).to_numpy()
                        / gpu.max_sm_clock_mhz, 0.1, 1.0)
    groups = np.unique(ratio)

    def fn(v: Arr) -> Arr:
        cv = np.ascontiguousarray(v).copy()
        cv[5] = 0.0
        out = np.empty(meas.shape[0])
        for r in groups:
            sel = ratio == r
            out[sel] = kn.gemm_times(m[sel], n[sel], k[sel], wb, peak * float(r), bw, cv)
        return _soft(out, v[5], v[6])

    x0 = [start.ec_max, start.m_half, start.w_half, start.em_max, start.p, start.launch_s, start.overlap]
    v = _fit_log(fn, meas, x0, lo=[0.05, 0.0, 0.0, 0.05, 1.0, 0.0, 0.0],
                 hi=[1.0, 4096.0, 1e9, 1.0, 16.0, 1e-3, 1e3])
    return GemmCurve(ec_max=float(v[0]), m_half=float(v[1]), w_half=float(v[2]), em_max=float(v[3]),
                     p=float(v[4]), launch_s=float(v[5]), overlap=float(v[6]))


def fit_attention(df: pl.DataFrame, gpu: GPUSpec, start: AttentionCurve) -> AttentionCurve:
    """Fit prefill and decode attention curves to the given (training) rows.

    ``start.decode_split_units`` is kept (a property of the GPU, not fitted).
    """
    cur = start
    pre = df.filter(pl.col("phase") == "prefill")
    if pre.height >= 8:
        meas = pre["time_s"].cast(pl.Float64).to_numpy()

        def fp(v: Arr) -> Arr:
            c = replace(cur, prefill_ec=v[0], prefill_x_half=v[1], prefill_em=v[2], prefill_launch_s=v[3],
                        prefill_w_half=v[4], prefill_bal_half=v[5], prefill_p=v[6])
            return predict_attention(pre, gpu, replace(PRIOR, attention=c))

        v = _fit_log(fp, meas, [cur.prefill_ec, cur.prefill_x_half, cur.prefill_em, cur.prefill_launch_s,
                                cur.prefill_w_half, cur.prefill_bal_half, cur.prefill_p],
                     lo=[0.02, 0.0, 0.02, 0.0, 0.0, 0.0, 1.0], hi=[1.0, 65536.0, 1.0, 1e-3, 1e5, 1e6, 16.0])
        cur = replace(cur, prefill_ec=float(v[0]), prefill_x_half=float(v[1]), prefill_em=float(v[2]),
                      prefill_launch_s=float(v[3]), prefill_w_half=float(v[4]), prefill_bal_half=float(v[5]),
                      prefill_p=float(v[6]))
    dec = df.filter(pl.col("phase") == "decode")
    if dec.height >= 8:
        meas = dec["time_s"].cast(pl.Float64).to_numpy()

        def fd(v: Arr) -> Arr:
            c = replace(cur, decode_em=v[0], decode_em_nosplit=v[1], decode_unit_frac=v[2], decode_q=v[3],
                        decode_l_half=v[4], decode_ec=v[5], decode_launch_s=v[6])
            return predict_attention(dec, gpu, replace(PRIOR, attention=c))

        v = _fit_log(fd, meas, [cur.decode_em, cur.decode_em_nosplit or cur.decode_em, cur.decode_unit_frac,
                                cur.decode_q, cur.decode_l_half, cur.decode_ec, cur.decode_launch_s],
                     lo=[0.02, 0.02, 1e-4, 0.5, 0.0, 0.01, 0.0], hi=[1.0, 1.0, 1.0, 16.0, 1e5, 1.0, 1e-3])
        cur = replace(cur, decode_em=float(v[0]), decode_em_nosplit=float(v[1]), decode_unit_frac=float(v[2]),
                      decode_q=float(v[3]), decode_l_half=float(v[4]), decode_ec=float(v[5]),
                      decode_launch_s=float(v[6]))
    return cur


def _with_ew(cal: Calibration, v: Sequence[float] | Arr) -> Calibration:
    """``cal`` with the elementwise fields set from ``v`` (order of :func:`fit_elementwise`)."""
    return replace(cal, ew_em=float(v[0]), ew_em_silu=float(v[1]), ew_em_rope=float(v[2]),
                   ew_em_norm=float(v[3]), ew_norm_rows_half=float(v[4]), ew_launch_s=float(v[5]),
                   ew_overlap=float(v[6]))


def fit_elementwise(df: pl.DataFrame, gpu: GPUSpec, start: Calibration) -> Calibration:
    """``start`` with its elementwise fields (per-kind bandwidth fractions, RMSNorm rows at half
    efficiency, per-kernel cost and its soft-sum exponent) fitted to the given (training) rows."""
    meas = df["time_s"].cast(pl.Float64).to_numpy()

    def fn(v: Arr) -> Arr:
        return predict_elementwise(df, gpu, _with_ew(start, v))

    fracs = [f if f > 0 else 0.6 for f in (start.ew_em, start.ew_em_silu, start.ew_em_rope, start.ew_em_norm)]
    x0 = [*fracs, start.ew_norm_rows_half, start.ew_launch_s, start.ew_overlap]
    v = _fit_log(fn, meas, x0, lo=[0.02, 0.02, 0.02, 0.02, 0.0, 0.0, 0.0],
                 hi=[1.0, 1.0, 1.0, 1.0, 1e6, 1e-3, 1e3])
    return _with_ew(start, v)


def fit_overhead(df: pl.DataFrame, gpu: GPUSpec, cal: Calibration,
                 model: ModelSpec) -> tuple[float, float]:
    """``(step_s, per_seq_s)``: the part of measured steps the operators do not explain (NNLS)."""
    base = step_perf(gpu, replace(cal, step_s=0.0, per_seq_s=0.0), model)
    t0, _ = predict_steps(df, base)
    meas = df["time_s"].cast(pl.Float64).to_numpy()
    _, _, ds, _ = _step_cols(df)
    seqs = ds + (df["prefill_tokens"].cast(pl.Float64).to_numpy() > 0)
    # weight rows by 1/meas so that the fit minimises relative error
    w = 1.0 / meas
    A = np.column_stack([w, seqs * w])
    sol, _ = nnls(A, (meas - t0) * w)
    return float(sol[0]), float(sol[1])


def _utilisation(df: pl.DataFrame, perf: RooflinePerf) -> tuple[Arr, Arr, Arr]:
    """Busy fraction, compute and bandwidth utilisation of each measured step, from its measured time."""
    pt, pr, ds, kv = _step_cols(df)
    meas = df["time_s"].cast(pl.Float64).to_numpy()
    out = np.zeros(kn.OUT_SIZE)
    busy, uc, um = (np.empty(df.height) for _ in range(3))
    for i in range(df.height):
        kn.step_eval(perf.params, pt[i], pr[i], ds[i], kv[i], out)
        busy[i] = min(out[kn.OUT_BUSY] / meas[i], 1.0)
        uc[i] = min(out[kn.OUT_FLOPS] / (perf.gpu.bf16_tflops * 1e12 * meas[i]), 1.0)
        um[i] = min(out[kn.OUT_BYTES] / (perf.gpu.hbm_tbps * 1e12 * meas[i]), 1.0)
    return busy, uc, um


def _phase_fractions(power: pl.DataFrame, gpu: GPUSpec) -> tuple[Arr, Arr]:
    """Achieved compute and bandwidth fractions per power phase (column names vary; zero if absent).

    The compute fraction is that of the phase's *work at full clock*: a phase that held the power limit
    ran its SMs below the maximum clock (``sm_clock_mhz_mean``), so its achieved FLOP/s over the
    peak understates what the same work demands unthrottled (``tflops_frac / r``, clipped at 1); the
    model's prediction for it is then clipped at TDP like the measurement.
    """
    n = power.height
    uc = np.zeros(n)
    um = np.zeros(n)
    for c in ("tflops_frac", "compute_fraction", "tflops_fraction"):
        if c in power.columns:
            uc = power[c].cast(pl.Float64).fill_null(0.0).to_numpy()
            break
    else:
        for c in ("achieved_tflops", "tflops"):
            if c in power.columns:
                uc = power[c].cast(pl.Float64).fill_null(0.0).to_numpy() / gpu.bf16_tflops
                break
    for c in ("bw_frac", "bw_fraction", "bandwidth_fraction"):
        if c in power.columns:
            um = power[c].cast(pl.Float64).fill_null(0.0).to_numpy()
            break
    else:
        for c in ("achieved_gbps", "gbps", "bandwidth_gbps"):
            if c in power.columns:
                um = power[c].cast(pl.Float64).fill_null(0.0).to_numpy() / (gpu.hbm_tbps * 1e3)
                break
    if "sm_clock_mhz_mean" in power.columns:
        clk = power["sm_clock_mhz_mean"].cast(pl.Float64).fill_null(gpu.max_sm_clock_mhz).to_numpy()
        uc = uc * gpu.max_sm_clock_mhz / np.clip(clk, gpu.min_sm_clock_mhz, gpu.max_sm_clock_mhz)
    return np.clip(uc, 0.0, 1.0), np.clip(um, 0.0, 1.0)


def fit_power(power: pl.DataFrame | None, steps: pl.DataFrame | None, gpu: GPUSpec, cal: Calibration,
              model: ModelSpec) -> PowerCoeffs:
    """Fit idle, busy, compute and memory watts (NNLS) from idle/gemm/memcpy phases and training steps.

    Prefill and decode *phases* are not used to fit: they are the per-phase check.
    """
    idle = gpu.idle_w
    rows_a: list[Arr] = []
    rows_b: list[float] = []
    if power is not None:
        ph = power["phase"].to_numpy()
        w = power["power_w_mean"].cast(pl.Float64).to_numpy()
        if (ph == "idle").any():
            idle = float(np.mean(w[ph == "idle"]))
        uc, um = _phase_fractions(power, gpu)
        for i in range(power.height):
            if ph[i] in ("gemm", "memcpy"):
                rows_a.append(np.array([1.0, uc[i], um[i]]))
                rows_b.append(float(w[i] - idle))
    if steps is not None and "power_w" in steps.columns:
        st = steps.filter(pl.col("power_w").is_not_null() & pl.col("power_w").is_not_nan()
                          & (pl.col("power_w") > 0))
        if st.height:
            busy, uc_s, um_s = _utilisation(st, step_perf(gpu, cal, model))
            pw = st["power_w"].cast(pl.Float64).to_numpy()
            for i in range(st.height):
                rows_a.append(np.array([busy[i], uc_s[i], um_s[i]]))
                rows_b.append(float(pw[i] - idle))
    if len(rows_b) < 3:
        return replace(cal.power, idle_w=idle, clock_exp=polca_clock_exponent(gpu.tdp_w, idle),
                       tdp_w=gpu.tdp_w)
    A = np.vstack(rows_a)
    b = np.asarray(rows_b)
    rel = 1.0 / np.maximum(b + idle, 1.0)
    sol, _ = nnls(A * rel[:, None], b * rel)
    return PowerCoeffs(idle_w=idle, busy_w=float(sol[0]), compute_w=float(sol[1]), mem_w=float(sol[2]),
                       clock_exp=polca_clock_exponent(gpu.tdp_w, idle), tdp_w=gpu.tdp_w)


@dataclass(frozen=True)
class FitResult:
    """A fitted calibration and its error table (train and held-out)."""

    calibration: Calibration
    errors: tuple[ErrorRow, ...]


def _gemm_keys(df: pl.DataFrame) -> NDArray[np.bool_]:
    return holdout_mask(_keys(df, ["n", "k", "dtype"]))


def _attn_keys(df: pl.DataFrame) -> NDArray[np.bool_]:
    return holdout_mask(_keys(df, ["phase", "batch", "q_len", "kv_len", "num_heads", "num_kv_heads",
                                   "head_dim"]))


def _ew_keys(df: pl.DataFrame) -> NDArray[np.bool_]:
    return holdout_mask(_keys(df, ["op", "tokens", "hidden"]))


def _step_keys(df: pl.DataFrame) -> NDArray[np.bool_]:
    return holdout_mask(_keys(df, ["kind", "prefill_tokens", "prefill_pairs", "decode_seqs", "decode_kv"]))


def fit_profile(profile: Profile, gpu: GPUSpec, model: ModelSpec, *, start: Calibration = PRIOR,
                collectives_folder: Path | None = None) -> FitResult:
    """Fit every curve on the training split of each table; report errors on both splits.

    Args:
        profile: measured tables.
        gpu: catalog entry of the profiled GPU (its peaks are the denominators of every efficiency).
        model: architecture of the profiled whole-step stack.
        start: initial guess (and the values kept for curves with no data).
    """
    cal = replace(start, gpu=gpu.name)
    if profile.gemm is not None:
        tr = profile.gemm.filter(pl.Series(~_gemm_keys(profile.gemm)))
        for dt in ("bf16", "fp8"):
            if tr.filter(pl.col("dtype") == dt).height >= 6:
                if dt == "bf16":
                    cal = replace(cal, gemm_bf16=fit_gemm(tr, gpu, dt, cal.gemm_bf16))
                else:
                    cal = replace(cal, gemm_fp8=fit_gemm(tr, gpu, dt, cal.gemm_fp8))
    if profile.attention is not None:
        tr = profile.attention.filter(pl.Series(~_attn_keys(profile.attention)))
        start_attn = replace(cal.attention, decode_split_units=split_units(profile.meta))
        cal = replace(cal, attention=fit_attention(tr, gpu, start_attn))
    if profile.elementwise is not None:
        tr = profile.elementwise.filter(pl.Series(~_ew_keys(profile.elementwise)))
        cal = fit_elementwise(tr, gpu, cal)
    steps_tr = None
    if profile.steps is not None:
        steps_tr = profile.steps.filter(pl.Series(~_step_keys(profile.steps)))
        s, q = fit_overhead(steps_tr, gpu, cal, model)
        cal = replace(cal, step_s=s, per_seq_s=q)
    cal = replace(cal, power=fit_power(profile.power, steps_tr, gpu, cal, model))
    coll_from = collectives_folder or Path(profile.folder)
    coll = comm.load_collectives(coll_from)
    comm_rows: list[ErrorRow] = []
    if coll is not None and coll.height:
        fits = comm.fit_all(coll, gpu.link_gbps)
        cal = replace(cal, allreduce=fits.get("all_reduce"), alltoall=fits.get("all_to_all"),
                      allgather=fits.get("all_gather"))
        comm_rows = comm_errors(coll, fits, gpu.link_gbps)
    errors = evaluate_profile(profile, gpu, model, cal) + tuple(comm_rows)
    held = {f"{e.family}_median_ape": round(e.median_ape, 3) for e in errors if e.split == "heldout"}
    date = profile.meta.get("date", "unknown date")
    cal = replace(cal, holdout_errors=held,
                  source=f"fitted by planner.perf.calibrate on {profile.meta.get('gpu_name', gpu.name)} "
                         f"profile of {date}; " + (
                             "collectives fitted on the multi-GPU profile "
                             f"{coll_from.name}/collectives.parquet (NCCL in CUDA graphs); " if comm_rows else
                             "collectives (alpha_s, collective_base_s, link_eff) are the prior; ")
                         + "the clock response is POLCA-anchored, not measured")
    return FitResult(calibration=cal, errors=errors)


def comm_errors(coll: pl.DataFrame, fits: dict[str, CommFit], link_gbps: float) -> list[ErrorRow]:
    """Collective errors: ``train`` is the fit on every GPU count; ``heldout`` refits on the smaller
    groups only and predicts the largest (how the fit extrapolates to more GPUs)."""
    rows: list[ErrorRow] = []
    top = int(coll["gpus"].max())  # type: ignore[arg-type]
    small = coll.filter(pl.col("gpus") < top)
    for op, fit in fits.items():
        d = coll.filter(pl.col("op") == op)
        meas = d["time_s"].to_numpy()
        pred = comm.predict(op, d["gpus"].cast(pl.Float64).to_numpy(), d["bytes"].cast(pl.Float64).to_numpy(),
                            fit, link_gbps)
        rows.append(_row(f"comm_{op}", "train", pred, meas))
        if small.filter(pl.col("op") == op).height >= 6:
            f_small = comm.fit(small, link_gbps, op)
            big = d.filter(pl.col("gpus") == top)
            pb = comm.predict(op, float(top), big["bytes"].cast(pl.Float64).to_numpy(), f_small, link_gbps)
            rows.append(_row(f"comm_{op}", "heldout", pb, big["time_s"].to_numpy()))
    return rows


def evaluate_profile(profile: Profile, gpu: GPUSpec, model: ModelSpec,
                     cal: Calibration) -> tuple[ErrorRow, ...]:
    """Errors of a calibration on a profile, per family and split (``train`` / ``heldout``)."""
    rows: list[ErrorRow] = []

    def both(family: str, df: pl.DataFrame, mask: NDArray[np.bool_], pred: Arr) -> None:
        meas = df["time_s"].cast(pl.Float64).to_numpy()
        rows.append(_row(family, "train", pred[~mask], meas[~mask]))
        rows.append(_row(family, "heldout", pred[mask], meas[mask]))

    if profile.gemm is not None:
        g = profile.gemm
        mask = _gemm_keys(g)
        pred = predict_gemm(g, gpu, cal)
        for dt in ("bf16", "fp8"):
            sel = (g["dtype"] == dt).to_numpy()
            if sel.any():
                both(f"gemm_{dt}", g.filter(pl.Series(sel)), mask[sel], pred[sel])
    if profile.attention is not None:
        a = profile.attention
        mask = _attn_keys(a)
        pred = predict_attention(a, gpu, cal)
        for ph in ("prefill", "decode"):
            sel = (a["phase"] == ph).to_numpy()
            if sel.any():
                both(f"attn_{ph}", a.filter(pl.Series(sel)), mask[sel], pred[sel])
    if profile.elementwise is not None:
        e = profile.elementwise
        both("elementwise", e, _ew_keys(e), predict_elementwise(e, gpu, cal))
    if profile.steps is not None:
        s = profile.steps
        mask = _step_keys(s)
        t, w = predict_steps(s, step_perf(gpu, cal, model))
        kinds = s["kind"].to_numpy()
        for kind in ("prefill", "decode", "mixed"):
            sel = kinds == kind
            if sel.any():
                both(f"step_{kind}", s.filter(pl.Series(sel)), mask[sel], t[sel])
        both("step_all", s, mask, t)
        if "power_w" in s.columns:
            pw = s["power_w"].cast(pl.Float64).to_numpy()
            ok = np.isfinite(pw) & (pw > 0)
            for kind in ("prefill", "decode", "mixed"):
                sel = ok & (kinds == kind)
                rows.append(_row(f"power_step_{kind}", "train", w[sel & ~mask], pw[sel & ~mask]))
                rows.append(_row(f"power_step_{kind}", "heldout", w[sel & mask], pw[sel & mask]))
    if profile.power is not None:
        rows.extend(_power_phase_rows(profile.power, gpu, cal))
    return tuple(rows)


def _power_phase_rows(power: pl.DataFrame, gpu: GPUSpec, cal: Calibration) -> list[ErrorRow]:
    """Per-phase power error from the phase's own achieved fractions; idle/gemm/memcpy are fitted
    on ("train"), prefill and decode are not ("heldout")."""
    uc, um = _phase_fractions(power, gpu)
    meas = power["power_w_mean"].cast(pl.Float64).to_numpy()
    ph = power["phase"].to_numpy()
    pw = cal.power
    busy = np.where(ph == "idle", 0.0, 1.0)
    pred = np.minimum(pw.idle_w + pw.busy_w * busy + pw.compute_w * uc + pw.mem_w * um, gpu.tdp_w)
    rows = []
    for name in ("idle", "gemm", "memcpy", "prefill", "decode"):
        sel = ph == name
        if sel.any():
            split = "heldout" if name in ("prefill", "decode") else "train"
            rows.append(_row(f"power_phase_{name}", split, pred[sel], meas[sel]))
    return rows


def errors_frame(errors: Sequence[ErrorRow]) -> pl.DataFrame:
    """The error table as a frame (family, split, n, median_ape, p90_ape)."""
    return pl.DataFrame([e.__dict__ for e in errors],
                        schema={"family": pl.String(), "split": pl.String(), "n": pl.Int64(),
                                "median_ape": pl.Float64(), "p90_ape": pl.Float64()})


def profile_dir() -> Path:
    """Folder of the shipped measured profiles."""
    return calibration_dir().parent / "profiles"


def validation_dir() -> Path:
    """Folder of the shipped engine validation runs."""
    return calibration_dir().parent / "validation"


def collectives_source(root: Path, gpu: GPUSpec) -> Path | None:
    """Where ``gpu``'s collectives come from: its own multi-GPU profile, else that of a profiled GPU
    with the same NVLink (per-direction bandwidth and GPUs per node: H100 and H200 SXM share NVLink 4
    and NVSwitch), else None (the prior)."""
    if (root / gpu.name / "collectives.parquet").is_file():
        return root / gpu.name
    cat = load_catalog()
    for folder in sorted(root.iterdir()):
        if not (folder / "collectives.parquet").is_file():
            continue
        try:
            other = cat.gpu(folder.name)
        except (KeyError, InputError):
            continue
        if other.link_gbps == gpu.link_gbps and other.gpus_per_node == gpu.gpus_per_node:
            return folder
    return None


EngineRows = tuple[tuple[float, str, int, float, float], ...]
"""Engine TPOT check per load level: (level, split, n, median APE %, p90 APE %)."""


def calibrate_gpu(gpu_key: str, *, profiles: Path | None = None, out: Path | None = None,
                  validation: Path | None = None) -> tuple[Path, pl.DataFrame, EngineRows]:
    """Fit the shipped profile of a GPU and write its calibration JSON (atomically).

    Args:
        gpu_key: catalog GPU key (the profile folder's name).
        profiles: profiles root (None: the shipped data).
        out: calibration folder (None: the shipped data).
        validation: engine validation root (None: the shipped data); its engine fit is applied when
            the GPU has one.

    Returns:
        The file written, the fit's error table, and the engine TPOT rows (level, split, n, median APE
        %, p90 APE %; empty without engine data).

    Raises:
        InputError: an unknown GPU, a missing or malformed profile or validation file.
    """
    cat = load_catalog()
    gpu = cat.gpu(gpu_key)
    root = Path(profiles or profile_dir())
    prof = load_profile(root / gpu.name)
    res = fit_profile(prof, gpu, cat.model(STEP_MODEL), collectives_folder=collectives_source(root, gpu))
    cal = res.calibration
    vfolder = Path(validation or validation_dir()) / gpu.name
    engine_rows: EngineRows = ()
    if (vfolder / "engine_requests.parquet").is_file():
        reqs, meta = load_requests(vfolder)
        ef = fit_engine(reqs, step_perf(gpu, cal, engine_model(cat.model(STEP_MODEL), meta)),
                        str(meta.get("engine", "engine")))
        cal = replace(cal, engine_step_s=ef.engine_step_s, engine_per_seq_s=ef.engine_per_seq_s,
                      engine=ef.engine)
        engine_rows = ef.levels
    target = Path(out or calibration_dir()) / f"{gpu.name}.json"
    write_text_atomic(target, cal.to_json())
    return target, errors_frame(res.errors), engine_rows

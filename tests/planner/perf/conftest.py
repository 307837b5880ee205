"""Synthetic profiles for the fitter's tests: tables generated from a known calibration plus noise.

The real H100 profile ships in ``planner/perf/data/profiles``; these frames let the fitter be tested
on data whose true parameters are known, in the exact on-disk format.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.catalog.schema import Catalog
from planner.perf import kernel as kn
from planner.perf.calibrate import (
    STEP_MODEL,
    predict_attention,
    predict_elementwise,
    predict_gemm,
    predict_steps,
    step_perf,
)
from planner.perf.calibration import PRIOR, AttentionCurve, Calibration, GemmCurve, PowerCoeffs

TRUE = replace(
    PRIOR,
    gemm_bf16=GemmCurve(ec_max=0.82, m_half=30.0, w_half=4.0e6, em_max=0.9, p=6.0, launch_s=4e-6),
    gemm_fp8=GemmCurve(ec_max=0.6, m_half=60.0, w_half=8.0e6, em_max=0.85, p=5.0, launch_s=5e-6),
    attention=AttentionCurve(prefill_ec=0.5, prefill_x_half=400.0, prefill_em=0.6, prefill_launch_s=1.5e-5,
                             decode_em=0.8, decode_ec=0.3, decode_launch_s=6e-6, prefill_w_half=3.0,
                             prefill_bal_half=400.0, prefill_p=1.5, decode_em_nosplit=0.7,
                             decode_split_units=132.0, decode_unit_frac=0.12, decode_q=2.5,
                             decode_l_half=40.0),
    ew_em=0.7, ew_launch_s=3e-6, ew_overlap=0.1, ew_em_silu=0.55, ew_em_rope=0.6, ew_em_norm=0.75,
    ew_norm_rows_half=250.0, step_s=2.5e-3, per_seq_s=2e-5,
    power=PowerCoeffs(idle_w=72.0, busy_w=120.0, compute_w=520.0, mem_w=180.0, clock_exp=4.0, tdp_w=700.0),
    gpu="H100-SXM", source="synthetic truth",
)
NOISE = 0.02


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


def _noisy(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    return x * np.exp(rng.normal(0.0, NOISE, x.shape))


def write_synthetic_profile(folder: Path, cat: Catalog, truth: Calibration = TRUE, seed: int = 0) -> Path:
    """Write a complete profile folder (all tables + meta.json) generated from ``truth``."""
    rng = np.random.default_rng(seed)
    gpu = cat.gpu("H100-SXM")
    model = cat.model(STEP_MODEL)
    folder.mkdir(parents=True, exist_ok=True)
    h, f, v = model.hidden_size, model.ffn_size, model.vocab_size
    shapes = []
    for tp in (1, 2, 4, 8):
        shapes += [(6144 // tp, h), (h, 4096 // tp), (2 * f // tp, h), (h, f // tp), (v // tp, h)]
    rows = [{"m": m, "n": n, "k": k, "dtype": dt} for n, k in shapes for m in (2 ** i for i in range(15))
            for dt in ("bf16", "fp8")]
    g = pl.DataFrame(rows, schema={"m": pl.Int64, "n": pl.Int64, "k": pl.Int64, "dtype": pl.String})
    t = _noisy(rng, predict_gemm(g, gpu, truth))
    g = g.with_columns(pl.Series("time_s", t), pl.Series("tflops", 2 * g["m"] * g["n"] * g["k"] / t / 1e12),
                       pl.lit(1980.0).alias("sm_clock_mhz"))
    g.write_parquet(folder / "gemm.parquet")
    arows = []
    for s in (128, 256, 512, 1024, 2048, 4096, 8192, 16384):
        for b in (1, 4):
            arows.append(("prefill", b, s, s))
        arows.append(("prefill", 1, 512, s + 512))
    for b in (1, 2, 8, 32, 64, 128, 256):
        for c in (128, 512, 2048, 8192, 32768):
            arows.append(("decode", b, 1, c))
    a = pl.DataFrame(arows, schema={"phase": pl.String, "batch": pl.Int64, "q_len": pl.Int64,
                                    "kv_len": pl.Int64}, orient="row").with_columns(
        pl.lit(32).alias("num_heads"), pl.lit(8).alias("num_kv_heads"), pl.lit(128).alias("head_dim"),
        pl.lit("bf16").alias("dtype"))
    a = a.with_columns(pl.Series("time_s", _noisy(rng, predict_attention(a, gpu, truth))))
    a.write_parquet(folder / "attention.parquet")
    erows = [(op, tk, hid) for op in ("rmsnorm", "add", "rope", "silu_mul")
             for tk in (1, 16, 256, 4096, 16384) for hid in (4096, 14336)]
    e = pl.DataFrame(erows, schema={"op": pl.String, "tokens": pl.Int64, "hidden": pl.Int64}, orient="row")
    e = e.with_columns(pl.Series("time_s", _noisy(rng, predict_elementwise(e, gpu, truth))))
    e.write_parquet(folder / "elementwise.parquet")
    srows = []
    for n in (128, 512, 1024, 2048, 4096, 8192):
        srows.append(("prefill", n, n * (n + 1) / 2, 0, 0))
    for b in (1, 8, 32, 64, 128, 256):
        for c in (512, 2048, 8192):
            srows.append(("decode", 0, 0.0, b, b * c))
    for n, b in ((256, 16), (512, 64), (1024, 32), (2048, 128)):
        srows.append(("mixed", n, n * (1000 + (n + 1) / 2), b, b * 1500))
    steps = pl.DataFrame(srows, schema={"kind": pl.String, "prefill_tokens": pl.Int64,
                                    "prefill_pairs": pl.Float64, "decode_seqs": pl.Int64,
                                    "decode_kv": pl.Int64}, orient="row")
    st, sw = predict_steps(steps, step_perf(gpu, truth, model))
    steps = steps.with_columns(pl.Series("time_s", _noisy(rng, st)), pl.Series("power_w", _noisy(rng, sw)),
                       pl.lit(1980.0).alias("sm_clock_mhz"))
    steps.write_parquet(folder / "steps.parquet")
    pw = truth.power
    phases = [("idle", 0.0, 0.0, 0.0), ("gemm", 1.0, 0.7, 0.1), ("memcpy", 1.0, 0.0, 0.9),
              ("prefill", 1.0, 0.55, 0.15), ("decode", 1.0, 0.05, 0.6)]
    p = pl.DataFrame(
        [{"phase": ph,
          "power_w_mean": min(pw.idle_w + pw.busy_w * b + pw.compute_w * c + pw.mem_w * m, 700.0),
          "tflops_frac": c, "bw_frac": m} for ph, b, c, m in phases])
    p.write_parquet(folder / "power.parquet")
    (folder / "meta.json").write_text(json.dumps({"gpu_name": "synthetic H100", "catalog_gpu": "H100-SXM",
                                                  "date": "synthetic"}), encoding="utf-8")
    _ = kn
    return folder


@pytest.fixture(scope="session")
def true_calibration() -> Calibration:
    """The calibration the synthetic profile was generated from."""
    return TRUE


@pytest.fixture(scope="session")
def synthetic_profile(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Path:
    return write_synthetic_profile(tmp_path_factory.mktemp("profiles") / "H100-SXM", catalog)

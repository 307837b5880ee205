"""Attention curves of the kernels an engine runs, fitted on the op-level table measured beside it.

The profile's attention table times the profiler's own kernel; vLLM on Hopper runs FlashAttention-3
(``vllm.vllm_flash_attn``, ``fa_version=3``), which is faster on long prompts (measured on the H100:
the profiled kernel takes 1.4x FA3's time at median over the shared prefill shapes, 1.9x at 4k-16k
tokens). ``python -m planner.profile.vllm_run --attention`` times FA3 on the profile's grid
(``data/validation/<GPU>/vllm-<v>/kernels/attention.parquet``).

Those timings are plain launches (no CUDA graph), so the smallest shapes measure the host's launch
path (about 70-80 us on the H100), not the GPU: rows under :data:`GPU_BOUND_S` are dropped, the
profile's own (graph-replayed) rows stand in for the work below the smallest GPU-bound engine row, and
the curves are refitted on the merge with :func:`planner.perf.calibrate.fit_attention`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from planner.catalog.schema import GPUSpec
from planner.perf.calibrate import fit_attention, fit_gemm, split_units
from planner.perf.calibration import AttentionCurve, Calibration, GemmCurve
from traces.errors import InputError

GPU_BOUND_S = 2.5e-4
"""Kernel times below this are taken as host-bound in an ungraphed timing loop."""

PREFILL_SHARED = 1024
"""Prompt length up to which the profiled prefill kernel and FA3 took the same time on the H100 (0.97x
at 1,024 tokens; 1.4-1.9x at 2k-32k)."""

KEY = ["phase", "batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim"]


def merged_attention(engine_table: pl.DataFrame, profile_table: pl.DataFrame) -> pl.DataFrame:
    """The engine kernel's GPU-bound bf16 rows, and the profile's rows for every other shape."""
    cols = [*KEY, "dtype", "time_s"]
    eng = engine_table
    if "error" in eng.columns:
        eng = eng.filter(pl.col("error") == "")
    eng = eng.filter((pl.col("dtype") == "bf16") & (pl.col("time_s") >= GPU_BOUND_S)).select(cols)
    prof = profile_table.filter(pl.col("dtype") == "bf16").select(cols)
    # beyond the smallest GPU-bound work the engine kernel was timed at, the profiled kernel (another
    # kernel, at other head counts too) would pull the fit back to its own speed: keep it below only
    # (prefill: prompts up to PREFILL_SHARED tokens, where the two kernels measured alike)
    work = pl.col("batch") * pl.col("q_len") * pl.col("kv_len")
    for phase in ("prefill", "decode"):
        e = eng.filter(pl.col("phase") == phase)
        if e.height:
            lo = int(e.select(work.min()).item())
            keep = work < lo
            if phase == "prefill":
                keep = keep & (pl.col("q_len") <= PREFILL_SHARED)
            prof = prof.filter((pl.col("phase") != phase) | keep)
    # equal weight for the two sources in each phase's fit (the engine's rows are repeated), so the few
    # long-prompt engine rows are not outvoted by the many short profile rows
    parts = []
    for phase in ("prefill", "decode"):
        e = eng.filter(pl.col("phase") == phase)
        q = prof.filter(pl.col("phase") == phase)
        reps = max(1, round(q.height / e.height)) if e.height else 0
        parts += [e] * reps + [q]
    return pl.concat([x.with_columns(pl.col(c).cast(pl.Int64) for c in KEY[1:]) for x in parts])


def fit_engine_attention(
    kernels: str | Path,
    profile_attention: str | Path,
    gpu: GPUSpec,
    cal: Calibration,
    profile_meta: dict[str, object] | None = None,
    *,
    phases: tuple[str, ...] = ("prefill", "decode"),
) -> AttentionCurve:
    """Attention curves of the engine's kernels (``kernels``: its ``attention.parquet``).

    ``phases``: which curves to refit; the others keep ``cal``'s (decode alone is what the vLLM profile
    uses: its decode timings read a paged cache as the engine does, its prefill timings do not).

    Raises:
        InputError: a table is missing.
    """
    for p in (Path(kernels), Path(profile_attention)):
        if not p.is_file():
            raise InputError("attention table not found", path=str(p))
    df = merged_attention(pl.read_parquet(kernels), pl.read_parquet(profile_attention))
    start = replace(
        cal.attention,
        decode_split_units=split_units(profile_meta or {})
        if profile_meta
        else cal.attention.decode_split_units,
    )
    fitted = fit_attention(df.filter(pl.col("phase").is_in(list(phases))), gpu, start)
    if "prefill" not in phases:
        k = cal.attention
        fitted = replace(fitted, prefill_ec=k.prefill_ec, prefill_x_half=k.prefill_x_half,
                         prefill_em=k.prefill_em, prefill_launch_s=k.prefill_launch_s,
                         prefill_w_half=k.prefill_w_half, prefill_bal_half=k.prefill_bal_half,
                         prefill_p=k.prefill_p)
    return fitted


def fit_gemm_at_max_clock(gemm_table: str | Path, gpu: GPUSpec, start: GemmCurve,
                          dtype: str = "bf16") -> GemmCurve:
    """The GEMM curve at the GPU's maximum SM clock, each profiled row read at the clock it ran at.

    Why: the profiler's long GEMM loops hold the GPU at its power limit, where it throttles (large bf16
    GEMMs on the H100 ran at 1,300-1,600 MHz of 1,980), and :func:`planner.perf.calibrate.fit_gemm`
    takes every row as if at full clock, so its curve is the throttled one (0.71 of peak). A serving
    engine's prompt chunks run between memory-bound decode steps at 1,935-1,965 MHz (the vLLM runs'
    NVML samples), so its GEMMs run near full clock. Here each row's compute peak is scaled by its
    measured clock over the maximum (the same scaling :meth:`planner.perf.model.RooflinePerf.at_clock`
    applies), so the fitted fractions are those of the unthrottled chip.

    Raises:
        InputError: the table is missing or has no clock column.
    """
    path = Path(gemm_table)
    if not path.is_file():
        raise InputError("gemm table not found", path=str(path))
    df = pl.read_parquet(path)
    if "sm_clock_mhz" not in df.columns or df.filter(pl.col("dtype") == dtype).height < 6:
        raise InputError("gemm table lacks per-row clocks", path=str(path), field="sm_clock_mhz")
    return fit_gemm(df, gpu, dtype, start, at_max_clock=True)

"""Orchestration: measure the sections asked for and write the profile folder (and the validation one).

Every section writes its table as soon as it finishes, so a run stopped by a time limit still leaves
what it measured; each section also has a share of the time budget and stops early (saying so in
``meta.json``) rather than overrunning it. ``meta.json`` is merged with an existing one, so sections
measured in separate runs end up described in one file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from planner.profile import engine, grid, micro, power
from planner.profile.llama import Stack, build_weights
from planner.profile.nvml import Sampler, nvml_reader
from planner.profile.tables import catalog_gpu_key, write_json, write_table
from planner.profile.timing import QUICK_POLICY, TimingPolicy

SECTIONS: tuple[str, ...] = ("gemm", "attention", "memcpy", "elementwise", "power", "steps", "engine")
"""Sections in the order they run; ``engine`` (the end-to-end validation) runs only when asked for."""

DEFAULT_SHARES: dict[str, float] = {
    "gemm": 0.28,
    "attention": 0.18,
    "memcpy": 0.03,
    "elementwise": 0.05,
    "power": 0.16,
    "steps": 0.30,
}
"""Fraction of the budget each micro section may use before it stops early (engine has its own)."""

CATALOG_GPUS = Path(__file__).resolve().parents[1] / "catalog" / "data" / "gpus.yaml"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "perf" / "data"


@dataclass(frozen=True)
class ProfileOptions:
    """What to measure and where to write it.

    Attributes:
        out: the data folder; tables go to ``out/profiles/<GPU key>/`` and ``out/validation/<GPU key>/``.
        quick: a reduced grid (minutes become seconds) for smoke runs.
        only: sections to run (empty: every micro section, plus ``engine`` if ``validate_engine``).
        validate_engine: also run the end-to-end engine validation.
        budget_s: wall-clock budget for the micro sections together.
        engine_budget_s: wall-clock budget for the engine validation.
        seed: seed of every random draw.
        resume: keep the GEMM and attention rows already in the profile folder and measure only the
            missing shapes (a run cut short by a time limit continues where it stopped).
        engine_levels: load levels (fractions of capacity) for the engine validation; empty: defaults.
        engine_level_seconds: arrival window per load level (longer: more requests, steadier p99).
        engine_capacity_rps: use this capacity instead of the burst's estimate (to add levels to an
            earlier run on the same scale).
    """

    out: Path = DEFAULT_OUT
    quick: bool = False
    only: frozenset[str] = frozenset()
    validate_engine: bool = False
    budget_s: float = 420.0
    engine_budget_s: float = 420.0
    seed: int = 20260101
    resume: bool = False
    engine_levels: tuple[float, ...] = ()
    engine_capacity_rps: float | None = None
    engine_level_seconds: float | None = None

    def sections(self) -> list[str]:
        """The sections to run, in run order.

        >>> ProfileOptions(only=frozenset({"steps", "gemm"})).sections()
        ['gemm', 'steps']
        >>> ProfileOptions(validate_engine=True).sections()[-1]
        'engine'
        """
        unknown = self.only - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown section(s) {sorted(unknown)} (expected some of {', '.join(SECTIONS)})")
        chosen = set(self.only) if self.only else {s for s in SECTIONS if s != "engine"}
        if self.validate_engine:
            chosen.add("engine")
        return [s for s in SECTIONS if s in chosen]


def parse_only(value: str | None) -> frozenset[str]:
    """``"gemm, attention"`` -> ``{"gemm", "attention"}``; raises ValueError on unknown names.

    >>> sorted(parse_only("gemm, steps"))
    ['gemm', 'steps']
    >>> parse_only(None)
    frozenset()
    """
    if not value:
        return frozenset()
    names = frozenset(x.strip().lower() for x in value.split(",") if x.strip())
    unknown = names - set(SECTIONS)
    if unknown:
        raise ValueError(
            f"--only: unknown section(s) {sorted(unknown)} (expected some of {', '.join(SECTIONS)})"
        )
    return names


def unavailable_reason() -> str | None:
    """None when torch with a CUDA GPU is importable here, else why the profiler cannot run."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    try:
        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA GPU"
    except Exception as exc:
        return f"torch cannot query CUDA: {exc}"
    return None


def catalog_peaks(key: str, path: Path = CATALOG_GPUS) -> tuple[float, float]:
    """``(bf16_tflops, hbm_tbps)`` of catalog GPU ``key``; NaN where unknown.

    >>> catalog_peaks("H100-SXM")[0] > 900
    True
    """
    try:
        import yaml

        gpus = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("gpus", {})
        entry = gpus.get(key) or {}
        return float(entry.get("bf16_tflops", math.nan)), float(entry.get("hbm_tbps", math.nan))
    except Exception:
        return math.nan, math.nan


@dataclass
class Run:
    """Mutable state of one profiler run (edge code: the GPU, the sampler, the notes)."""

    options: ProfileOptions
    torch: Any
    log: Callable[[str], None]
    clock: Callable[[], float] = time.perf_counter
    facts: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def _device_facts(torch: Any, nvml_facts: dict[str, Any]) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    l2 = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
    name = str(nvml_facts.get("gpu_name") or props.name)
    return {
        "gpu_name": name,
        "catalog_gpu": catalog_gpu_key(name),
        "driver": nvml_facts.get("driver", ""),
        "cuda": str(torch.version.cuda),
        "torch": str(torch.__version__),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sm_count": int(props.multi_processor_count),
        "l2_mb": l2 / 2**20,
        "max_sm_clock_mhz": nvml_facts.get("max_sm_clock_mhz", math.nan),
        "max_mem_clock_mhz": nvml_facts.get("max_mem_clock_mhz", math.nan),
        "power_limit_w": nvml_facts.get("power_limit_w", math.nan),
        "hostname": platform.node(),
        "memory_gb": props.total_memory / 1e9,
        "instant_power_field": nvml_facts.get("instant_power_field", False),
    }


def run_profile(options: ProfileOptions, *, log: Callable[[str], None] = print) -> list[Path]:
    """Run the chosen sections on GPU 0 and write their tables; return the files written.

    Raises:
        RuntimeError: torch or a CUDA GPU is missing (see :func:`unavailable_reason`).
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    import torch

    sections = options.sections()
    torch.backends.cuda.matmul.allow_tf32 = False
    nv = nvml_reader(0)
    sampler = Sampler(nv[0]).start() if nv is not None else None
    run = Run(options, torch, log)
    run.facts = _device_facts(torch, nv[1] if nv is not None else {})
    key = run.facts["catalog_gpu"]
    prof_dir = options.out / "profiles" / key
    val_dir = options.out / "validation" / key
    log(f"fleetwise profile: {run.facts['gpu_name']} -> {key}; sections {', '.join(sections)}")
    models = grid.merge_models(grid.load_catalog_models(), grid.REFERENCE_MODELS)
    run.notes["models"] = [m.name for m in models]
    micro = [s for s in sections if s != "engine"]
    share_total = sum(DEFAULT_SHARES[s] for s in micro) or 1.0
    started = run.clock()
    times: dict[str, float] = {}
    stack_holder: dict[str, Any] = {}
    try:
        for section in micro:
            budget = options.budget_s * DEFAULT_SHARES[section] / share_total
            t0 = run.clock()
            log(f"[{t0 - started:6.1f} s] {section} (budget {budget:.0f} s)")
            try:
                rows = _run_section(run, section, models, sampler, budget, stack_holder)
            except Exception as exc:  # one broken section must not lose the others' data
                run.notes[f"{section}_error"] = f"{type(exc).__name__}: {exc}"[:500]
                log(f"  {section} FAILED: {run.notes[f'{section}_error']}")
                torch.cuda.empty_cache()
                rows = []
            times[section] = run.clock() - t0
            if rows:
                run.written.append(write_table(prof_dir, section, rows))
                log(f"  wrote {len(rows)} rows to {run.written[-1]}")
        stack_holder.clear()
        torch.cuda.empty_cache()
        if micro:
            run.written.append(_write_meta(prof_dir, run, times))
        if "engine" in sections:
            run.written += _run_engine(run, val_dir, sampler)
    finally:
        if sampler is not None:
            sampler.stop()
    for line in run.summary:
        log(line)
    return run.written


def _policy(quick: bool) -> TimingPolicy:
    return QUICK_POLICY if quick else TimingPolicy()


def _stack(run: Run, holder: dict[str, Any], l2_bytes: int) -> Any:
    if "stack" not in holder:
        shape = next((m for m in grid.load_catalog_models() if m.name == grid.LLAMA_8B.name), grid.LLAMA_8B)
        layers = shape.num_layers or 32
        t0 = run.clock()
        weights = build_weights(run.torch, shape, num_layers=layers, seed=run.options.seed)
        holder["stack"] = Stack(run.torch, shape, weights, l2_bytes)
        run.log(f"  built random {shape.name} stack ({layers} layers) in {run.clock() - t0:.1f} s")
    return holder["stack"]


def _run_section(
    run: Run,
    section: str,
    models: tuple[grid.ModelShape, ...],
    sampler: Any,
    budget: float,
    holder: dict[str, Any],
) -> list[dict[str, Any]]:
    torch = run.torch
    quick = run.options.quick
    l2 = int(run.facts["l2_mb"] * 2**20)
    ctx = micro.BenchContext(
        torch=torch,
        l2_bytes=l2,
        policy=_policy(quick),
        sampler=sampler,
        deadline=run.clock() + budget,
        log=run.log,
        clock=run.clock,
        notes=run.notes,
    )
    if section == "gemm":
        reason = micro.fp8_supported(torch)
        run.notes["fp8"] = (
            reason or "torch._scaled_mm e4m3 x e4m3 -> bf16, per-tensor scales; m < 16 padded to 16"
        )
        shapes = grid.gemm_shapes(models, quick=quick)
        kept = _existing(run, "gemm")
        done = {(r["m"], r["n"], r["k"]) for r in kept}
        shapes = [s for s in shapes if s not in done]
        run.log(
            f"  {len(shapes)} GEMM shapes x {'bf16+fp8' if reason is None else 'bf16'}, {len(kept)} rows kept"
        )
        rows = kept + micro.bench_gemm(ctx, shapes, fp8=reason is None)
        best = max((r["tflops"] for r in rows if r["dtype"] == "bf16"), default=math.nan)
        best8 = max((r["tflops"] for r in rows if r["dtype"] == "fp8"), default=math.nan)
        run.summary.append(f"gemm: {len(rows)} rows, peak bf16 {best:.0f} TFLOP/s, fp8 {best8:.0f} TFLOP/s")
        return rows
    if section == "attention":
        heads = grid.head_configs(models, quick=quick)
        primary = set(grid.head_configs(models[:1], quick=quick))
        kept = _existing(run, "attention")
        rows = kept + micro.bench_attention(
            ctx,
            heads,
            prefill_lengths=grid.prefill_lengths(quick=quick),
            chunked=grid.chunked_prefill_cases(quick=quick),
            decode=lambda h: grid.decode_cases(h, quick=quick, coarse=h not in primary),
            prefill_batches=(1,) if quick else (1, 4),
            skip={micro.attention_key(r) for r in kept},
        )
        mla = next((m for m in models if m.mla is not None), None)
        if mla is not None and not ctx.out_of_time():
            cases = [(b, kv) for b in (1, 8, 32, 128) for kv in (512, 2048, 8192, 32768) if b * kv <= 1 << 20]
            have = {micro.attention_key(r) for r in kept}
            dk = mla.mla.kv_lora_rank + mla.mla.qk_rope_head_dim if mla.mla else 0
            cases = [c for c in cases if ("decode", c[0], 1, c[1], mla.num_heads, 1, dk) not in have]
            rows += micro.bench_mla_decode(ctx, mla, cases[:3] if quick else cases)
        run.summary.append(f"attention: {len(rows)} rows, kernels {run.notes.get('attention_kernels')}")
        return rows
    if section == "memcpy":
        rows = micro.bench_memcpy(ctx, grid.memcpy_sizes(quick=quick))
        run.summary.append(f"memcpy: peak {max(r['gbps'] for r in rows) / 1e3:.2f} TB/s (read+write)")
        return rows
    if section == "elementwise":
        rows = micro.bench_elementwise(ctx, grid.elementwise_cases(models, quick=quick))
        run.summary.append(f"elementwise: {len(rows)} rows")
        return rows
    stack = _stack(run, holder, l2)
    if section == "power":
        bf16, hbm = catalog_peaks(run.facts["catalog_gpu"])
        rows = power.power_phases(ctx, stack, peaks=power.Peaks(bf16, hbm), quick=quick)
        for r in rows:
            run.summary.append(
                f"power {r['phase']:8s} b={r['decode_batch']:<4d} {r['power_w_mean']:6.0f} W "
                f"(p95 {r['power_w_p95']:.0f}) {r['tflops']:7.1f} TFLOP/s {r['bw_tbps']:.2f} TB/s "
                f"sm {r['sm_clock_mhz_mean']:.0f} MHz"
            )
        return rows
    if section == "steps":
        rows = power.bench_steps(
            ctx, stack, grid.step_cases(quick=quick), power_window_s=0.3 if quick else 0.6
        )
        run.summary.append(f"steps: {len(rows)} rows")
        return rows
    raise ValueError(f"unknown section {section}")


def _existing(run: Run, table: str) -> list[dict[str, Any]]:
    """Rows already in ``<out>/profiles/<GPU>/<table>.parquet`` when resuming, else none."""
    path = run.options.out / "profiles" / run.facts["catalog_gpu"] / f"{table}.parquet"
    if not run.options.resume or not path.is_file():
        return []
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def _write_meta(prof_dir: Path, run: Run, times: dict[str, float]) -> Path:
    path = prof_dir / "meta.json"
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            existing = {}
    meta = {**existing, **run.facts}
    notes = dict(existing.get("notes", {})) if isinstance(existing.get("notes"), dict) else {}
    notes.update(micro.kernel_summary(run.notes))
    notes["timing"] = (
        "CUDA events around each call, warm-up first, median of repeats; inputs rotated over enough "
        "copies to span 3x L2; random data (never zeros); GPU clocks and power limit left as found"
    )
    notes["steps"] = (
        "random-weight Llama-3.1-8B stack in torch (RMSNorm, fused QKV, RoPE, SDPA GQA, O, fused gate/up, "
        "SiLU*mul, down, LM head on sampled tokens); decode/mixed replayed from CUDA graphs, prefill eager; "
        "power_w = NVML energy counter over >= 0.6 s of repeats"
    )
    notes["section_seconds"] = {**notes.get("section_seconds", {}), **times}
    meta["notes"] = notes
    return write_json(path, meta)


def _run_engine(run: Run, val_dir: Path, sampler: Any) -> list[Path]:
    shape = next((m for m in grid.load_catalog_models() if m.name == grid.LLAMA_8B.name), grid.LLAMA_8B)
    quick = run.options.quick
    deadline = run.clock() + run.options.engine_budget_s
    run.log(f"engine validation ({shape.name}, budget {run.options.engine_budget_s:.0f} s)")
    kwargs: dict[str, Any] = {}
    if run.options.engine_levels:
        kwargs["levels"] = run.options.engine_levels
    if run.options.engine_capacity_rps is not None:
        kwargs["capacity_rps"] = run.options.engine_capacity_rps
    if run.options.engine_level_seconds is not None:
        kwargs["level_seconds"] = run.options.engine_level_seconds
        kwargs["probe_requests"] = 8
    if quick:
        kwargs = {
            "levels": (0.5, 1.0),
            "probe_requests": 16,
            "probe_seconds": 40.0,
            "level_seconds": 10.0,
            "max_requests": 40,
            "min_requests": 8,
        }
    result = engine.run_validation(
        torch=run.torch,
        shape=shape,
        sampler=sampler,
        deadline=deadline,
        seed=run.options.seed,
        log=run.log,
        clock=run.clock,
        **kwargs,
    )
    meta, req_rows = result.meta, result.requests
    meta["gpu"] = {k: run.facts.get(k) for k in ("gpu_name", "catalog_gpu", "driver", "cuda", "torch")}
    written = [write_json(val_dir / "engine_meta.json", meta)]
    for name, rows in (
        ("engine_requests", result.requests),
        ("engine_tokens", result.tokens),
        ("engine_power", result.power),
    ):
        if rows:
            written.append(write_table(val_dir, name, rows))
    for lv in meta.get("levels", []):
        rows = [r for r in req_rows if r["load_level"] == lv["level"]]
        ttft = sorted(r["ttft_s"] for r in rows)
        tpot = sorted(r["tpot_s"] for r in rows if math.isfinite(r["tpot_s"]))
        if ttft and tpot:
            run.summary.append(
                f"engine level {lv['level']:.2f} ({lv['rate_rps']:.2f} req/s): {len(rows)} req, "
                f"TTFT p50 {ttft[len(ttft) // 2] * 1e3:.0f} ms "
                f"p90 {ttft[int(0.9 * (len(ttft) - 1))] * 1e3:.0f} ms, "
                f"TPOT p50 {tpot[len(tpot) // 2] * 1e3:.1f} ms"
            )
    return written


def main_args(argv: Iterable[str] | None = None) -> int:
    """``python -m planner.profile``: the same options as ``fleetwise profile`` (argparse, stdlib only)."""
    parser = argparse.ArgumentParser(prog="python -m planner.profile", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--validate-engine", action="store_true")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--engine-budget-s", type=float, default=420.0)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--resume", action="store_true", help="keep GEMM/attention rows already measured")
    parser.add_argument("--engine-levels", default="", help="comma-separated load levels, e.g. 0.25,0.5,1")
    parser.add_argument("--engine-capacity", type=float, default=None, help="req/s that load level 1 means")
    parser.add_argument("--engine-level-seconds", type=float, default=None, help="arrival window per level")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        only = parse_only(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reason = unavailable_reason()
    if reason is not None:
        print(
            f"error: {reason}; the profiler needs torch and an NVIDIA GPU (pip install 'fleetwise[profile]')",
            file=sys.stderr,
        )
        return 2
    opts = ProfileOptions(
        out=args.out,
        quick=args.quick,
        only=only,
        validate_engine=args.validate_engine,
        resume=args.resume,
        engine_levels=tuple(float(x) for x in args.engine_levels.split(",") if x.strip()),
        engine_capacity_rps=args.engine_capacity,
        engine_level_seconds=args.engine_level_seconds,
        budget_s=args.budget_s,
        engine_budget_s=args.engine_budget_s,
        seed=args.seed,
    )
    for path in run_profile(opts):
        print(f"wrote {path}")
    return 0

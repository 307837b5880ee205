"""vLLM measurements (``python -m planner.profile.vllm_run``) as the replay validation's tables.

A run folder holds ``requests.parquet`` (a row per request, with each token's arrival time),
``steps.parquet`` (vLLM's scheduler statistics per engine step), ``power.parquet`` (NVML) and
``meta.json``. :func:`split_run` turns one run into a validation folder per workload it replayed, in the
schema :mod:`planner.sim.validate` reads (``engine_requests.parquet``, ``engine_tokens.parquet``,
``engine_power.parquet``, ``engine_meta.json``), with the raw ``steps.parquet`` beside them.

Shipped layout: ``planner/perf/data/validation/<GPU>/vllm-<version>/<variant>/<workload>/``, the variant
being the model and what its engine changed (:func:`variant`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from traces.atomic import write_atomic, write_text_atomic
from traces.errors import InputError

GPU_KEYS = {"H100": "H100-SXM", "H200": "H200-SXM"}
"""Catalog keys of the GPUs whose NVML names contain these words."""

CATALOG_MODELS = {"llama-3.1-8b": "Llama-3.1-8B", "qwen3-32b": "Qwen3-32B", "qwen3-30b-a3b": "Qwen3-30B-A3B"}
"""The catalog architecture of each model the driver serves."""


def gpu_key(meta: dict[str, Any]) -> str:
    """The catalog GPU a run's meta names (NVML or torch device name)."""
    gpu = meta.get("gpu") if isinstance(meta.get("gpu"), dict) else {}
    assert isinstance(gpu, dict)
    name = str(gpu.get("gpu_name") or gpu.get("torch_name") or "")
    for word, key in GPU_KEYS.items():
        if word in name:
            return key
    raise InputError(
        f"unknown GPU {name!r} in the run's meta", field="gpu.gpu_name", expected="an H100 or H200"
    )


def precisions(meta: dict[str, Any]) -> tuple[str, str]:
    """``(weight_dtype, kv_dtype)`` of a run, in the perf model's names, from its engine arguments."""
    args = meta.get("engine_args", {}) if isinstance(meta.get("engine_args"), dict) else {}
    quant = str(args.get("quantization") or "")
    if quant not in ("", "fp8"):
        raise InputError(f"unsupported quantization {quant!r}", field="engine_args.quantization",
                         expected="none or fp8")
    kv = str(args.get("kv_cache_dtype") or "auto")
    return ("fp8" if quant == "fp8" else "bf16"), ("fp8" if kv.startswith("fp8") else "bf16")


def variant(meta: dict[str, Any]) -> str:
    """The run's folder name: the model, then what differs from the calibration run's engine (bf16
    weights and KV, prefix caching on), e.g. ``llama-3.1-8b-fp8-kvfp8`` or ``llama-3.1-8b-noprefix``."""
    weights, kv = precisions(meta)
    args = meta.get("engine_args", {}) if isinstance(meta.get("engine_args"), dict) else {}
    parts = [str(meta.get("model"))]
    parts += ["fp8"] if weights == "fp8" else []
    parts += ["kvfp8"] if kv == "fp8" else []
    parts += [] if args.get("enable_prefix_caching", True) else ["noprefix"]
    return "-".join(parts)


def _atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    write_atomic(path, df.write_parquet)


def split_run(run: str | Path, dest_root: str | Path) -> list[Path]:
    """Write one validation folder per workload of the run under ``dest_root/<GPU>/vllm-<v>/<variant>/``.

    Returns:
        The folders written.

    Raises:
        InputError: the run lacks its requests or meta.
    """
    root = Path(run)
    for name in ("requests.parquet", "meta.json"):
        if not (root / name).is_file():
            raise InputError("vLLM run incomplete", path=str(root / name), expected=name)
    meta: dict[str, Any] = json.loads((root / "meta.json").read_text())
    req = pl.read_parquet(root / "requests.parquet")
    steps = pl.read_parquet(root / "steps.parquet") if (root / "steps.parquet").is_file() else None
    power = pl.read_parquet(root / "power.parquet") if (root / "power.parquet").is_file() else None
    version = str(meta.get("versions", {}).get("vllm", "unknown"))
    model = str(meta.get("model"))
    resolved: dict[str, Any] = meta.get("resolved", {})
    weights, kv_dtype = precisions(meta)
    runs = [r for r in meta.get("runs", []) if r.get("level", -1) >= 0]
    out_dirs: list[Path] = []
    workloads = sorted({str(r.get("workload")) for r in runs})
    for wl in workloads:
        wruns = [r for r in runs if r.get("workload") == wl]
        dest = Path(dest_root) / gpu_key(meta) / f"vllm-{version}" / variant(meta) / wl
        dest.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        toks: list[tuple[float, int, int, float]] = []
        pw: list[pl.DataFrame] = []
        levels: list[dict[str, Any]] = []
        for r in wruns:
            g = req.filter(pl.col("label") == r["label"]).sort("arrival_s")
            t0 = float(r["t0_perf"])
            for i, row in enumerate(g.iter_rows(named=True)):
                rid = len(rows)
                rows.append(
                    {
                        "load_level": float(r["level"]),
                        "rate_rps": float(r["rate_rps"]),
                        "request_id": rid,
                        "arrival_s": float(row["arrival_s"]),
                        "input_tokens": int(row["input_tokens"]),
                        "output_tokens": int(row["tokens"]),
                        "ttft_s": row["ttft_s"],
                        "tpot_s": row["tpot_s"],
                        "e2e_s": row["e2e_s"],
                        "queued_s": row.get("queued_time_s"),
                        "prefill_s": row.get("prefill_time_s"),
                        "cached_tokens": row.get("cached_tokens"),
                        "order": i,
                    }
                )
                for k, t in enumerate(row["token_times"] or []):
                    toks.append((float(r["level"]), rid, k, float(t)))
            if power is not None:
                w = power.filter((pl.col("t") >= t0) & (pl.col("t") <= float(r["t1_perf"])))
                pw.append(w.with_columns(load_level=pl.lit(float(r["level"])), t_s=pl.col("t") - t0))
            energy = _energy(power, t0, float(r["t1_perf"]))
            levels.append(
                {
                    "level": float(r["level"]),
                    "rate_rps": float(r["rate_rps"]),
                    "seconds": float(r["seconds"]),
                    "submitted": int(r["requests"]),
                    "output_tokens": int(r["output_tokens"]),
                    "energy_j": energy,
                    "t0_perf": t0,
                    "t1_perf": float(r["t1_perf"]),
                }
            )
        _atomic_parquet(pl.DataFrame(rows), dest / "engine_requests.parquet")
        _atomic_parquet(
            pl.DataFrame(toks, schema=["load_level", "request_id", "token_index", "t_s"], orient="row"),
            dest / "engine_tokens.parquet",
        )
        if pw:
            _atomic_parquet(
                pl.concat(pw).select(
                    "load_level",
                    "t_s",
                    "power_w",
                    "power_avg_w",
                    "energy_j",
                    "sm_clock_mhz",
                    "mem_clock_mhz",
                    "gpu_util",
                ),
                dest / "engine_power.parquet",
            )
        if steps is not None:
            lo = min(float(r["t0_perf"]) for r in wruns)
            hi = max(float(r["t1_perf"]) for r in wruns)
            _atomic_parquet(steps.filter((pl.col("t") >= lo) & (pl.col("t") <= hi)), dest / "steps.parquet")
        idle = meta.get("idle_window_perf")
        emeta = {
            "engine": f"vllm {version} (V1 LLMEngine, OpenAI-server usage context, random weights)",
            "engine_name": "vllm",
            "engine_version": version,
            "model": model,
            "catalog_model": CATALOG_MODELS.get(model, model),
            "weight_dtype": weights,
            "kv_dtype": kv_dtype,
            "workload": wl,
            "trace_source": _workload_source(wl),
            "engine_args": meta.get("engine_args", {}),
            "environment": meta.get("environment", {}),
            "resolved": resolved,
            "engine_config": {
                "block_size": int(resolved.get("cache.block_size", 16)),
                "max_batch_tokens": int(resolved.get("scheduler.max_num_batched_tokens", 8192)),
                "num_blocks": int(resolved.get("cache.num_gpu_blocks", 0)),
                "max_requests_per_batch": int(resolved.get("scheduler.max_num_seqs", 256)),
                "enable_prefix_caching": bool(resolved.get("cache.enable_prefix_caching", True)),
            },
            "gpu": {**meta.get("gpu", {}), "catalog_gpu": gpu_key(meta), **meta.get("versions", {})},
            "capacity_rps": meta.get("workloads", {}).get(wl, {}).get("capacity_rps"),
            "levels": levels,
            "idle_power_w": _mean_power(power, idle) if idle else None,
            "date": meta.get("date"),
            "startup_s": meta.get("startup_s"),
            "errors": meta.get("errors", []),
        }
        write_text_atomic(dest / "engine_meta.json", json.dumps(emeta, indent=1, default=str) + "\n")
        out_dirs.append(dest)
    return out_dirs


def _workload_source(name: str) -> str:
    path = Path(__file__).resolve().parent / "data" / "validation" / "workloads" / f"{name}.json"
    if path.is_file():
        return str(json.loads(path.read_text()).get("source", name))
    return name


def _energy(power: pl.DataFrame | None, t0: float, t1: float) -> float | None:
    """Joules between ``t0`` and ``t1`` from NVML's energy counter (None without samples)."""
    if power is None:
        return None
    w = power.filter((pl.col("t") >= t0) & (pl.col("t") <= t1)).sort("t")
    if w.height < 2:
        return None
    e = w["energy_j"].to_numpy()
    if np.isfinite(e).all() and e[-1] > e[0]:
        return float(e[-1] - e[0])
    t = w["t"].to_numpy()
    p = w["power_w"].to_numpy()
    return float(np.trapezoid(p, t))


def _mean_power(power: pl.DataFrame | None, window: list[float]) -> float | None:
    if power is None:
        return None
    e = _energy(power, window[0], window[1])
    return e / (window[1] - window[0]) if e is not None else None

"""``fleetwise bench perf``: the per-node model's error on held-out measurements, and its speed.

From the shipped data only: the measured profile (``planner/perf/data/profiles/<GPU>/``) and the shipped
calibration (``planner/perf/data/calibration/<GPU>.json``). Prints median and p90 absolute percentage
error per operator family and per step kind on the held-out split (see :mod:`planner.perf.calibrate`
for the split), power error per phase, and how many batch compositions per second the vectorised
model evaluates.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.perf import build_replica_perf, comm, multi_check
from planner.perf.calibrate import (
    STEP_MODEL,
    errors_frame,
    evaluate_profile,
    load_profile,
    profile_dir,
    validation_dir,
)
from planner.perf.calibration import calibration_dir, load_calibration, resolve_calibration
from planner.perf.engine_check import engine_errors, engine_model, load_requests
from traces.errors import InputError

TARGETS = {"operator": 5.0, "step": 10.0, "power": 10.0}
"""Median APE targets on held-out data (issue #3)."""


def register(bench_app: typer.Typer) -> None:
    """Add ``fleetwise bench perf``."""
    bench_app.command("perf", help="Per-node model: held-out error per operator, step and power phase, "
                      "and vectorised speed.\n\nExample:\n\n  fleetwise bench perf --json")(bench_perf)


def _target(family: str) -> float:
    if family.startswith("power"):
        return TARGETS["power"]
    if family.startswith("step"):
        return TARGETS["step"]
    return TARGETS["operator"]


def speed(n: int = 1_000_000, seed: int = 0) -> float:
    """Compositions per second of :meth:`RooflinePerf.step_time_s` on ``n`` random compositions
    (Llama-3.1-8B on H100-SXM; the first call compiles, so it is timed separately and excluded)."""
    cat = load_catalog()
    perf = build_replica_perf(cat.model(STEP_MODEL), cat.gpu("H100-SXM"))
    rng = np.random.default_rng(seed)
    pt = rng.integers(0, 4096, n).astype(np.float64)
    ds = rng.integers(0, 256, n).astype(np.float64)
    pairs = pt * (pt + 1) / 2
    kv = ds * rng.integers(64, 8192, n)
    perf.step_time_s(pt[:10], pairs[:10], ds[:10], kv[:10])
    t0 = time.perf_counter()
    perf.step_time_s(pt, pairs, ds, kv)
    return n / (time.perf_counter() - t0)


def bench_perf(
    gpu: Annotated[str, typer.Option(help="GPU whose shipped profile is scored")] = "H100-SXM",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> int:
    """Print the error table and the speed."""
    cat = load_catalog()
    g = cat.gpu(gpu)
    folder = profile_dir() / g.name
    if not folder.is_dir():
        raise InputError(f"no shipped profile for {g.name}", path=str(folder),
                         expected="a folder written by fleetwise profile")
    cal_path = calibration_dir() / f"{g.name}.json"
    cal = load_calibration(cal_path)
    errs = errors_frame(evaluate_profile(load_profile(folder), g, cat.model(STEP_MODEL), cal))
    held = errs.filter(pl.col("split") == "heldout", pl.col("n") > 0)
    held = held.with_columns(pl.col("family").map_elements(_target, return_dtype=pl.Float64).alias("target"))
    held = held.with_columns((pl.col("median_ape") <= pl.col("target")).alias("meets"))
    cps = speed()
    engine_rows: list[dict[str, object]] = []
    vfolder = validation_dir() / g.name
    if (vfolder / "engine_requests.parquet").is_file() and cal.engine:
        reqs, meta = load_requests(vfolder)
        served = engine_model(cat.model(STEP_MODEL), meta)
        perf = build_replica_perf(served, g, calibration=cal, min_kv_tokens=0)
        engine_rows = [{"load_level": r[0], "split": r[1], "n": r[2], "tpot_median_ape": r[3],
                        "tpot_p90_ape": r[4]} for r in engine_errors(reqs, perf)]
    if as_json:
        multi = {k: {name: df.to_dicts() for name, df in v.items()} for k, v in multi_frames().items()}
        typer.echo(json.dumps({"gpu": g.name, "calibration": cal.source, "heldout": held.to_dicts(),
                               "engine_tpot": engine_rows, "compositions_per_s": cps, "multi_gpu": multi},
                              indent=2))
        return 0
    con = Console()
    t = Table(title=f"Per-node model vs measurements on {g.name}, held-out shapes (APE %)")
    for c in ("family", "n", "median", "p90", "target", ""):
        t.add_column(c, justify="left" if c == "family" else "right")
    for r in held.iter_rows(named=True):
        t.add_row(r["family"], str(r["n"]), f"{r['median_ape']:.2f}", f"{r['p90_ape']:.2f}",
                  f"<= {r['target']:.0f}", "ok" if r["meets"] else "[red]miss[/]")
    con.print(t)
    if engine_rows:
        et = Table(title=f"Engine TPOT ({cal.engine}): fitted engine term on 'fit' levels, APE %")
        for c in ("load level", "split", "n", "median", "p90"):
            et.add_column(c, justify="right")
        for r in engine_rows:
            et.add_row(f"{r['load_level']:g}", str(r["split"]), str(r["n"]), f"{r['tpot_median_ape']:.1f}",
                       f"{r['tpot_p90_ape']:.1f}")
        con.print(et)
    for line in multi_tables(con):
        con.print(line)
    con.print(f"vectorised step_time_s: {cps:,.0f} compositions/s (1M random compositions)")
    con.print(f"[dim]calibration: {cal.source}[/]")
    return 0


def multi_frames() -> dict[str, dict[str, pl.DataFrame]]:
    """Per GPU with a multi-GPU profile: collective, TP-step and EP tables (empty when none shipped)."""
    cat = load_catalog()
    out: dict[str, dict[str, pl.DataFrame]] = {}
    for folder in sorted(profile_dir().iterdir()):
        coll = comm.load_collectives(folder)
        if coll is None:
            continue
        g = cat.gpu(folder.name)
        cal = resolve_calibration(g)
        frames = {"collectives": multi_check.comm_table(coll, cal, g.link_gbps)}
        vfolder = validation_dir() / g.name
        steps = multi_check.load_tp_steps(vfolder)
        if steps is not None:
            pred = multi_check.tp_step_predictions(steps, cat, g, cal)
            frames["tp_steps"] = multi_check.tp_step_summary(pred)
        if (vfolder / "ep_moe.parquet").is_file():
            frames["ep_moe"] = multi_check.ep_table(pl.read_parquet(vfolder / "ep_moe.parquet"), cat, cal, g)
        out[g.name] = frames
    return out


def multi_tables(con: Console) -> list[Table]:
    """Rich tables of :func:`multi_frames` (communication error, TP steps, EP all-to-all)."""
    tables: list[Table] = []
    for gname, frames in multi_frames().items():
        t = Table(title=f"Collectives on {gname} (NCCL in CUDA graphs), APE % over 4 KiB-1 GiB")
        for c in ("op", "GPUs", "split", "sizes", "median", "max", "target", ""):
            t.add_column(c, justify="left" if c in ("op", "split") else "right")
        for r in frames["collectives"].iter_rows(named=True):
            ok = r["median_err_pct"] <= multi_check.COMM_TARGET_PCT
            t.add_row(r["op"], str(r["gpus"]), r["split"], str(r["sizes"]), f"{r['median_err_pct']:.1f}",
                      f"{r['max_err_pct']:.1f}", f"<= {multi_check.COMM_TARGET_PCT:.0f}",
                      "ok" if ok else "[red]miss[/]")
        tables.append(t)
        if "tp_steps" in frames:
            s = Table(title=f"Tensor-parallel whole steps on {gname} (graph-replayed; none used in fits)")
            for c in ("model", "TP", "steps", "median APE", "max APE", "bias %", ""):
                s.add_column(c, justify="left" if c == "model" else "right")
            for r in frames["tp_steps"].iter_rows(named=True):
                ok = r["median_ape"] <= multi_check.TP_TARGET_PCT
                s.add_row(r["model"], str(r["tp"]), str(r["n"]), f"{r['median_ape']:.1f}",
                          f"{r['max_ape']:.1f}", f"{r['bias_pct']:+.1f}", "ok" if ok else "[red]miss[/]")
            tables.append(s)
        if "ep_moe" in frames:
            e = Table(title=f"EP MoE layer on {gname} (DeepSeek-V3 shape): dispatch + combine vs two "
                      "all-to-alls")
            for c in ("EP", "tokens/GPU", "measured ms", "model ms", "explained %", "layer ms"):
                e.add_column(c, justify="right")
            for r in frames["ep_moe"].iter_rows(named=True):
                e.add_row(str(r["ep"]), str(r["tokens_per_gpu"]), f"{r['measured_a2a_ms']:.3f}",
                          f"{r['model_a2a_ms']:.3f}", f"{r['explained_pct']:.0f}", f"{r['layer_ms']:.2f}")
            tables.append(e)
    return tables

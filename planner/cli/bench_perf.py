"""``fleetwise bench perf``: prints what :mod:`planner.bench.perf_accuracy` measures (the per-node model's
error on held-out measurements, and its speed)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(bench_app: typer.Typer) -> None:
    """Add ``fleetwise bench perf``."""
    bench_app.command("perf", help="Per-node model: held-out error per operator, step and power phase, "
                      "and vectorised speed.\n\nExample:\n\n  fleetwise bench perf --json")(bench_perf)


def bench_perf(
    gpu: Annotated[str, typer.Option(help="GPU whose shipped profile is scored")] = "H100-SXM",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> int:
    """Print the error table and the speed."""
    from planner.bench.perf_accuracy import measure_accuracy, multi_frames, speed

    acc = measure_accuracy(gpu)
    held, engine_rows, cal = acc.heldout, acc.engine_tpot, acc.calibration
    g_name = acc.gpu
    cps = speed()
    if as_json:
        multi = {k: {name: df.to_dicts() for name, df in v.items()} for k, v in multi_frames().items()}
        typer.echo(json.dumps({"gpu": g_name, "calibration": cal.source, "heldout": held.to_dicts(),
                               "engine_tpot": engine_rows, "compositions_per_s": cps, "multi_gpu": multi},
                              indent=2))
        return 0
    con = Console()
    t = Table(title=f"Per-node model vs measurements on {g_name}, held-out shapes (APE %)")
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


def multi_tables(con: Console) -> list[Table]:
    """Rich tables of :func:`~planner.bench.perf_accuracy.multi_frames` (communication error, TP steps,
    EP all-to-all)."""
    from planner.bench.perf_accuracy import multi_frames
    from planner.perf import multi_check

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

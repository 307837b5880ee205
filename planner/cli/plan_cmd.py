"""``fleetwise plan``: which GPU, which layout, how many replicas, at what cost, for a trace and SLOs."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.plan import SLO, PlanProblem, PlanResult, demand_from_trace
from traces.errors import InputError
from traces.schema import RequestTrace

EXAMPLE = """
Example:

  fleetwise plan                                   # bundled default trace, Llama-3.1-8B, every GPU type
  fleetwise plan --trace conv.csv --model Llama-3.1-70B --gpus H100-SXM,H200-SXM --slo-tpot-ms 50 --json
"""


def load_trace_arg(trace: str, fmt: str | None) -> RequestTrace:
    """``default`` means the bundled synthetic trace; anything else is a path for the trace loaders."""
    if trace == "default":
        from traces.default import default_trace

        return default_trace()
    from traces.load import load_trace

    return load_trace(trace, format=fmt)


def _render(result: PlanResult, model: str, console: Console) -> None:
    d = result.demand
    console.print(
        f"[bold]trace[/]: {d.requests:,} requests over {d.duration_s / 60:.1f} min, "
        f"mean {d.mean_rate_rps:.2f} req/s, peak {d.peak_rate_rps:.2f} req/s (1-min windows), "
        f"mean input {d.mean_input_tokens:.0f} / output {d.mean_output_tokens:.0f} tokens"
    )
    table = Table(title=f"candidates for {model}")
    for col in (
        "GPU",
        "TP",
        "KV tokens",
        "decode batch",
        "req/s per replica",
        "replicas",
        "GPUs",
        "$/hour",
        "note",
    ):
        table.add_column(col, justify="right" if col not in ("GPU", "note") else "left")
    for c in sorted(result.candidates, key=lambda c: (not c.feasible, c.cost_per_hour)):
        mark = "[bold green]best[/]" if c is result.best else ("" if c.feasible else c.reason)
        table.add_row(
            c.gpu,
            str(c.tp),
            f"{c.kv_capacity_tokens:,}" if c.kv_capacity_tokens else "-",
            str(c.decode_batch or "-"),
            f"{c.replica_rps:.2f}" if c.feasible else "-",
            str(c.replicas or "-"),
            str(c.gpus_total or "-"),
            f"{c.cost_per_hour:.2f}" if c.feasible else "-",
            mark,
        )
    console.print(table)
    if result.best is None:
        console.print("[bold red]no candidate meets the SLO[/]")
    else:
        b = result.best
        console.print(
            f"[bold]plan[/]: {b.replicas} x {model} on {b.gpu} (TP{b.tp}) = {b.gpus_total} GPUs, "
            f"${b.cost_per_hour:.2f}/hour, ${result.total_cost:.2f} for the trace's {result.hours:.2f} h"
        )


def register(app: typer.Typer) -> None:
    """Add ``fleetwise plan``."""

    @app.command("plan", help="Size a fleet for a trace, a model and SLOs." + EXAMPLE)
    def plan(
        trace: Annotated[
            str, typer.Option(help="trace file, or 'default' for the bundled synthetic one")
        ] = "default",
        fmt: Annotated[str | None, typer.Option("--format", help="trace format (auto-detected)")] = None,
        model: Annotated[str, typer.Option(help="catalog model name")] = "Llama-3.1-8B",
        gpus: Annotated[str, typer.Option(help="comma-separated catalog GPU names, or 'all'")] = "all",
        slo_ttft_ms: Annotated[float, typer.Option(help="TTFT p99 target, ms")] = 2000.0,
        slo_tpot_ms: Annotated[float, typer.Option(help="TPOT p99 target, ms")] = 100.0,
        catalog: Annotated[list[Path] | None, typer.Option(help="extra catalog YAML (repeatable)")] = None,
        ray_address: Annotated[
            str | None, typer.Option(help="Ray cluster address; default: local Ray")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        cat = load_catalog(catalog or [])
        spec = cat.model(model)
        names = list(cat.gpus) if gpus == "all" else [g.strip() for g in gpus.split(",") if g.strip()]
        if not names:
            raise InputError("no GPU names given", field="--gpus", expected="'all' or a comma-separated list")
        gpu_specs = tuple(cat.gpu(n) for n in names)
        if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
            raise InputError("SLO targets must be positive", field="--slo-ttft-ms/--slo-tpot-ms")
        tr = load_trace_arg(trace, fmt)
        problem = PlanProblem(
            model=spec,
            gpus=gpu_specs,
            demand=demand_from_trace(tr),
            slo=SLO(ttft_p99_s=slo_ttft_ms / 1000, tpot_p99_s=slo_tpot_ms / 1000),
        )
        from planner.plan.run import solve_on_ray

        # A pipe gets a wide table rather than rich's 80-column default.
        console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 120)
        with console.status("evaluating candidates on Ray..."):
            result = solve_on_ray(problem, address=ray_address)
        if as_json:
            payload = {
                "model": spec.name,
                "trace": tr.meta.source,
                "demand": asdict(result.demand),
                "best": None if result.best is None else asdict(result.best),
                "total_cost": result.total_cost,
                "hours": result.hours,
                "candidates": [asdict(c) for c in result.candidates],
            }
            typer.echo(json.dumps(payload, indent=2))
        else:
            _render(result, spec.name, console)
        if result.best is None:
            raise typer.Exit(1)

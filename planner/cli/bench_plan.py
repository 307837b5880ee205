"""``fleetwise bench plan``: the planner on the default trace, Azure conversation and code, Mooncake, a
ServeGen folder with DeepSeek-V3 in fp8 and the peer problem, one row per case.

Example::

    fleetwise bench plan
    fleetwise bench plan --cases default,peer-tpot20 --json --out bench-plan.json

See :mod:`planner.bench.plan_cases` for the cases and the peer figures' sources.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console

from planner.bench.plan_cases import CASES, CaseResult, run_case
from planner.cli.console import Col, fitted_table, table_console
from traces.atomic import write_text_atomic
from traces.errors import InputError
from traces.json_safe import json_safe


def register(bench_app: typer.Typer) -> None:
    """Add ``plan`` to ``fleetwise bench``."""

    @bench_app.command("plan")
    def bench_plan(
        cases: Annotated[str, typer.Option(
            help="comma-separated case names, or 'all': " + ", ".join(c.name for c in CASES))] = "all",
        data_root: Annotated[Path | None, typer.Option(
            help="folder of the shared traces (default: $FLEETWISE_SHARED_TRACES, else shared/data/traces "
                 "beside the repository)")] = None,
        time_limit_s: Annotated[float, typer.Option(help="CP-SAT time limit per solve, s")] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
        out: Annotated[Path | None, typer.Option(
            help="write the rows as JSON here after every case (a long run keeps what it finished)")] = None,
    ) -> None:
        """Plan each case as `fleetwise plan` would and print GPUs, tokens/s per GPU, rounds and the
        replayed attainment of the presented plan, with a peer's figure where one is published."""
        from planner.autoscale.workloads import shared_traces_root

        known = {c.name: c for c in CASES}
        names = list(known) if cases == "all" else [n.strip() for n in cases.split(",") if n.strip()]
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise InputError(f"unknown case(s) {', '.join(bad) or '(none given)'}", field="--cases",
                             expected="'all' or names from " + ", ".join(known))
        if not time_limit_s > 0:
            raise InputError(f"time limit {time_limit_s}", field="--time-limit-s", expected="seconds > 0")
        root = data_root if data_root is not None else shared_traces_root()
        console = Console(stderr=True)
        rows: list[CaseResult] = []
        for name in names:
            with console.status(f"planning {name}..."):
                rows.append(run_case(known[name], root, time_limit_s=time_limit_s))
            if out is not None:
                write_text_atomic(out, json.dumps([_row_json(r) for r in rows], indent=2) + "\n")
        if as_json:
            typer.echo(json.dumps([_row_json(r) for r in rows], indent=2))
        else:
            _print(rows)


def _row_json(r: CaseResult) -> dict[str, object]:
    doc = cast(dict[str, object], json_safe(dataclasses.asdict(r)))
    doc["vs_peer"] = r.vs_peer
    return doc


COLS = (Col("case", left=True, keep=9), Col("model", left=True, keep=3), Col("SLO at", keep=5),
        Col("requests", keep=2), Col("GPUs at peak", keep=8), Col("out tok/s/GPU", keep=8),
        Col("rounds", keep=6), Col("presented", left=True, keep=4), Col("verified", keep=9),
        Col("replayed", keep=7), Col("$", keep=3), Col("wall s", keep=1), Col("peer tok/s/GPU", keep=5),
        Col("ours/peer", keep=6))


def _cells(r: CaseResult) -> tuple[str, ...]:
    if r.skipped and not r.requests:
        return (r.case, r.model, r.statistic, "", "", "", "", "", f"skipped: {r.skipped}", *[""] * 5)
    return (r.case, r.model, r.statistic, f"{r.requests:,}", str(r.peak_gpus),
            "" if r.tokens_per_gpu_s is None else f"{r.tokens_per_gpu_s:,.0f}", str(r.rounds), r.presented,
            "yes" if r.verified else ("no plan" if r.skipped else "NO"),
            "" if math.isnan(r.replayed_attainment) else f"{r.replayed_attainment:.2%}",
            "" if r.usd is None else f"{r.usd:,.2f}", f"{r.wall_s:.0f}",
            "" if r.peer_tokens_per_gpu_s is None else f"{r.peer_tokens_per_gpu_s:,.0f}",
            "" if r.vs_peer is None else f"{r.vs_peer:.2f}")


def _print(rows: list[CaseResult]) -> None:
    console = table_console()
    title = "fleetwise plan on known problems (seed 0; 'verified': the presented plan passed its own replay)"
    table = fitted_table(console, title, COLS, [_cells(r) for r in rows])
    sources = sorted({r.peer_source for r in rows if r.peer_source})
    console.print(table)
    if sources:
        console.print("peer figures: " + "; ".join(sources))

"""``fleetwise traces from-prometheus``: a request trace rebuilt from a vLLM fleet's Prometheus history."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from planner.live.time_range import parse_range
from traces.errors import InputError

EXAMPLE = """
Examples:

  fleetwise traces from-prometheus --url http://prometheus:9090 --range now-6h,now --out fleet.parquet
  fleetwise traces from-prometheus --url http://prometheus:9090 --range 2026-12-01T08:00Z,2026-12-01T20:00Z
      --selector '{model_name="llama",namespace="prod"}' --step 30 --out day.parquet --json
"""

def register(traces_app: typer.Typer) -> None:
    """Add ``fleetwise traces from-prometheus``."""

    @traces_app.command(
        "from-prometheus",
        help="Rebuild a request trace from a vLLM fleet's Prometheus metrics over a time range (rate per "
        "step, length histograms; marked reconstructed)." + EXAMPLE,
    )
    def from_prometheus_cmd(
        url: Annotated[str, typer.Option("--url", help="Prometheus server, e.g. http://prometheus:9090")],
        range_: Annotated[
            str, typer.Option("--range", help="START,END: Unix seconds, ISO 8601 with a zone, or now-6h,now")
        ],
        out: Annotated[Path, typer.Option("--out", help="canonical Parquet trace to write")],
        step: Annotated[
            float,
            typer.Option(
                "--step",
                help="grid step, s: arrivals are placed per step (the scrape interval or more)",
            ),
        ] = 15.0,
        selector: Annotated[
            str,
            typer.Option(
                "--selector",
                help="PromQL label matchers of the fleet's vLLM series, e.g. "
                '\'{model_name="llama",namespace="prod"}\'',
            ),
        ] = "",
        seed: Annotated[int, typer.Option(help="seed of the placement and length draws")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        from planner.live.reconstruct import trace_from_prometheus
        from planner.sim.writer import refuse_existing_file
        from traces.stats import describe
        from traces.write import write_parquet

        refuse_existing_file(out)
        start, end = parse_range(range_, time.time())
        if not (math.isfinite(step) and step > 0):
            raise InputError(f"step {step:g}", field="--step", expected="a positive number of seconds")
        trace, report, history = trace_from_prometheus(
            url, start, end, step_s=step, selector=selector, seed=seed
        )
        write_parquet(trace, out)
        stats = describe(trace, window_s=max(60.0, step))
        doc = {
            "out_path": str(out),
            "format": trace.meta.format,
            "extra": dict(trace.meta.extra),
            "requests": report.requests,
            "finished_in_range": report.finished,
            "mean_prompt_tokens": report.mean_prompt_tokens,
            "mean_output_tokens": report.mean_output_tokens,
            "peak_replicas": report.peak_replicas,
            "prefix_hit_ratio": report.prefix_hit_ratio,
            "step_s": report.step_s,
            "stats": stats.to_dict(),
        }
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
            return
        from planner.cli.traces_cmd import stats_table

        console = Console()
        console.print(stats_table(trace.meta, stats))
        hit = "not reported" if report.prefix_hit_ratio is None else f"{report.prefix_hit_ratio:.1%}"
        server = ", ".join(
            f"{k.removeprefix('server.')}={v}" for k, v in trace.meta.extra if k.startswith("server.")
        )
        console.print(
            f"wrote {out}: {report.requests:,} requests rebuilt from {history.source} "
            f"({report.finished:,} finished in the range; peak {report.peak_replicas} replicas; "
            f"prefix-cache hits {hit}).\n"
            f"Reconstructed, not recorded: arrival rate per {report.step_s:g} s step and the length "
            f"histograms are the fleet's; arrivals within a step and the prompt/output pairing are drawn.\n"
            f"Server: {server or 'no configuration series'}",
            highlight=False,
        )

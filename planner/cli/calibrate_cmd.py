"""``fleetwise calibrate``: fit the per-node model to a GPU's measured profile (``fleetwise profile``
writes one; the shipped GPUs have theirs) and write its calibration (:func:`planner.perf.calibrate.
calibrate_gpu`), printing the fit's errors on shapes it never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console

from planner.cli.verbs import summary


def register(app: typer.Typer) -> None:
    """Add ``fleetwise calibrate``."""

    @app.command("calibrate", help=summary("calibrate") + "\n\nExample:\n\n"
                 "  fleetwise calibrate --gpu H100-SXM --profiles my-profiles --out my-calibration\n"
                 "  fleetwise calibrate --prometheus-url http://prometheus:9090 --range now-6h,now-1h "
                 "--backtest-range now-1h,now --model Qwen3-32B --gpu H100-SXM --out cluster.json")
    def calibrate_cmd(
        gpu: Annotated[str, typer.Option(help="catalog GPU key (profile folder name)")] = "H100-SXM",
        profiles: Annotated[Path | None, typer.Option(
            help="profiles root, one folder per GPU (default: the shipped data)")] = None,
        out: Annotated[Path | None, typer.Option(
            help="calibration folder (default: the shipped data)")] = None,
        validation: Annotated[Path | None, typer.Option(
            help="engine validation root (default: the shipped data)")] = None,
        prometheus_url: Annotated[str | None, typer.Option(
            help="fit per-cluster corrections on a vLLM fleet's Prometheus metrics instead (with --range, "
                 "--model; --gpu names the fleet's GPU)")] = None,
        range_: Annotated[str | None, typer.Option(
            "--range", help="fit window START,END (Unix s, ISO 8601 with a zone, now-6h)")] = None,
        backtest_range: Annotated[str | None, typer.Option(
            help="a later window to check the corrections on, START,END")] = None,
        model: Annotated[str, typer.Option(help="catalog model the fleet serves")] = "Llama-3.1-8B",
        tp: Annotated[int, typer.Option(min=1, help="tensor parallelism per replica")] = 1,
        replicas: Annotated[int | None, typer.Option(
            min=1, help="replicas serving (default: the most reporting at once)")] = None,
        precision: Annotated[str, typer.Option(help="weights+KV precision, e.g. fp8 or fp8+kv8")] = "native",
        selector: Annotated[str, typer.Option(help="PromQL label matchers of the fleet's series")] = "",
        step: Annotated[float, typer.Option(help="grid step, s (the scrape interval or more)")] = 15.0,
        gpu_memory_utilization: Annotated[float | None, typer.Option(
            min=0.05, max=1.0, help="the fleet's vLLM --gpu-memory-utilization (default: what its "
                                    "cache_config_info says, else 0.9)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    ) -> None:
        if prometheus_url is not None:
            from planner.cli import calibrate_telemetry
            from traces.errors import InputError

            if range_ is None:
                raise InputError("--prometheus-url needs the fit window", field="--range",
                                 expected="START,END")
            calibrate_telemetry.run(url=prometheus_url, fit_range=range_, backtest_range=backtest_range,
                                    model=model, gpu=gpu, tp=tp, replicas=replicas, precision=precision,
                                    selector=selector, step_s=step, mem_fraction=gpu_memory_utilization,
                                    out=out, as_json=as_json)
            return
        from planner.perf.calibrate import calibrate_gpu

        target, errors, engine_rows = calibrate_gpu(gpu, profiles=profiles, out=out, validation=validation)
        console = Console()
        with pl.Config(tbl_rows=100):
            console.print(str(errors), highlight=False)
        if engine_rows:
            console.print("engine TPOT (load level, split, n, median APE %, p90 APE %):", highlight=False)
            for row in engine_rows:
                console.print(f"  {row[0]:g} {row[1]} n={row[2]} median={row[3]:.1f} p90={row[4]:.1f}",
                              highlight=False)
        console.print(f"wrote {target}", highlight=False)

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
                 "  fleetwise calibrate --gpu H100-SXM --profiles my-profiles --out my-calibration")
    def calibrate_cmd(
        gpu: Annotated[str, typer.Option(help="catalog GPU key (profile folder name)")] = "H100-SXM",
        profiles: Annotated[Path | None, typer.Option(
            help="profiles root, one folder per GPU (default: the shipped data)")] = None,
        out: Annotated[Path | None, typer.Option(
            help="calibration folder (default: the shipped data)")] = None,
        validation: Annotated[Path | None, typer.Option(
            help="engine validation root (default: the shipped data)")] = None,
    ) -> None:
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

"""``fleetwise bench traces``: stream-convert a big Azure-2024-format file vs an eager load, side by side.

Example::

    fleetwise bench traces --rows 20000000
    fleetwise bench traces --rows 200000 --json

See :mod:`planner.bench.large_trace` for what is measured and how.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.bench.defaults import DEFAULT_ROWS

if TYPE_CHECKING:  # the benchmark (numpy, polars) is imported when it runs, not for --help
    from planner.bench.large_trace import BenchResult


def register(bench_app: typer.Typer) -> None:
    """Add ``traces`` to ``fleetwise bench``."""

    @bench_app.command("traces")
    def bench_traces(
        rows: Annotated[int, typer.Option("--rows", min=1, help="Rows of the generated Azure 2024 CSV.")] = (
            DEFAULT_ROWS
        ),
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the result as JSON (for machines).")
        ] = False,
        workdir: Annotated[
            Path | None, typer.Option("--workdir", help="Folder for the files (default: a temporary one).")
        ] = None,
        keep: Annotated[
            bool, typer.Option("--keep", help="Keep the CSV and Parquet files in --workdir.")
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generated file.")] = 0,
    ) -> None:
        """Peak memory and rows/s of streaming conversion vs eager pl.read_csv, on one generated file.

        Example: fleetwise bench traces --rows 20000000
        """
        from planner.bench.large_trace import run_benchmark

        console = Console(stderr=True)
        with console.status("starting") as status:
            result = run_benchmark(rows, workdir=workdir, seed=seed, keep=keep, on_phase=status.update)
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            Console().print(_table(result))


def _table(r: BenchResult) -> Table:
    table = Table(title=f"Azure 2024 format, {r.rows:,} rows, {r.csv_mb:,.0f} MiB CSV -> Parquet")
    for name in ("path", "seconds", "rows/s", "peak RSS MiB", "RSS after imports MiB"):
        table.add_column(name, justify="right" if name != "path" else "left")
    for p in (r.streaming, r.eager):
        table.add_row(
            p.name,
            f"{p.seconds:.2f}",
            f"{p.rows_per_s:,.0f}",
            f"{p.peak_rss_mb:,.0f}",
            f"{p.baseline_rss_mb:,.0f}",
        )
    table.caption = (
        f"eager/streaming peak RSS = {r.rss_ratio:.2f}x; streaming/eager speed = {r.speed_ratio:.2f}x; "
        f"generation {r.generate_seconds:.1f} s"
    )
    return table

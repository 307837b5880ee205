"""``fleetwise bench``: benchmarks that print ratios measured side by side in one run.

Each area adds its benchmark as a command of :data:`bench_app` from its own module, listed in
:data:`BENCH_MODULES` (explicit, no import-time self-registration elsewhere).
"""

from __future__ import annotations

import importlib

import typer

from planner.cli.verbs import summary

BENCH_MODULES: tuple[str, ...] = (
    "planner.cli.bench_traces",
    "planner.cli.bench_perf",
    "planner.cli.bench_replay",
    "planner.cli.bench_plan",
    "planner.cli.bench_startup",
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise bench <area>`` commands."""
    bench_app = typer.Typer(help=summary("bench"), no_args_is_help=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bench_app)
    app.add_typer(bench_app, name="bench")

"""``fleetwise bench startup``: whole-process wall time of each verb's ``--help`` and of a short replay,
as run and with every verb imported first, side by side (:mod:`planner.bench.startup`).

Example::

    fleetwise bench startup
    fleetwise bench startup --repeats 5 --json
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def default_commands() -> list[tuple[str, ...]]:
    """``--help`` alone, every verb's ``--help``, and a replay of about 100 requests."""
    from planner.bench.startup import REPLAY_100
    from planner.cli.verbs import VERBS

    return [("--help",), *((verb, "--help") for verb in VERBS), REPLAY_100]


def register(bench_app: typer.Typer) -> None:
    """Add ``startup`` to ``fleetwise bench``."""

    @bench_app.command("startup")
    def bench_startup(
        repeats: Annotated[int, typer.Option("--repeats", min=1, help="Runs of each command, each way.")] = 3,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Seconds to each verb's first output (--help) and to a 100-request replay, whole process.

        Example: fleetwise bench startup --repeats 5
        """
        from planner.bench.startup import measure

        with Console(stderr=True).status("starting processes..."):
            rows = measure(default_commands(), repeats=repeats)
        if as_json:
            typer.echo(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2))
            return
        table = Table(title=f"whole-process wall time, median of {repeats} (this machine, one run)")
        for name in ("command", "seconds", "every verb imported", "x faster", "exit"):
            table.add_column(name, justify="left" if name == "command" else "right")
        for r in rows:
            table.add_row(r.command, f"{r.seconds:.2f}", f"{r.eager_seconds:.2f}", f"{r.ratio:.1f}",
                          str(r.returncode))
        Console().print(table)

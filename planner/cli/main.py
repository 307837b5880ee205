"""Entry point of the ``fleetwise`` console script.

Each verb lives in its own module of :mod:`planner.cli` with a ``register(app)`` function; the explicit
tuple :data:`VERB_MODULES` wires them up (no import-time self-registration). Bad input of any kind
(:class:`~traces.errors.InputError`) becomes one clear line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer
from rich.console import Console

from traces.errors import InputError

VERB_MODULES: tuple[str, ...] = (
    "planner.cli.plan_cmd",
    "planner.cli.traces_cmd",
    "planner.cli.catalog_cmd",
    "planner.cli.perf_cmd",
    "planner.cli.profile_cmd",
    "planner.cli.replay_cmd",
    "planner.cli.experts_cmd",
    "planner.cli.power_cmd",
    "planner.cli.dashboard_cmd",
    "planner.cli.report_cmd",
    "planner.cli.autoscale_cmd",
    "planner.cli.bench_cmd",
    "planner.cli.serve_metrics_cmd",
    "planner.cli.live_autoscale_cmd",
)


def build_app() -> typer.Typer:
    """A fresh Typer app with every verb registered (tests build their own)."""
    app = typer.Typer(
        name="fleetwise",
        help="Trace-driven capacity planner and autoscaler for LLM inference clusters.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for name in VERB_MODULES:
        importlib.import_module(name).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failed check, 2 bad input or usage."""
    app = build_app()
    try:
        result = app(args=argv, standalone_mode=False)
    except InputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

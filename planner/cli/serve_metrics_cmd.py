"""``fleetwise serve-metrics``: the latest plan and replay results on ``/metrics`` for Prometheus.

The exporter (:mod:`planner.live.exporter`) reads a results folder (``plan.json`` from
``fleetwise plan --json > DIR/plan.json``, ``summary.json`` from ``fleetwise replay --out DIR``), reloads
it when a file changes, and serves it on its own registry (no process metrics, no global state).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from planner.cli.verbs import summary
from traces.errors import InputError

EXAMPLE = (
    "\n\nExample:\n\n"
    "  fleetwise replay --trace default --replicas 4 --out runs/r1\n\n"
    "  fleetwise serve-metrics --results runs/r1 --port 9464 --host 0.0.0.0"
)


def wait_for_signal(stop: threading.Event) -> None:
    """Block until Ctrl-C or SIGTERM (Kubernetes' stop) sets ``stop``."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        stop.set()


def serve_metrics_cmd(
    results: Annotated[Path, typer.Option(help="folder with plan.json and/or a replay's summary.json")],
    port: Annotated[int, typer.Option(help="TCP port of /metrics")] = 9464,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 in a container)")] = "127.0.0.1",
    print_once: Annotated[bool, typer.Option(
        "--print", help="print the exposition once to stdout and exit (no server)")] = False,
    plan_start: Annotated[str | None, typer.Option(
        help="when the plan's first window starts, ISO 8601 (e.g. 2026-12-07T00:00:00Z; no zone: UTC); its "
             "windows repeat over its span from there (default: when plan.json was written)")] = None,
) -> int:
    """Serve (or print) the results' metrics."""
    from prometheus_client import generate_latest

    from planner.live.exporter import ResultsSource, build_registry, serve

    if not 0 <= port <= 65535:
        raise InputError(f"port {port} out of range", field="--port", expected="0..65535")
    source = ResultsSource(results, clock=time.time, plan_start_s=parse_instant(plan_start))
    registry = build_registry(source)
    if print_once:
        typer.echo(generate_latest(registry).decode(), nl=False)
        return 0
    server, _ = serve(registry, port=port, host=host)
    Console(stderr=True).print(f"serving {results} on http://{host}:{server.server_port}/metrics "
                               "(reloads on change; Ctrl-C stops)", highlight=False)
    stop = threading.Event()
    wait_for_signal(stop)
    server.shutdown()
    return 0


def parse_instant(text: str | None) -> float | None:
    """Unix seconds of ``--plan-start`` (:func:`planner.live.time_range.parse_instant`: ISO 8601, UTC when it
    names no zone, Unix seconds or now-1h).

    Raises:
        InputError: text that is none of those.

    >>> parse_instant("2026-12-07T00:00:00Z"), parse_instant("2026-12-07T01:00:00+01:00"), parse_instant(None)
    (1796601600.0, 1796601600.0, None)
    """
    if text is None:
        return None
    import time

    from planner.live.time_range import parse_instant as instant

    return instant(text, time.time(), field="--plan-start")


def register(app: typer.Typer) -> None:
    """Add ``fleetwise serve-metrics``."""
    app.command("serve-metrics", help=summary("serve-metrics") + EXAMPLE)(serve_metrics_cmd)

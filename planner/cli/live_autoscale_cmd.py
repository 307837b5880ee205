"""``fleetwise autoscale``: the live autoscaler against Prometheus, exporting its decisions on ``/metrics``.

Flags are validated here; the work is :class:`planner.live.controller.Controller` (the simulator's policies
on PromQL readings, behind input guards, bounds and ramp limits). With ``--once`` it ticks once and prints
the decisions as JSON (exit 1 when any pool's input was bad); otherwise it serves ``/metrics`` and ticks
every ``--interval-s`` until stopped. ``fleetwise autoscale-compare`` is the offline comparison.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from planner.cli.serve_metrics_cmd import wait_for_signal
from planner.cli.verbs import summary
from traces.errors import InputError

if TYPE_CHECKING:  # the controller (policies, pydantic config) is imported when one is run, not for --help
    from planner.live.exporter import Snapshot

EXAMPLE = (
    "\n\nExample:\n\n"
    "  fleetwise autoscale --prometheus-url http://prometheus:9090 --config pools.yaml --port 9464\n\n"
    "  fleetwise autoscale --prometheus-url http://localhost:9090 --config pools.yaml --once"
)


def live_autoscale_cmd(
    prometheus_url: Annotated[str, typer.Option(help="Prometheus server root URL")],
    config: Annotated[Path, typer.Option(help="pools.yaml: pools, selectors, policies, bounds, ramp limits")],
    port: Annotated[int, typer.Option(help="TCP port of /metrics")] = 9464,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 in a container)")] = "127.0.0.1",
    once: Annotated[bool, typer.Option(
        "--once", help="tick once, print the decisions as JSON, exit")] = False,
    interval_s: Annotated[float | None, typer.Option(
        help="control period, s (default: the config's)")] = None,
    timeout_s: Annotated[float, typer.Option(help="Prometheus query timeout, s")] = 5.0,
    results: Annotated[Path | None, typer.Option(
        help="also serve this plan/replay results folder on the same /metrics")] = None,
) -> int:
    """Run the live autoscaler."""
    from planner.live.config import load_config
    from planner.live.controller import Controller
    from planner.live.exporter import ResultsSource, SnapshotHolder, build_registry, merge, serve

    if not prometheus_url.startswith(("http://", "https://")):
        raise InputError(f"not an HTTP URL: {prometheus_url!r}", field="--prometheus-url",
                         expected="http://host:9090")
    if interval_s is not None and not (interval_s > 0 and math.isfinite(interval_s)):
        raise InputError(f"bad interval {interval_s}", field="--interval-s", expected="seconds > 0")
    if not timeout_s > 0:
        raise InputError(f"bad timeout {timeout_s}", field="--timeout-s", expected="seconds > 0")
    if not 0 <= port <= 65535:
        raise InputError(f"port {port} out of range", field="--port", expected="0..65535")
    cfg = load_config(config)
    holder = SnapshotHolder()
    ctl = Controller.for_prometheus(cfg, prometheus_url, clock=time.time, holder=holder, timeout_s=timeout_s)
    if once:
        decisions = ctl.tick()
        typer.echo(json.dumps([{"pool": d.pool, "desired": d.desired, "policy_desired": d.policy_desired,
                                "held": d.held, "reason": None if d.reason is None else d.reason.value,
                                "ramp_limited": d.ramp_limited} for d in decisions], indent=2))
        return 1 if any(d.held for d in decisions) else 0
    extra = ResultsSource(results, clock=time.time) if results is not None else None

    def current() -> Snapshot:
        return merge(holder.get(), extra()) if extra is not None else holder.get()

    server, _ = serve(build_registry(current), port=port, host=host, health=lambda: ctl.health(time.time()))
    every = interval_s or cfg.interval_s
    Console(stderr=True).print(
        f"autoscaling {len(cfg.pools)} pool(s) from {prometheus_url} every {every:g} s; "
        f"decisions on http://{host}:{server.server_port}/metrics, liveness on /healthz (Ctrl-C stops)",
        highlight=False)
    stop = threading.Event()
    worker = threading.Thread(target=ctl.run, args=(stop,), kwargs={"interval_s": every}, daemon=True,
                              name="fleetwise-autoscale")
    worker.start()
    wait_for_signal(stop)
    worker.join(timeout=every + timeout_s * 20)
    server.shutdown()
    return 0


def register(app: typer.Typer) -> None:
    """Add ``fleetwise autoscale``."""
    app.command("autoscale", help=summary("autoscale") + EXAMPLE)(live_autoscale_cmd)

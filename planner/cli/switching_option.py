"""``--replica-start-s`` and ``--min-dwell-windows`` of the verbs that plan (plan, report): what changing a
plan's replicas between windows costs."""

from __future__ import annotations

from typing import Annotated

import typer

ReplicaStartOpt = Annotated[float | None, typer.Option(
    "--replica-start-s",
    help="seconds of its GPUs' time each replica a window adds costs (its cold start); default: from the "
         "model's weight bytes (Ray Serve LLM from-zero figures); 0: switching is free")]
"""Use as ``replica_start_s: ReplicaStartOpt = None`` (``PlanRequest.start_s``)."""

DwellOpt = Annotated[int, typer.Option(
    "--min-dwell-windows", help="windows a started replica runs at least (1: no minimum)")]
"""Use as ``min_dwell_windows: DwellOpt = 1`` (``PlanRequest.min_dwell_windows``)."""

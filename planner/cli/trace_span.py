"""``--trace``, ``--start-s`` and ``--duration-s``: which trace a verb reads and what part of it (every
verb that takes a trace)."""

from __future__ import annotations

from typing import Annotated

import typer

StartOpt = Annotated[float | None, typer.Option(
    "--start-s", help="start of the span to use, seconds from the trace's first arrival (default: 0)")]
DurationOpt = Annotated[float | None, typer.Option(
    "--duration-s", help="length of the span, seconds (default: to the end; a ServeGen folder: its first "
                         "hour unless given, e.g. 86400 for a day)")]
"""Use as ``start_s: StartOpt = None, duration_s: DurationOpt = None`` and pass both to
:func:`traces.default.load_trace_arg`."""

TraceOpt = Annotated[str, typer.Option(
    "--trace", help="trace file (any supported format) or ServeGen folder, 'default' (the bundled synthetic "
                    "hour) or 'fleet-day' (a generated fleet-scale day)")]
"""Use as ``trace: TraceOpt = "default"`` (names in :data:`traces.default.BUNDLED_NAMES`)."""

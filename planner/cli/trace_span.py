"""``--start-s`` and ``--duration-s``: the part of a trace a verb reads (every verb that takes a trace)."""

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

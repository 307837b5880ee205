"""BurstGPT traces (Wang et al., KDD'25): ``Timestamp,Model,Request tokens,Response tokens,Total tokens,
Log Type``; ``BurstGPT_3`` adds ``Session ID`` and ``Elapsed time``.

Mapping: ``Timestamp`` (seconds from the start) -> ``arrival_s`` (shifted so the first kept request is at
0), ``Request tokens`` -> ``input_tokens``, ``Response tokens`` -> ``output_tokens``, ``Model`` (``ChatGPT``
or ``GPT-4``) -> ``model``, ``Session ID`` -> ``session_id``.

``Log Type`` (``Conversation log`` or ``API log``) becomes ``tenant``, values kept verbatim: it says which
front door a request came through (the chat product or the API), which is what a tenant split means to a
planner (per-tenant rates and lengths), while ``slo_class`` is left for SLOs the user assigns.
``Total tokens`` (redundant) and ``Elapsed time`` (a latency measured on the original service, not
demand) are not kept. Failed requests (``Response tokens == 0``) are dropped and counted by the shared
validation (``TraceMeta.dropped_rows`` plus a repair note).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from traces.readers.base import (
    TIME,
    RawScan,
    TimeSpec,
    diagnose_csv,
    read_csv_header,
    require_columns,
    scan_csv_text,
)
from traces.schema import TraceMeta

COLUMNS: tuple[str, ...] = ("Timestamp", "Model", "Request tokens", "Response tokens", "Log Type")
SESSION_COLUMN = "Session ID"


def scan_burstgpt(path: Path) -> RawScan:
    """Read a BurstGPT CSV lazily; see the module docstring for the column mapping."""
    header = read_csv_header(path)
    require_columns(path, header, COLUMNS, "burstgpt")
    cols = [
        pl.col("_row"),
        pl.col("Timestamp").alias(TIME),
        pl.col("Request tokens").alias("input_tokens"),
        pl.col("Response tokens").alias("output_tokens"),
        pl.col("Model").str.strip_chars().alias("model"),
        pl.col("Log Type").str.strip_chars().alias("tenant"),
    ]
    fields = {
        TIME: "Timestamp",
        "input_tokens": "Request tokens",
        "output_tokens": "Response tokens",
        "model": "Model",
        "tenant": "Log Type",
    }
    variant = "BurstGPT"
    if SESSION_COLUMN in header:
        cols.append(pl.col(SESSION_COLUMN).str.strip_chars().alias("session_id"))
        fields["session_id"] = SESSION_COLUMN
        variant = "BurstGPT_3"
    meta = TraceMeta(
        source=str(path),
        format="burstgpt",
        extra=(("variant", variant), ("tenant_from", "Log Type")),
    )
    spec = TimeSpec("s", expected="seconds from the start of the trace")
    return RawScan(
        lf=scan_csv_text(path, header).select(cols),
        meta=meta,
        time=spec,
        fields=fields,
        path=str(path),
        diagnose=partial(diagnose_csv, path, len(header)),
    )

"""Azure LLM inference traces (Azure/AzurePublicDataset), three yearly variants.

=========  ==========================================================  ===========================
variant    columns                                                    ``TIMESTAMP`` as written
=========  ==========================================================  ===========================
``2023``   ``TIMESTAMP,ContextTokens,GeneratedTokens``                 ``2023-11-16 18:17:03.9799600``
``2024``   same                                                       ``2024-05-10 00:00:00.009930+00:00``
                                                                      (fraction omitted when zero)
``2025``   ``TIMESTAMP,NumImages,ContextTokens,GeneratedTokens``       ``2025-05-10T00:00:00.123Z``
=========  ==========================================================  ===========================

``ContextTokens`` -> ``input_tokens``, ``GeneratedTokens`` -> ``output_tokens``; ``arrival_s`` is seconds
since the first request. The variant and the first timestamp (ISO-8601, UTC offset for the tz-aware
variants) go to ``TraceMeta.extra``. The canonical schema has no image column, so ``NumImages`` is not
kept (``extra["dropped_columns"]`` says so). Timestamps are parsed inside the lazy plan with a chrono
format whose ``%.f`` accepts any number of fractional digits, including none, so mixed precision needs no
special case.
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
    first_data_value,
    read_csv_header,
    require_columns,
    scan_csv_text,
)
from traces.schema import TraceMeta

COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
FORMATS_BY_VARIANT: dict[str, TimeSpec] = {
    "2023": TimeSpec("datetime", "%Y-%m-%d %H:%M:%S%.f", "a timestamp like 2023-11-16 18:17:03.9799600"),
    "2024": TimeSpec(
        "datetime", "%Y-%m-%d %H:%M:%S%.f%:z", "a timestamp like 2024-05-10 00:00:00.009930+00:00"
    ),
    "2025": TimeSpec("datetime", "%Y-%m-%dT%H:%M:%S%.f%:z", "a timestamp like 2025-05-10T00:00:00.123Z"),
}


def variant_of(first_timestamp: str | None, header: list[str]) -> str:
    """Which yearly variant a file is, from its header and first timestamp.

    >>> variant_of("2024-05-10 00:00:00+00:00", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    '2024'
    >>> variant_of("2023-11-16 18:17:03.9799600", ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    '2023'
    """
    value = (first_timestamp or "").strip()
    if "NumImages" in header or "T" in value or value.endswith("Z"):
        return "2025"
    time_part = value.split(" ", 1)[1] if " " in value else ""
    if "+" in time_part or "-" in time_part:
        return "2024"
    return "2023"


def scan_azure(path: Path) -> RawScan:
    """Read an Azure LLM trace (any variant) lazily; see the module docstring for the mapping."""
    header = read_csv_header(path)
    require_columns(path, header, COLUMNS, "azure")
    variant = variant_of(first_data_value(path, "TIMESTAMP"), header)
    spec = FORMATS_BY_VARIANT[variant]
    time_col = pl.col("TIMESTAMP")
    if variant == "2025":
        # chrono's %:z does not take "Z"; spell UTC as an offset so one format parses both forms.
        time_col = time_col.str.strip_chars().str.replace(r"Z$", "+00:00")
    lf = scan_csv_text(path, header).select(
        "_row",
        time_col.alias(TIME),
        pl.col("ContextTokens").alias("input_tokens"),
        pl.col("GeneratedTokens").alias("output_tokens"),
    )
    extra: list[tuple[str, str]] = [
        ("variant", variant),
        ("timezone", "naive" if variant == "2023" else "UTC"),
    ]
    if "NumImages" in header:
        extra.append(("dropped_columns", "NumImages (the canonical schema has no image column)"))
    meta = TraceMeta(source=str(path), format="azure", extra=tuple(extra))
    fields = {TIME: "TIMESTAMP", "input_tokens": "ContextTokens", "output_tokens": "GeneratedTokens"}
    return RawScan(
        lf=lf,
        meta=meta,
        time=spec,
        fields=fields,
        path=str(path),
        diagnose=partial(diagnose_csv, path, len(header)),
    )

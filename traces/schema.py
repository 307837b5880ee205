"""Canonical Arrow schemas for request and power traces.

Every reader turns its format into one of these tables, so that everything downstream (statistics,
replay, planners) reads one shape.

Request trace (one row per request, sorted by ``arrival_s``):

=================  ====================  =========================================================
column             type                  meaning
=================  ====================  =========================================================
``arrival_s``      float64, required     seconds since the first request of the trace (first is 0)
``input_tokens``   int32, required       prompt length in tokens (>= 0)
``output_tokens``  int32, required       generated tokens (>= 1 for a served request)
``model``          string, optional      model the request was sent to (e.g. BurstGPT's ``GPT-4``)
``tenant``         string, optional      client / tenant / application id
``session_id``     string, optional      conversation or session id (multi-turn)
``prefix_hashes``  list<uint64>, opt.    one hash per KV block of the prompt, for prefix caching
``slo_class``      string, optional      SLO class name (e.g. ``interactive``, ``batch``)
``turn``           int32, optional       0-based index of the request within its ``session_id``
                                         (increasing with arrival inside a session)
``think_s``        float64, optional     seconds of think time / tool latency between the end of the
                                         session's previous turn and this turn's send (>= 0; ignored on
                                         a session's first turn). A closed-loop replay releases the turn
                                         at the previous turn's finish plus ``think_s``
``reasoning_tokens`` int32, optional     how many of ``output_tokens`` are reasoning (thinking) before
                                         the answer (0 to ``output_tokens``; ServeGen's reason ratio)
=================  ====================  =========================================================

Power trace (long format, one row per sample):

=============  =================  ================================================================
``t_s``        float64            seconds since the start of the trace
``scope``      string             ``gpu``, ``server``, ``rack`` or ``row``
``id``         string             the GPU/server/rack/row id within its scope
``power_w``    float64            average power over the sample period, watts (>= 0)
=============  =================  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl
import pyarrow as pa

REQUIRED_REQUEST_COLUMNS: tuple[str, ...] = ("arrival_s", "input_tokens", "output_tokens")
OPTIONAL_REQUEST_COLUMNS: tuple[str, ...] = (
    "model", "tenant", "session_id", "prefix_hashes", "slo_class", "turn", "think_s", "reasoning_tokens")
NUMERIC_OPTIONAL_COLUMNS: tuple[str, ...] = ("turn", "think_s", "reasoning_tokens")
"""Optional columns read as numbers (the others are strings or hash lists)."""

REQUEST_SCHEMA = pa.schema(
    [
        pa.field("arrival_s", pa.float64(), nullable=False),
        pa.field("input_tokens", pa.int32(), nullable=False),
        pa.field("output_tokens", pa.int32(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("tenant", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("prefix_hashes", pa.list_(pa.uint64())),
        pa.field("slo_class", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("think_s", pa.float64()),
        pa.field("reasoning_tokens", pa.int32()),
    ]
)

REQUEST_POLARS_SCHEMA: dict[str, Any] = {
    "arrival_s": pl.Float64,
    "input_tokens": pl.Int32,
    "output_tokens": pl.Int32,
    "model": pl.String,
    "tenant": pl.String,
    "session_id": pl.String,
    "prefix_hashes": pl.List(pl.UInt64),
    "slo_class": pl.String,
    "turn": pl.Int32,
    "think_s": pl.Float64,
    "reasoning_tokens": pl.Int32,
}

POWER_SCHEMA = pa.schema(
    [
        pa.field("t_s", pa.float64(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("power_w", pa.float64(), nullable=False),
    ]
)

POWER_POLARS_SCHEMA: dict[str, Any] = {
    "t_s": pl.Float64,
    "scope": pl.String,
    "id": pl.String,
    "power_w": pl.Float64,
}

POWER_SCOPES: tuple[str, ...] = ("gpu", "server", "rack", "row")


@dataclass(frozen=True)
class TraceMeta:
    """Where a trace came from and what the loader did to it.

    Attributes:
        source: path or name of the input.
        format: detected or given format name (``azure``, ``burstgpt``, ``mooncake``, ...).
        block_size: tokens per ``prefix_hashes`` block, when the trace has hashes (Mooncake: 512).
        repairs: human-readable notes of documented repairs (sorted arrivals, dropped failed rows...).
        dropped_rows: rows dropped by the loader (for example BurstGPT failures), counted.
        extra: format-specific facts (start timestamp, time zone...), strings only.
    """

    source: str
    format: str
    block_size: int | None = None
    repairs: tuple[str, ...] = ()
    dropped_rows: int = 0
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def with_repair(self, note: str) -> TraceMeta:
        return replace(self, repairs=(*self.repairs, note))


@dataclass(frozen=True)
class RequestTrace:
    """A validated request trace: a polars frame in the canonical schema plus its metadata.

    The frame always has the required columns with their canonical types, sorted by ``arrival_s``,
    starting at 0. Optional columns are present only when the source had them.
    """

    df: pl.DataFrame
    meta: TraceMeta

    @property
    def num_requests(self) -> int:
        return self.df.height

    @property
    def duration_s(self) -> float:
        if self.df.height == 0:
            return 0.0
        return float(self.df["arrival_s"].max())  # type: ignore[arg-type]

    def to_arrow(self) -> pa.Table:
        """The trace as an Arrow table in :data:`REQUEST_SCHEMA` (columns it lacks are left out)."""
        table = self.df.to_arrow()
        fields = [REQUEST_SCHEMA.field(name) for name in table.column_names if name in REQUEST_SCHEMA.names]
        return table.select([f.name for f in fields]).cast(pa.schema(fields))


def canonical_columns(df: pl.DataFrame) -> list[str]:
    """The canonical columns present in ``df``, in schema order."""
    return [c for c in REQUEST_POLARS_SCHEMA if c in df.columns]

"""Summary statistics of a request trace, defined so that published trace tables can be reproduced.

Definitions (they reproduce the summary table of ``shared/data/traces/DATA.md`` to its rounding):

- ``duration_s`` = last arrival - first arrival.
- ``mean_rate_rps`` = requests / ``duration_s``.
- Windows are ``[k w, (k+1) w)`` measured from the first arrival, empty windows counted as 0.
  ``peak_to_mean`` = largest request count of a *complete* window / mean count of the complete windows.
  The trailing partial window (the one that holds the last arrival and is cut short by the end of the
  trace) is left out: its low count would bias the mean down. When there is no complete window at all
  (trace shorter than one window) every window is used. Example: Azure conv 2023 has 58 complete
  minutes with peak 507 and mean 333.4, so 1.52; counting the 37-request last minute would give 1.54.
- ``interarrival_cv`` = standard deviation / mean of the gaps between consecutive sorted arrivals
  (ties count as zero gaps).
- Length percentiles use linear interpolation between order statistics (numpy's default), so the p99
  of Azure code 2023 output tokens is 251.46, which DATA.md prints as 251.
- ``prefix_hit_ratio``: with an infinite prefix cache, the fraction of all prompt blocks whose hash
  already appeared earlier in the trace (in arrival order). ``None`` when the trace has no hashes.
- Sessions (when the trace has ``session_id``): ``sessions`` counts distinct non-null ids,
  ``turns_per_session`` is the distribution of rows per session; ``think_s`` (when the trace has it) is
  the distribution of the non-null think times of turns after a session's first.
- The per-window series attributes each request's tokens to its arrival window: prefill demand is the
  input tokens that arrive per second, decode demand the output tokens that will have to be generated
  per second. It is a demand curve, not a schedule (when tokens are actually served is the simulator's job).

All aggregates are polars expressions, so :func:`describe` works on a lazy scan of a large file without
materializing Python objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from traces.errors import InputError
from traces.schema import RequestTrace

_QUANTILES: tuple[tuple[str, float], ...] = (("median", 0.5), ("p90", 0.9), ("p99", 0.99))


@dataclass(frozen=True)
class LengthStats:
    """Distribution of one token-length column."""

    mean: float
    median: float
    p90: float
    p99: float
    max: int
    total: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "total": self.total,
        }


@dataclass(frozen=True)
class Distribution:
    """Mean, quantiles and maximum of one numeric quantity (turns per session, think seconds)."""

    mean: float
    median: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "median": self.median, "p90": self.p90, "p99": self.p99, "max": self.max}


@dataclass(frozen=True)
class SessionStats:
    """Multi-turn structure of a trace with ``session_id`` (see the module docstring).

    Attributes:
        sessions: distinct sessions.
        session_requests: requests that belong to a session.
        turns_per_session: requests per session.
        think_s: think time / tool latency before a session's later turns, ``None`` without ``think_s``.
    """

    sessions: int
    session_requests: int
    turns_per_session: Distribution
    think_s: Distribution | None

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "session_requests": self.session_requests,
                "turns_per_session": self.turns_per_session.to_dict(),
                "think_s": None if self.think_s is None else self.think_s.to_dict()}


@dataclass(frozen=True)
class TraceStats:
    """What :func:`describe` measured; see the module docstring for the exact definitions.

    Attributes:
        requests: number of requests.
        duration_s: last minus first arrival.
        mean_rate_rps: requests per second over ``duration_s`` (NaN for a zero-length trace).
        peak_to_mean: peak / mean request count over complete windows.
        interarrival_cv: CV of inter-arrival gaps (NaN with fewer than 3 requests).
        window_s: window length used for ``peak_to_mean`` and ``series``.
        input_tokens: prompt-length statistics.
        output_tokens: output-length statistics.
        prefix_hit_ratio: ideal (infinite cache) prefix-block hit ratio, ``None`` without hashes.
        prefix_blocks: number of prompt blocks with a hash (0 without hashes).
        tenants: distinct tenants, ``None`` without a tenant column.
        models: distinct models, ``None`` without a model column.
        sessions: sessions, turns per session and think times, ``None`` without a session column.
        reasoning_tokens: reasoning tokens per request, ``None`` without a ``reasoning_tokens`` column.
        reasoning_share: reasoning tokens over all output tokens (ServeGen's DeepSeek-R1: 64-70 %).
        series: one row per window: ``window``, ``start_s``, ``requests``, ``rate_rps``,
            ``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``complete``.
    """

    requests: int
    duration_s: float
    mean_rate_rps: float
    peak_to_mean: float
    interarrival_cv: float
    window_s: float
    input_tokens: LengthStats
    output_tokens: LengthStats
    prefix_hit_ratio: float | None
    prefix_blocks: int
    tenants: int | None
    models: int | None
    series: pl.DataFrame = field(compare=False, repr=False)
    sessions: SessionStats | None = None
    reasoning_tokens: LengthStats | None = None
    reasoning_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (NaN becomes ``None``); the per-window series is left out."""

        def clean(x: float | None) -> float | None:
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "mean_rate_rps": clean(self.mean_rate_rps),
            "peak_to_mean": clean(self.peak_to_mean),
            "interarrival_cv": clean(self.interarrival_cv),
            "window_s": self.window_s,
            "input_tokens": self.input_tokens.to_dict(),
            "output_tokens": self.output_tokens.to_dict(),
            "prefix_hit_ratio": clean(self.prefix_hit_ratio),
            "prefix_blocks": self.prefix_blocks,
            "tenants": self.tenants,
            "models": self.models,
            "sessions": None if self.sessions is None else self.sessions.to_dict(),
            "reasoning_tokens": None if self.reasoning_tokens is None else self.reasoning_tokens.to_dict(),
            "reasoning_share": clean(self.reasoning_share),
        }


def describe(trace: RequestTrace | pl.DataFrame | pl.LazyFrame, *, window_s: float = 60.0) -> TraceStats:
    """Measure a request trace.

    Args:
        trace: a trace, or a (lazy) frame with at least ``arrival_s``, ``input_tokens``, ``output_tokens``
            (arrivals need not start at 0 nor be sorted).
        window_s: window length in seconds for ``peak_to_mean`` and the series.

    Returns:
        The statistics.

    Raises:
        InputError: ``window_s`` is not > 0, required columns are missing, or the trace is empty.

    >>> df = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0, 4.5], "input_tokens": [10, 20, 30, 40, 50],
    ...                    "output_tokens": [1, 2, 3, 4, 5]})
    >>> s = describe(df, window_s=2.0)
    >>> s.requests, s.mean_rate_rps, s.peak_to_mean, s.input_tokens.median
    (5, 1.1111111111111112, 1.0, 30.0)
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise InputError(f"bad window {window_s}", field="window_s", expected="a number of seconds > 0")
    source = trace.meta.source if isinstance(trace, RequestTrace) else None
    lf = trace.df.lazy() if isinstance(trace, RequestTrace) else trace.lazy()
    columns = lf.collect_schema().names()
    missing = [c for c in ("arrival_s", "input_tokens", "output_tokens") if c not in columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}",
            path=source,
            field=missing[0],
            expected="a request trace in the canonical schema",
        )

    scalars = _scalars(lf, columns).collect().row(0, named=True)
    n = int(scalars["requests"])
    if n == 0:
        raise InputError("the trace has no requests", path=source, expected="at least one request")
    duration = float(scalars["last"] - scalars["first"])
    series = _series(lf, first=float(scalars["first"]), duration=duration, window_s=window_s)
    complete = series.filter(pl.col("complete"))
    counts = complete if complete.height > 0 else series
    peak_to_mean = float(counts["requests"].max()) / float(counts["requests"].mean())  # type: ignore[arg-type]

    hit_ratio: float | None = None
    blocks = 0
    if "prefix_hashes" in columns:
        hit_ratio, blocks = _prefix_hits(lf)

    reasoning = "reasoning_tokens" in columns
    gap_mean = scalars["gap_mean"]
    cv = float(scalars["gap_std"]) / float(gap_mean) if n >= 3 and gap_mean else math.nan
    return TraceStats(
        requests=n,
        duration_s=duration,
        mean_rate_rps=n / duration if duration > 0 else math.nan,
        peak_to_mean=peak_to_mean,
        interarrival_cv=cv,
        window_s=float(window_s),
        input_tokens=_length_stats(scalars, "input_tokens"),
        output_tokens=_length_stats(scalars, "output_tokens"),
        prefix_hit_ratio=hit_ratio,
        prefix_blocks=blocks,
        tenants=int(scalars["tenants"]) if "tenant" in columns else None,
        models=int(scalars["models"]) if "model" in columns else None,
        series=series,
        sessions=_session_stats(lf, columns) if "session_id" in columns else None,
        reasoning_tokens=_length_stats(scalars, "reasoning_tokens") if reasoning else None,
        reasoning_share=(float(scalars["reasoning_tokens:total"]) / float(scalars["output_tokens:total"])
                         if reasoning and scalars["output_tokens:total"] else None),
    )


def _scalars(lf: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    gaps = pl.col("arrival_s").sort().diff()
    exprs: list[pl.Expr] = [
        pl.len().alias("requests"),
        pl.col("arrival_s").min().alias("first"),
        pl.col("arrival_s").max().alias("last"),
        gaps.mean().alias("gap_mean"),
        gaps.std().alias("gap_std"),
    ]
    lengths = ["input_tokens", "output_tokens"]
    if "reasoning_tokens" in columns:
        lengths.append("reasoning_tokens")
    for col in lengths:
        c = pl.col(col).cast(pl.Int64).fill_null(0)
        exprs += [c.mean().alias(f"{col}:mean"), c.max().alias(f"{col}:max"), c.sum().alias(f"{col}:total")]
        exprs += [c.quantile(q, interpolation="linear").alias(f"{col}:{name}") for name, q in _QUANTILES]
    if "tenant" in columns:
        exprs.append(pl.col("tenant").drop_nulls().n_unique().alias("tenants"))
    if "model" in columns:
        exprs.append(pl.col("model").drop_nulls().n_unique().alias("models"))
    return lf.select(exprs)


def _distribution(col: pl.Expr) -> list[pl.Expr]:
    c = col.cast(pl.Float64)
    return [c.mean().alias("mean"), c.max().alias("max"),
            *[c.quantile(q, interpolation="linear").alias(name) for name, q in _QUANTILES]]


def _as_distribution(row: dict[str, Any]) -> Distribution:
    return Distribution(**{k: float("nan") if row[k] is None else float(row[k])
                           for k in ("mean", "median", "p90", "p99", "max")})


def _session_stats(lf: pl.LazyFrame, columns: list[str]) -> SessionStats | None:
    """Turns per session and think times (one group-by over two columns); ``None`` if no row has one."""
    turns = (lf.select("session_id").drop_nulls().group_by("session_id").len()
             .select(pl.len().alias("sessions"), pl.col("len").sum().alias("session_requests"),
                     *_distribution(pl.col("len"))).collect().row(0, named=True))
    if not turns["sessions"]:
        return None
    think: Distribution | None = None
    if "think_s" in columns:
        key = [pl.col("turn")] if "turn" in columns else []
        later = (lf.select("session_id", "think_s", *key).drop_nulls("session_id")
                 .sort("session_id", *key, maintain_order=True)
                 .filter(pl.col("session_id").cum_count().over("session_id") > 1))
        row = later.select(*_distribution(pl.col("think_s").drop_nulls())).collect().row(0, named=True)
        think = None if row["mean"] is None else _as_distribution(row)
    return SessionStats(sessions=int(turns["sessions"]), session_requests=int(turns["session_requests"]),
                        turns_per_session=_as_distribution(turns), think_s=think)


def _length_stats(row: dict[str, Any], col: str) -> LengthStats:
    return LengthStats(
        mean=float(row[f"{col}:mean"]),
        median=float(row[f"{col}:median"]),
        p90=float(row[f"{col}:p90"]),
        p99=float(row[f"{col}:p99"]),
        max=int(row[f"{col}:max"]),
        total=int(row[f"{col}:total"]),
    )


def _series(lf: pl.LazyFrame, *, first: float, duration: float, window_s: float) -> pl.DataFrame:
    """Per-window request and token demand, empty windows included, last window flagged incomplete."""
    num_windows = math.floor(duration / window_s) + 1
    per_window = (
        lf.select(
            ((pl.col("arrival_s") - first) / window_s).floor().cast(pl.Int64).alias("window"),
            pl.col("input_tokens").cast(pl.Int64),
            pl.col("output_tokens").cast(pl.Int64),
        )
        .group_by("window")
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            pl.col("input_tokens").sum().alias("prefill_tokens"),
            pl.col("output_tokens").sum().alias("decode_tokens"),
        )
    )
    grid = pl.LazyFrame({"window": pl.int_range(0, num_windows, dtype=pl.Int64, eager=True)})
    return (
        grid.join(per_window, on="window", how="left")
        .with_columns(pl.col("requests", "prefill_tokens", "decode_tokens").fill_null(0))
        .select(
            "window",
            (pl.col("window") * window_s).alias("start_s"),
            "requests",
            (pl.col("requests") / window_s).alias("rate_rps"),
            (pl.col("prefill_tokens") / window_s).alias("prefill_tokens_per_s"),
            (pl.col("decode_tokens") / window_s).alias("decode_tokens_per_s"),
            ((pl.col("window") + 1) * window_s <= duration).alias("complete"),
        )
        .sort("window")
        .collect()
    )


def _prefix_hits(lf: pl.LazyFrame) -> tuple[float | None, int]:
    """Blocks whose hash was seen before (infinite cache), in arrival order; ties keep row order."""
    blocks = (
        lf.select("arrival_s", "prefix_hashes")
        .with_row_index("row")
        .sort("arrival_s", "row", maintain_order=True)
        .select(pl.col("prefix_hashes").explode().alias("h"))
        .drop_nulls()
        .select(pl.len().alias("blocks"), (~pl.col("h").is_first_distinct()).sum().alias("hits"))
        .collect()
        .row(0, named=True)
    )
    total = int(blocks["blocks"])
    if total == 0:
        return None, 0
    return int(blocks["hits"]) / total, total

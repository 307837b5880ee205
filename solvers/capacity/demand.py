"""What a trace asks of a fleet: its length mix (a distribution, not a mean) and its demand per window.

The mix is a joint quantile grid: requests are cut into buckets by input-length quantile, and each of
those by output-length quantile; a bucket is represented by its mean lengths and weighted by its share
of requests. The edges put extra buckets into the tail (0.9, 0.99), because a p99 SLO is decided by the
long prompts, which a mean would hide.

Demand per window is the peak request rate over ``burst_s`` sub-windows inside it: the planner sizes a
window for its busiest minute, not its average one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from solvers.capacity.problem import Window
from traces.errors import InputError
from traces.schema import RequestTrace

FloatArray = NDArray[np.float64]

QUANTILE_EDGES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
"""Default quantile edges for both lengths: four body buckets and two tail buckets."""


@dataclass(frozen=True, eq=False)
class LengthMix:
    """Request-length buckets.

    Attributes:
        input_tokens: mean prompt length per bucket.
        output_tokens: mean output length per bucket.
        weight: share of requests per bucket (sums to 1).
    """

    input_tokens: FloatArray
    output_tokens: FloatArray
    weight: FloatArray

    def __post_init__(self) -> None:
        n = self.weight.size
        if n == 0 or self.input_tokens.size != n or self.output_tokens.size != n:
            raise InputError("length mix arrays differ in size or are empty", field="mix",
                             expected="equal, non-empty arrays")
        if not (np.all(self.weight >= 0) and abs(float(self.weight.sum()) - 1.0) < 1e-6):
            raise InputError("length mix weights must be >= 0 and sum to 1", field="mix.weight")
        if np.any(self.input_tokens < 1) or np.any(self.output_tokens < 1):
            raise InputError("length mix lengths must be >= 1 token", field="mix",
                             expected="positive token counts")

    @property
    def mean_input(self) -> float:
        """Mean prompt tokens per request."""
        return float(self.weight @ self.input_tokens)

    @property
    def mean_output(self) -> float:
        """Mean output tokens per request."""
        return float(self.weight @ self.output_tokens)

    @property
    def max_tokens(self) -> float:
        """Prompt + output of the longest bucket (what one sequence's KV must hold)."""
        return float((self.input_tokens + self.output_tokens).max())

    @staticmethod
    def single(input_tokens: float, output_tokens: float) -> LengthMix:
        """A one-bucket mix (tests, what-ifs).

        >>> LengthMix.single(1000, 200).mean_input
        1000.0
        """
        return LengthMix(np.array([float(input_tokens)]), np.array([float(output_tokens)]), np.array([1.0]))


def _bucket(values: pl.Expr, edges: tuple[float, ...], name: str, over: str | None) -> pl.Expr:
    """Quantile-bucket index of ``values`` (0-based), optionally within groups of ``over``."""
    rank = values.rank("min")
    n = values.count()
    if over is not None:
        rank, n = rank.over(over), n.over(over)
    q = (rank - 1).cast(pl.Float64) / n.cast(pl.Float64)
    inner = list(edges[1:-1])
    idx = pl.lit(0)
    for e in inner:
        idx = idx + (q >= e).cast(pl.Int32)
    return idx.alias(name)


def length_mix(trace: RequestTrace, *, edges: tuple[float, ...] = QUANTILE_EDGES) -> LengthMix:
    """The trace's joint input x output length distribution on a quantile grid.

    Raises:
        InputError: the trace is empty or the edges are not increasing from 0 to 1.

    >>> import polars as pl
    >>> from traces.schema import RequestTrace, TraceMeta
    >>> df = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0], "input_tokens": [10, 20, 30, 40],
    ...                    "output_tokens": [5, 5, 5, 5]})
    >>> tr = RequestTrace(df=df, meta=TraceMeta(source="t", format="generic"))
    >>> m = length_mix(tr, edges=(0.0, 0.5, 1.0))
    >>> m.input_tokens.tolist(), m.weight.tolist()
    ([15.0, 35.0], [0.5, 0.5])
    """
    if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(
            b <= a for a, b in itertools.pairwise(edges)):
        raise InputError(f"bad quantile edges {edges}", field="edges", expected="increasing from 0.0 to 1.0")
    df = trace.df
    if df.height == 0:
        raise InputError("trace has no requests", path=trace.meta.source)
    cells = (
        df.lazy()
        .select(pl.col("input_tokens").cast(pl.Float64), pl.col("output_tokens").cast(pl.Float64))
        .with_columns(_bucket(pl.col("input_tokens"), edges, "bi", None))
        .with_columns(_bucket(pl.col("output_tokens"), edges, "bo", "bi"))
        .group_by("bi", "bo")
        .agg(pl.col("input_tokens").mean(), pl.col("output_tokens").mean(), pl.len().alias("n"))
        .sort("bi", "bo")
        .collect()
    )
    n = cells["n"].to_numpy().astype(np.float64)
    return LengthMix(
        input_tokens=np.maximum(cells["input_tokens"].to_numpy().astype(np.float64), 1.0),
        output_tokens=np.maximum(cells["output_tokens"].to_numpy().astype(np.float64), 1.0),
        weight=n / n.sum(),
    )


def demand_windows(trace: RequestTrace, *, window_s: float = 300.0, burst_s: float = 60.0,
                   load_factor: float = 1.0, duration_s: float | None = None) -> tuple[Window, ...]:
    """Per window, the peak rate of its ``burst_s`` sub-windows (times ``load_factor``), over the
    trace's span or ``duration_s`` (one SLO class's requests on the whole trace's window grid).

    Raises:
        InputError: the trace is empty, or a window length is not positive.

    >>> import polars as pl
    >>> from traces.schema import RequestTrace, TraceMeta
    >>> df = pl.DataFrame({"arrival_s": [0.0, 0.5, 1.0, 2.5], "input_tokens": [1] * 4,
    ...                    "output_tokens": [1] * 4})
    >>> tr = RequestTrace(df=df, meta=TraceMeta(source="t", format="generic"))
    >>> [w.demand_rps for w in demand_windows(tr, window_s=2.0, burst_s=1.0)]
    [2.0, 1.0]
    """
    for name, v in (("window_s", window_s), ("burst_s", burst_s), ("load_factor", load_factor)):
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{name} must be positive, got {v}", field=name, expected="a number > 0")
    df = trace.df
    if df.height == 0:
        raise InputError("trace has no requests", path=trace.meta.source)
    burst = min(burst_s, window_s)
    duration = max(float(trace.duration_s if duration_s is None else duration_s), 1e-9)
    n_windows = max(1, math.ceil(duration / window_s - 1e-9))
    per = (
        df.lazy()
        .select((pl.col("arrival_s") // burst).cast(pl.Int64).alias("b"))
        .group_by("b").len()
        .with_columns(((pl.col("b").cast(pl.Float64) * burst) // window_s).cast(pl.Int64).alias("w"))
        .group_by("w").agg(pl.col("len").max())
        .collect()
    )
    peak = np.zeros(n_windows)
    for w, n in zip(per["w"].to_list(), per["len"].to_list(), strict=True):
        peak[min(int(w), n_windows - 1)] = max(peak[min(int(w), n_windows - 1)], float(n))
    out = []
    for i in range(n_windows):
        start = i * window_s
        dur = min(window_s, duration - start) if i == n_windows - 1 else window_s
        rate = float(peak[i]) / burst * load_factor
        out.append(Window(start_s=start, duration_s=max(dur, 1e-9), demand_rps=rate))
    return tuple(out)

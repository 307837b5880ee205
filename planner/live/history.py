"""A vLLM fleet's metrics over a past time range, read from Prometheus as per-interval increases.

Why raw series and not ``increase()``: PromQL's ``increase`` extrapolates to the window's edges, so
counts of requests come back fractional and do not add up across windows. Reading each replica's counter
at the grid points and differencing here gives whole counts that add up, handles counter resets (a
restarted replica starts again from 0) and counts a replica that appears mid-range from 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.live.promql import (
    CACHE_CONFIG,
    E2E_NAME,
    GENERATION_TOKENS,
    ITL_NAMES,
    KV_NAMES,
    PREFIX_HITS,
    PREFIX_QUERIES,
    PROMPT_TOKENS,
    REQUEST_GENERATION,
    REQUEST_PROMPT,
    RUNNING,
    TTFT_NAME,
    WAITING,
    PromClient,
    RangeSeries,
    query_range,
)
from traces.errors import InputError

FloatArray = NDArray[np.float64]

_PER_REPLICA = frozenset({"__name__", "instance", "job", "pod", "engine", "container", "endpoint"})
"""Labels that name a series or a replica, not the fleet's configuration."""


@dataclass(frozen=True)
class Histogram:
    """A histogram's per-interval increases, summed over replicas.

    Attributes:
        bounds: the finite ``le`` upper bounds, ascending (the last bucket, above them, is ``+Inf``).
        counts: ``(intervals, len(bounds) + 1)`` observations per bucket (not cumulative) per interval.
        sums: per interval, the increase of the observed values' sum.
    """

    bounds: tuple[float, ...]
    counts: NDArray[np.float64]
    sums: FloatArray

    @property
    def totals(self) -> FloatArray:
        """Observations per interval."""
        out: FloatArray = self.counts.sum(axis=1)
        return out

    def mean(self, mask: NDArray[np.bool_] | None = None) -> float:
        """The observed values' mean over the intervals in ``mask`` (default all; exact: sum over count),
        NaN without observations."""
        sel = slice(None) if mask is None else mask
        n = float(self.totals[sel].sum())
        return float(self.sums[sel].sum()) / n if n > 0 else math.nan


@dataclass(frozen=True)
class TelemetryHistory:
    """What Prometheus holds about one vLLM fleet over a range, on a regular grid.

    Attributes:
        grid_s: the ``K + 1`` evaluation times (Unix seconds); interval ``k`` is ``(grid[k], grid[k+1]]``.
        prompt_tokens, generation_tokens: counter increases per interval (vLLM counts a prompt's tokens
            when its first token is out, each generated token as it is out).
        prompt_lengths, output_lengths: the request length histograms (observed at each finish).
        ttft, e2e: time-to-first-token (observed at the first token) and arrival-to-finish histograms.
        itl: inter-token latency (one observation per token after the first).
        running, waiting: requests running and waiting at each grid point, summed over replicas.
        kv_usage: mean KV-cache use over replicas (0-1) at each grid point (NaN where none reported).
        replicas: replicas reporting at each grid point.
        prefix_queries, prefix_hits: prefix-cache token queries and hits over the range.
        server: what the fleet says of its configuration (model name, ``cache_config_info`` labels).
        source: the Prometheus URL and selector.
    """

    grid_s: FloatArray
    prompt_tokens: FloatArray
    generation_tokens: FloatArray
    prompt_lengths: Histogram
    output_lengths: Histogram
    ttft: Histogram
    e2e: Histogram
    itl: Histogram
    running: FloatArray
    waiting: FloatArray
    kv_usage: FloatArray
    replicas: FloatArray
    prefix_queries: float
    prefix_hits: float
    server: tuple[tuple[str, str], ...]
    source: str

    @property
    def step_s(self) -> float:
        return float(self.grid_s[1] - self.grid_s[0])


def _index(s: RangeSeries, start_s: float, step_s: float, n: int) -> tuple[NDArray[np.int64], FloatArray]:
    idx = np.rint((np.asarray(s.t_s) - start_s) / step_s).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    return idx[keep], np.asarray(s.values, dtype=np.float64)[keep]


def counter_increases(
    series: Iterable[RangeSeries], start_s: float, step_s: float, n: int, key: tuple[str, ...] = ()
) -> dict[tuple[str, ...], FloatArray]:
    """Per-interval increases of counters sampled on the grid, summed per ``key`` labels.

    A drop is a reset (the increase is the new value); a series first seen after the grid's first
    point is a new replica, counted from 0.

    >>> s = RangeSeries((("pod", "a"),), (0.0, 10.0, 20.0, 30.0), (5.0, 7.0, 2.0, 4.0))
    >>> counter_increases([s], 0.0, 10.0, 4)[()].tolist()
    [2.0, 2.0, 2.0]
    >>> late = RangeSeries((("pod", "b"),), (20.0, 30.0), (3.0, 4.0))
    >>> counter_increases([late], 0.0, 10.0, 4)[()].tolist()
    [0.0, 3.0, 1.0]
    """
    out: dict[tuple[str, ...], FloatArray] = defaultdict(lambda: np.zeros(n - 1))
    for s in series:
        idx, val = _index(s, start_s, step_s, n)
        if idx.size == 0:
            continue
        acc = out[tuple(s.label(k) for k in key)]
        d = np.diff(val)
        d = np.where(d < 0, val[1:], d)  # a reset: the counter restarted from 0
        acc[idx[1:] - 1] += d  # gaps: the increase lands in the interval that ends at the next sample
        if idx[0] > 0:
            acc[idx[0] - 1] += val[0]
    return dict(out)


def gauge_grid(
    series: Iterable[RangeSeries], start_s: float, step_s: float, n: int
) -> tuple[FloatArray, FloatArray]:
    """Sum over series of a gauge at each grid point, and how many series reported there."""
    total = np.zeros(n)
    count = np.zeros(n)
    for s in series:
        idx, val = _index(s, start_s, step_s, n)
        ok = np.isfinite(val)
        np.add.at(total, idx[ok], val[ok])
        np.add.at(count, idx[ok], 1.0)
    return total, count


def _either(names: str | tuple[str, ...], suffix: str, sel: str) -> str:
    """``new{sel} or old{sel}``: a replica exposing both names counts once, under the first (PromQL's ``or``
    keeps the left side's series and adds the right side's only for label sets the left lacks)."""
    return " or ".join(f"{n}{suffix}{sel}" for n in ((names,) if isinstance(names, str) else names))


def _histogram(
    client: PromClient,
    name: str | tuple[str, ...],
    sel: str,
    start_s: float,
    end_s: float,
    step_s: float,
    n: int,
) -> Histogram:
    buckets = counter_increases(
        query_range(client, _either(name, "_bucket", sel), start_s, end_s, step_s),
        start_s,
        step_s,
        n,
        key=("le",),
    )
    sums = counter_increases(
        query_range(client, _either(name, "_sum", sel), start_s, end_s, step_s), start_s, step_s, n
    )
    les = sorted(buckets, key=lambda k: float(k[0]))
    bounds = tuple(float(k[0]) for k in les if not math.isinf(float(k[0])))
    cum = np.stack([buckets[k] for k in les], axis=1) if les else np.zeros((n - 1, 1))
    counts = np.diff(np.concatenate([np.zeros((n - 1, 1)), cum], axis=1), axis=1)
    return Histogram(bounds, np.maximum(counts, 0.0), sums.get((), np.zeros(n - 1)))


def read_history(
    client: PromClient, selector: str, start_s: float, end_s: float, step_s: float
) -> TelemetryHistory:
    """Read a vLLM fleet's series between ``start_s`` and ``end_s`` (Unix seconds) every ``step_s``.

    ``selector`` is PromQL label matchers, e.g. ``{model_name="llama",namespace="prod"}`` (``""``: every
    vLLM series Prometheus holds).

    Raises:
        InputError: a range that is empty or too fine for Prometheus (over 11,000 points), or no vLLM
            series in it.
        PromQueryError: Prometheus unreachable or a query refused.
    """
    if not end_s > start_s or step_s <= 0:
        raise InputError(
            f"range {start_s:g},{end_s:g} with step {step_s:g} s is empty",
            field="--range",
            expected="START,END with END after START, and a positive --step",
        )
    n = math.floor((end_s - start_s) / step_s) + 1
    if n < 2 or n > 11_000:
        raise InputError(
            f"{n} grid points between {start_s:g} and {end_s:g} at {step_s:g} s",
            field="--step",
            expected="between 2 and 11,000 points (Prometheus' limit)",
        )
    sel = selector

    def q(expr: str) -> list[RangeSeries]:
        return query_range(client, expr, start_s, end_s, step_s)

    prompt = counter_increases(q(f"{PROMPT_TOKENS}{sel}"), start_s, step_s, n)
    if not prompt:
        raise InputError(
            f"no {PROMPT_TOKENS} series{' matching ' + sel if sel else ''} between {start_s:g} and {end_s:g}",
            path=client.base_url,
            field="--selector",
            expected="a range and selector where vLLM metrics were scraped",
        )
    gen = counter_increases(q(f"{GENERATION_TOKENS}{sel}"), start_s, step_s, n)
    running, reps = gauge_grid(q(f"{RUNNING}{sel}"), start_s, step_s, n)
    waiting, _ = gauge_grid(q(f"{WAITING}{sel}"), start_s, step_s, n)
    kv_sum, kv_n = gauge_grid(q(_either(KV_NAMES, "", sel)), start_s, step_s, n)
    queries = counter_increases(q(f"{PREFIX_QUERIES}{sel}"), start_s, step_s, n)
    hits = counter_increases(q(f"{PREFIX_HITS}{sel}"), start_s, step_s, n)
    server: dict[str, str] = {}
    for s in q(f"{CACHE_CONFIG}{sel}")[:1] + q(f"{RUNNING}{sel}")[:1]:
        server.update({k: v for k, v in s.labels if k not in _PER_REPLICA})
    return TelemetryHistory(
        grid_s=start_s + step_s * np.arange(n, dtype=np.float64),
        prompt_tokens=prompt[()],
        generation_tokens=gen.get((), np.zeros(n - 1)),
        prompt_lengths=_histogram(client, REQUEST_PROMPT, sel, start_s, end_s, step_s, n),
        output_lengths=_histogram(client, REQUEST_GENERATION, sel, start_s, end_s, step_s, n),
        ttft=_histogram(client, TTFT_NAME, sel, start_s, end_s, step_s, n),
        e2e=_histogram(client, E2E_NAME, sel, start_s, end_s, step_s, n),
        itl=_histogram(client, ITL_NAMES, sel, start_s, end_s, step_s, n),
        running=running,
        waiting=waiting,
        kv_usage=np.divide(kv_sum, kv_n, out=np.full(n, np.nan), where=kv_n > 0),
        replicas=reps,
        prefix_queries=float(queries[()].sum()) if queries else 0.0,
        prefix_hits=float(hits[()].sum()) if hits else 0.0,
        server=tuple(sorted(server.items())),
        source=f"{client.base_url} {sel}".strip(),
    )

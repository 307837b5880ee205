"""A request trace rebuilt from a fleet's Prometheus history (``fleetwise traces from-prometheus``).

What the metrics pin down, and how each is used:

* **When requests arrived.** vLLM observes a request's time to first token when that token is out, so
  the TTFT histogram's count over an interval is the number of requests that got their first token then;
  each is moved back by the interval's mean TTFT (the histogram's sum over its count). Without a TTFT
  histogram, the prompt-token counter's increase over the mean prompt length stands in.
* **Their prompts' total.** vLLM counts a prompt's tokens at the same moment, so the prompt-token
  counter's increase over the interval is the sum of those requests' prompt lengths: their draws are
  moved within their buckets until they add up to it.
* **How long they were.** Each request's prompt and output lengths are drawn from the length
  histograms (observed at each finish) of the intervals around the one where it would finish (its
  arrival plus the interval's mean end-to-end latency), widened until they hold enough requests; each
  bucket's mean is fitted to every interval's length sum (:func:`bucket_means`) and its requests are
  spread evenly around that mean.
  The pairing of prompt and output lengths is not in the metrics: they are drawn independently.
* **What cannot be known.** Arrivals inside one interval are spread uniformly at random (Poisson-like):
  burstiness finer than the step is not in the metrics. Prefix sharing is reported as the fleet's hit
  ratio, not rebuilt into the trace.

The trace says so: ``TraceMeta.format == "prometheus"``, and ``extra`` carries ``reconstructed``, the
step, the range, the source and what the fleet reported of its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.live.history import Histogram, TelemetryHistory
from traces.errors import InputError
from traces.schema import REQUEST_POLARS_SCHEMA, RequestTrace, TraceMeta

MIN_LENGTH_SAMPLES = 50
"""Length draws come from a window of intervals holding at least this many finished requests."""


@dataclass(frozen=True)
class ReconstructionReport:
    """What the rebuilt trace rests on (printed beside it).

    Attributes:
        requests: requests rebuilt.
        finished: requests the fleet reported finished over the range (the length histograms' count).
        mean_prompt_tokens, mean_output_tokens: the histograms' means.
        peak_replicas: most replicas reporting at once.
        prefix_hit_ratio: prefix-cache hits over queries (None when not reported).
        step_s: the grid step.
    """

    requests: int
    finished: int
    mean_prompt_tokens: float
    mean_output_tokens: float
    peak_replicas: int
    prefix_hit_ratio: float | None
    step_s: float


def _interval_means(h: Histogram, fallback: float) -> NDArray[np.float64]:
    n = h.totals
    out: NDArray[np.float64] = np.divide(h.sums, n, out=np.full(n.size, fallback), where=n > 0)
    return out


def bucket_means(h: Histogram) -> NDArray[np.float64]:
    """Each bucket's mean value, fitted so that every interval's observed sum is best explained.

    Why: vLLM's length buckets are 1-2-5 wide ((200, 500] holds most outputs), and spreading a bucket's
    requests evenly across it misplaces clustered lengths (conversation outputs near 400 tokens). Each
    interval's sum is ``sum_b count_b * mean_b``; over many intervals the bucket means are a bounded
    least-squares fit (each within its bucket). With one interval the fit falls back to the bucket mids
    shifted together to the total mean.

    >>> h = Histogram((10.0, 100.0), np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 2.0, 0.0]]),
    ...               np.array([2 * 5.0 + 80.0, 5.0 + 3 * 80.0, 2 * 80.0]))
    >>> bucket_means(h)[:2].round(1).tolist()
    [5.0, 80.0]
    """
    from scipy.optimize import lsq_linear  # imported here: scipy costs every command's start-up

    lo: NDArray[np.float64] = np.concatenate([[0.0], h.bounds])
    hi: NDArray[np.float64] = np.concatenate([h.bounds, [2.0 * h.bounds[-1] if h.bounds else 1.0]])
    used = h.counts.sum(axis=0) > 0
    mids: NDArray[np.float64] = (lo + hi) / 2.0
    rows = h.totals > 0
    if not used.any() or rows.sum() < 2:
        return mids
    a = h.counts[np.ix_(rows, used)]
    fit = lsq_linear(a, h.sums[rows], bounds=(lo[used], np.maximum(hi[used], lo[used] + 1e-9)))
    out: NDArray[np.float64] = mids.copy()
    out[used] = fit.x
    return out


def draw_values(
    bounds: tuple[float, ...],
    means: NDArray[np.float64],
    counts: NDArray[np.float64],
    n: int,
    target_mean: float | None = None,
) -> NDArray[np.float64]:
    """``n`` values from a histogram (per-bucket ``counts``, finite upper ``bounds``, bucket ``means``),
    ascending.

    Buckets get values in proportion to their counts (largest remainders); within a bucket they sit at
    evenly spaced quantiles of a uniform spread centred on the bucket's mean, as wide as the bucket allows
    on the nearer side. With ``target_mean`` (a known sum over ``n``), every value moves by the same share
    of its bucket's width, within the bucket, until their mean is that.

    >>> draw_values((10.0, 100.0), np.array([5.0, 40.0, 150.0]), np.array([0.0, 4.0, 0.0]), 4).tolist()
    [17.5, 32.5, 47.5, 62.5]
    """
    if n <= 0:
        return np.zeros(0)
    total = counts.sum()
    if total <= 0:
        raise InputError(
            "a histogram has no observations", field="vllm:*", expected="finished requests in the range"
        )
    share = counts / total * n
    k = np.floor(share).astype(np.int64)
    k[np.argsort(-(share - k))[: n - int(k.sum())]] += 1
    lo = np.concatenate([[0.0], bounds])
    hi = np.concatenate([bounds, [max(2.0 * bounds[-1], float(means[-1])) if bounds else 2.0 * means[-1]]])
    b = np.repeat(np.arange(k.size), k)
    pos = np.concatenate([(np.arange(c) + 0.5) / c for c in k if c > 0])
    half = np.minimum(means[b] - lo[b], hi[b] - means[b])
    vals: NDArray[np.float64] = np.clip(means[b] + (2.0 * pos - 1.0) * half, lo[b], hi[b])
    if target_mean is not None:
        width = hi[b] - lo[b]
        a, z = -1.0, 1.0
        for _ in range(40):  # bisection: the mean grows with the shift
            m = (a + z) / 2.0
            if np.clip(vals + m * width, lo[b], hi[b]).mean() < target_mean:
                a = m
            else:
                z = m
        vals = np.clip(vals + (a + z) / 2.0 * width, lo[b], hi[b])
    return vals


def draw_lengths(
    bounds: tuple[float, ...],
    means: NDArray[np.float64],
    counts: NDArray[np.float64],
    n: int,
    rng: np.random.Generator,
    target_mean: float | None = None,
) -> NDArray[np.int64]:
    """:func:`draw_values` as token counts (at least 1), in random order.

    >>> x = draw_lengths((10.0, 100.0), np.array([5.0, 40.0, 150.0]), np.array([0.0, 4.0, 0.0]), 8,
    ...                  np.random.default_rng(0))
    >>> bool(x.min() > 10 and x.max() <= 100), float(x.mean())
    (True, 40.5)
    """
    out: NDArray[np.int64] = np.maximum(
        np.ceil(draw_values(bounds, means, counts, n, target_mean)), 1
    ).astype(np.int64)
    rng.shuffle(out)
    return out


def _window_counts(h: Histogram, center: int) -> NDArray[np.float64]:
    counts = h.counts
    lo = hi = min(max(center, 0), counts.shape[0] - 1)
    acc = counts[lo].copy()
    while acc.sum() < MIN_LENGTH_SAMPLES and (lo > 0 or hi < counts.shape[0] - 1):
        lo = max(lo - 1, 0)
        hi = min(hi + 1, counts.shape[0] - 1)
        acc = counts[lo : hi + 1].sum(axis=0)
    out: NDArray[np.float64] = acc
    return out


def reconstruct(history: TelemetryHistory, *, seed: int = 0) -> tuple[RequestTrace, ReconstructionReport]:
    """Rebuild a request trace whose rate over time and length distributions match ``history``.

    Raises:
        InputError: no finished requests in the range (nothing to learn lengths from).
    """
    rng = np.random.default_rng(seed)
    finished = round(float(history.prompt_lengths.totals.sum()))
    if finished == 0:
        raise InputError(
            "no request finished in the range",
            path=history.source,
            field="--range",
            expected="a range in which the fleet served requests",
        )
    mean_in = history.prompt_lengths.mean()
    mean_out = history.output_lengths.mean()
    step = history.step_s
    if history.ttft.totals.sum() > 0:  # first tokens per interval: exact
        per = np.maximum(np.rint(history.ttft.totals), 0).astype(np.int64)
    else:
        cum = np.rint(np.cumsum(history.prompt_tokens) / mean_in)
        per = np.maximum(np.diff(np.concatenate([[0.0], cum])), 0).astype(np.int64)
    ttft = _interval_means(history.ttft, history.ttft.mean() if history.ttft.totals.sum() else 0.0)
    e2e = _interval_means(history.e2e, history.e2e.mean() if history.e2e.totals.sum() else 0.0)
    in_means = bucket_means(history.prompt_lengths)
    out_means = bucket_means(history.output_lengths)
    arrivals: list[NDArray[np.float64]] = []
    ins: list[NDArray[np.int64]] = []
    outs: list[NDArray[np.int64]] = []
    ttft_means = bucket_means(history.ttft) if history.ttft.totals.sum() > 0 else None
    for k in np.flatnonzero(per):
        n = int(per[k])
        first = history.grid_s[k] + np.sort(rng.uniform(0.0, step, n))
        if ttft_means is not None and history.ttft.counts[k].sum() > 0:
            # first come, first served: the earlier first tokens went to the earlier arrivals
            wait = draw_values(
                history.ttft.bounds, ttft_means, history.ttft.counts[k], n, target_mean=ttft[k]
            )
        else:
            wait = np.full(n, ttft[k])
        arrivals.append(first - wait)
        done = int(k + round(e2e[k] / step))  # the interval in which these would finish
        h = history.prompt_lengths  # these requests' prompt tokens were counted in this interval: their sum
        ins.append(
            draw_lengths(
                h.bounds,
                in_means,
                _window_counts(h, done),
                n,
                rng,
                target_mean=float(history.prompt_tokens[k]) / n,
            )
        )
        h = history.output_lengths
        outs.append(draw_lengths(h.bounds, out_means, _window_counts(h, done), n, rng))
    t_all = np.concatenate(arrivals)
    order = np.argsort(t_all, kind="stable")
    start = float(t_all[order[0]])
    df = pl.DataFrame(
        {
            "arrival_s": t_all[order] - start,
            "input_tokens": np.concatenate(ins)[order],
            "output_tokens": np.concatenate(outs)[order],
        }
    ).cast({c: REQUEST_POLARS_SCHEMA[c] for c in ("arrival_s", "input_tokens", "output_tokens")})
    hit = history.prefix_hits / history.prefix_queries if history.prefix_queries > 0 else None
    report = ReconstructionReport(
        requests=df.height,
        finished=finished,
        mean_prompt_tokens=mean_in,
        mean_output_tokens=mean_out,
        peak_replicas=int(history.replicas.max()),
        prefix_hit_ratio=hit,
        step_s=step,
    )
    extra = (
        (
            "reconstructed",
            "from Prometheus metrics: arrival rate per step, length histograms; "
            "arrivals within a step and prompt/output pairing are not in the metrics",
        ),
        ("start_timestamp", f"{start:.3f}"),
        ("range", f"{history.grid_s[0]:.3f},{history.grid_s[-1]:.3f}"),
        ("step_s", f"{step:g}"),
        ("peak_replicas", str(report.peak_replicas)),
        *(("prefix_hit_ratio", f"{hit:.4f}"),) * (hit is not None),
        *((f"server.{k}", v) for k, v in history.server),
    )
    meta = TraceMeta(source=history.source, format="prometheus", extra=extra)
    return RequestTrace(df=df, meta=meta), report


def trace_from_prometheus(
    url: str, start_s: float, end_s: float, *, step_s: float = 15.0, selector: str = "", seed: int = 0
) -> tuple[RequestTrace, ReconstructionReport, TelemetryHistory]:
    """Read a vLLM fleet's history from the Prometheus at ``url`` and rebuild its trace (the one entry the
    CLI, the report and the dashboard share).

    Raises:
        InputError: a selector that is not label matchers, an empty range, no vLLM series in it.
        PromQueryError: Prometheus unreachable or a query refused.
    """
    from planner.live.history import read_history
    from planner.live.promql import PromClient

    if selector and not (selector.startswith("{") and selector.endswith("}")):
        raise InputError(
            f"selector {selector!r} is not PromQL label matchers",
            field="--selector",
            expected='{label="value",...}',
        )
    history = read_history(PromClient(url, timeout_s=30.0), selector, start_s, end_s, step_s)
    trace, report = reconstruct(history, seed=seed)
    return trace, report, history

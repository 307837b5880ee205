"""Synthetic request traces: seeded arrival processes, length models, tenants and prefix hashes.

Why synthesize at all: real traces are few and fixed, while a capacity planner has to answer "what if the
load doubles, turns burstier, or follows a daily cycle". Every knob here is a parameter that published trace
studies report (mean rate, CV of inter-arrival times, length mean/median/p99, peak-to-mean), so a synthetic
trace can be shaped on published statistics without shipping anyone's data.

The core is :func:`synthesize` over the frozen :class:`SynthSpec`; :class:`SynthConfig` is the pydantic model
for YAML files and the CLI (unknown keys rejected, errors name the key path), converted with
:meth:`SynthConfig.to_spec`.

Arrival processes (all in seconds, first arrival re-based at 0):

- Poisson with rate ``r``: exponential gaps with mean ``1/r`` (CV 1).
- Gamma renewal with rate ``r`` and CV ``c``: shape ``k = 1/c**2``, scale ``1/(r k)``.
- Weibull renewal with rate ``r`` and CV ``c``: the shape ``k`` solves
  ``Gamma(1+2/k)/Gamma(1+1/k)**2 - 1 = c**2`` (bisection; the left side falls monotonically in ``k``),
  scale ``1/(r Gamma(1+1/k))``.
- MMPP: a 2-state Markov-modulated Poisson process; state ``i`` emits at ``rates[i]`` and lasts an
  exponential time with mean ``mean_sojourn_s[i]``; the first state is drawn from the stationary law.

Diurnal (or any periodic) modulation uses time rescaling: the base process runs in "operational time"
``tau`` and each arrival is mapped to ``t = Lambda^-1(tau)`` with ``Lambda(t) = integral_0^t m(u) du`` and a
modulation ``m`` of mean 1 per period. Unlike thinning, this keeps the renewal structure (and thus the CV)
of the base process in operational time while the rate follows ``rate * m(t)``.

Prefix hashes (optional): each tenant owns a few "system prompts" of a drawn length; a request of that
tenant starts with one of them, so its leading full blocks share ids with every other request that used the
same system prompt; the remaining blocks get fresh ids. Ids are small sequential integers (identity only, as
in the Mooncake trace), one per ``block_size`` tokens, ``ceil(input_tokens / block_size)`` per request.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traces.errors import InputError
from traces.load import load_trace
from traces.readers.canonical import META_KEY, meta_to_json
from traces.schema import REQUEST_POLARS_SCHEMA, RequestTrace, TraceMeta, canonical_columns

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# --------------------------------------------------------------------------------------------------------
# Arrival processes
# --------------------------------------------------------------------------------------------------------


class ArrivalKind(StrEnum):
    """Names of the arrival processes, as used in YAML and on the command line."""

    POISSON = "poisson"
    GAMMA = "gamma"
    WEIBULL = "weibull"
    MMPP = "mmpp"


@dataclass(frozen=True)
class PoissonArrivals:
    """Poisson arrivals at ``rate`` requests per second (CV of gaps = 1)."""

    rate: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class GammaArrivals:
    """Gamma renewal arrivals: mean ``rate`` req/s, inter-arrival CV ``cv`` (> 1 is burstier than Poisson)."""

    rate: float
    cv: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class WeibullArrivals:
    """Weibull renewal arrivals: mean ``rate`` req/s, inter-arrival CV ``cv`` (shape solved from the CV)."""

    rate: float
    cv: float

    @property
    def mean_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class MMPPArrivals:
    """Two-state Markov-modulated Poisson arrivals, the textbook model of on/off bursts.

    Attributes:
        rates: Poisson rate (req/s) in state 0 and in state 1.
        mean_sojourn_s: mean time (s) spent in state 0 and in state 1 before switching.
    """

    rates: tuple[float, float]
    mean_sojourn_s: tuple[float, float]

    @property
    def mean_rate(self) -> float:
        """Long-run rate: each state's rate weighted by its share of time."""
        (r0, r1), (s0, s1) = self.rates, self.mean_sojourn_s
        return (r0 * s0 + r1 * s1) / (s0 + s1)


Arrivals = PoissonArrivals | GammaArrivals | WeibullArrivals | MMPPArrivals


@dataclass(frozen=True)
class SinusoidModulation:
    """Rate multiplier ``1 + amplitude * sin(2 pi (t + phase_s) / period_s)`` (mean 1 over a period).

    With ``phase_s = -period_s / 4`` the rate starts at its minimum and peaks half a period later.
    """

    amplitude: float
    period_s: float = 86_400.0
    phase_s: float = 0.0


@dataclass(frozen=True)
class ProfileModulation:
    """Piecewise-constant rate multiplier from ``levels`` spread evenly over ``period_s``.

    ``levels`` are relative (24 hourly values for a daily profile, say) and are normalized to mean 1.
    ``offset_s`` is where in the profile the trace starts (e.g. ``9 * 3600`` to start at 09:00).
    """

    levels: tuple[float, ...]
    period_s: float = 86_400.0
    offset_s: float = 0.0


Modulation = SinusoidModulation | ProfileModulation


# --------------------------------------------------------------------------------------------------------
# Lengths
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LognormalLengths:
    """Token lengths ``round(exp(N(mu, sigma)))`` clipped to ``[min_tokens, max_tokens]``."""

    mu: float
    sigma: float
    max_tokens: int
    min_tokens: int = 1

    @classmethod
    def from_mean_median(
        cls, mean: float, median: float, *, max_tokens: int, min_tokens: int = 1
    ) -> LognormalLengths:
        """The lognormal with this mean and median: ``mu = ln(median)``, ``sigma = sqrt(2 ln(mean/median))``.

        Args:
            mean: mean length in tokens (must be >= median: a lognormal is right-skewed).
            median: median length in tokens.
            max_tokens: upper clip.
            min_tokens: lower clip.

        Raises:
            InputError: mean < median or non-positive values.

        >>> d = LognormalLengths.from_mean_median(200.0, 100.0, max_tokens=4096)
        >>> round(d.sigma, 4)
        1.1774
        """
        if not (median > 0 and mean >= median):
            raise InputError(
                f"cannot fit a lognormal to mean {mean} and median {median}",
                field="mean",
                expected="mean >= median > 0",
            )
        return cls(
            mu=math.log(median),
            sigma=math.sqrt(2.0 * math.log(mean / median)),
            max_tokens=max_tokens,
            min_tokens=min_tokens,
        )


@dataclass(frozen=True)
class QuantileLengths:
    """Lengths from a quantile function that is linear in log-length between knots ``(q, tokens)``.

    Why: real length distributions are rarely lognormal (Azure conv 2023 output: median 129, p99 601 but
    mean 211); with knots one can match several published statistics at once. Knots must start at
    ``q = 0`` and end at ``q = 1`` with increasing ``q`` and non-decreasing, positive token values.
    """

    knots: tuple[tuple[float, float], ...]

    @property
    def mean(self) -> float:
        """Exact mean of the continuous distribution (before rounding to integers)."""
        return _loglinear_mean(self.knots)

    @classmethod
    def fit(
        cls, *, mean: float, median: float, p99: float, min_tokens: float, max_tokens: float
    ) -> QuantileLengths:
        """Knots through ``(0, min)``, ``(0.5, median)``, ``(0.75, v)``, ``(0.99, p99)``, ``(1, max)``.

        ``v`` is solved by bisection so that the mean matches (the mean rises monotonically with ``v``).

        Args:
            mean: target mean in tokens.
            median: target median.
            p99: target 99th percentile.
            min_tokens: value at quantile 0 (shortest request).
            max_tokens: value at quantile 1 (longest request).

        Raises:
            InputError: the statistics are out of order or no ``v`` in ``[median, p99]`` reaches the mean.

        >>> d = QuantileLengths.fit(mean=211, median=129, p99=601, min_tokens=4, max_tokens=1024)
        >>> round(d.mean, 3)
        211.0
        """
        if not (0 < min_tokens <= median <= p99 <= max_tokens):
            raise InputError(
                f"length statistics out of order: min {min_tokens}, median {median}, p99 {p99}, "
                f"max {max_tokens}",
                field="median",
                expected="0 < min <= median <= p99 <= max",
            )

        def knots_for(v: float) -> tuple[tuple[float, float], ...]:
            return ((0.0, min_tokens), (0.5, median), (0.75, v), (0.99, p99), (1.0, max_tokens))

        lo, hi = float(median), float(p99)
        if not (_loglinear_mean(knots_for(lo)) <= mean <= _loglinear_mean(knots_for(hi))):
            raise InputError(
                f"no quantile knots reach mean {mean} with median {median}, p99 {p99}, "
                f"range [{min_tokens}, {max_tokens}]",
                field="mean",
                expected=(
                    f"a mean between {_loglinear_mean(knots_for(lo)):.1f} and "
                    f"{_loglinear_mean(knots_for(hi)):.1f}"
                ),
            )
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if _loglinear_mean(knots_for(mid)) < mean:
                lo = mid
            else:
                hi = mid
        return cls(knots=knots_for(0.5 * (lo + hi)))


def _loglinear_mean(knots: tuple[tuple[float, float], ...]) -> float:
    """Mean of a quantile function that is linear in log-value between knots (closed form per segment)."""
    total = 0.0
    for (q0, a), (q1, b) in itertools.pairwise(knots):
        width = q1 - q0
        total += width * a if math.isclose(a, b) else width * (b - a) / math.log(b / a)
    return total


LengthDist = LognormalLengths | QuantileLengths


@dataclass(frozen=True)
class IndependentLengths:
    """Input and output lengths drawn independently from their own distributions."""

    input: LengthDist
    output: LengthDist


@dataclass(frozen=True)
class EmpiricalLengths:
    """(input, output) pairs resampled jointly, with replacement, from a given trace.

    Joint resampling keeps the correlation between prompt and answer lengths that the source has.
    """

    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    @classmethod
    def from_trace(cls, trace: RequestTrace) -> EmpiricalLengths:
        """The length pairs of ``trace``.

        Raises:
            InputError: the trace has no requests.
        """
        if trace.num_requests == 0:
            raise InputError("cannot resample lengths from an empty trace", path=trace.meta.source)
        return cls(
            input_tokens=tuple(int(x) for x in trace.df["input_tokens"].to_list()),
            output_tokens=tuple(int(x) for x in trace.df["output_tokens"].to_list()),
        )


Lengths = IndependentLengths | EmpiricalLengths


# --------------------------------------------------------------------------------------------------------
# Tenants and prefixes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantSpec:
    """Tenants with Zipf-distributed shares, each owning shared system prompts.

    Attributes:
        count: number of tenants (named ``tenant-00``, ``tenant-01``...).
        zipf_s: share of tenant ``i`` is proportional to ``1 / (i + 1) ** zipf_s`` (0 = equal shares).
        prompts_per_tenant: distinct system prompts per tenant, picked uniformly per request.
        prompt_tokens: (min, max) length of a system prompt, drawn uniformly per prompt.
        block_size: tokens per prefix-hash block; ``None`` writes the tenant column but no ``prefix_hashes``.
    """

    count: int
    zipf_s: float = 1.0
    prompts_per_tenant: int = 2
    prompt_tokens: tuple[int, int] = (200, 1000)
    block_size: int | None = 16


# --------------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSpec:
    """Everything that defines a synthetic trace; equal specs give identical traces.

    Attributes:
        arrivals: the base arrival process.
        lengths: how input/output token counts are drawn.
        duration_s: arrivals are generated on ``[0, duration_s)``.
        seed: seed of the ``numpy.random.Generator``; arrivals, lengths and tenants use independent
            child streams, so changing the length model does not move the arrivals.
        modulation: optional periodic rate multiplier (time rescaling).
        tenants: optional tenants and prefix hashes.
        model: optional value of the ``model`` column.
        name: ``TraceMeta.source`` of the result.
    """

    arrivals: Arrivals
    lengths: Lengths
    duration_s: float
    seed: int = 0
    modulation: Modulation | None = None
    tenants: TenantSpec | None = None
    model: str | None = None
    name: str = "synthetic"


def synthesize(spec: SynthSpec) -> RequestTrace:
    """Generate a request trace in the canonical schema from ``spec``.

    Args:
        spec: the trace to generate.

    Returns:
        A :class:`RequestTrace` sorted by ``arrival_s`` (first at 0), ``TraceMeta.format == "synthetic"``.

    Raises:
        InputError: a parameter is out of range (named in the message).

    >>> spec = SynthSpec(arrivals=GammaArrivals(rate=10.0, cv=2.0),
    ...                  lengths=IndependentLengths(LognormalLengths(6.0, 0.5, 4096),
    ...                                             LognormalLengths(4.0, 0.8, 1024)),
    ...                  duration_s=60.0, seed=1)
    >>> t = synthesize(spec)
    >>> t.df.columns
    ['arrival_s', 'input_tokens', 'output_tokens']
    >>> 400 < t.num_requests < 800
    True
    """
    _validate(spec)
    rng_arrivals, rng_lengths, rng_tenants = np.random.default_rng(spec.seed).spawn(3)
    arrivals = _arrivals(rng_arrivals, spec.arrivals, spec.modulation, spec.duration_s)
    n = arrivals.size
    inp, out = _lengths(rng_lengths, spec.lengths, n)
    columns: dict[str, Any] = {
        "arrival_s": pl.Series("arrival_s", arrivals, dtype=pl.Float64),
        "input_tokens": pl.Series("input_tokens", inp, dtype=pl.Int32),
        "output_tokens": pl.Series("output_tokens", out, dtype=pl.Int32),
    }
    if spec.model is not None:
        columns["model"] = pl.Series("model", [spec.model] * n, dtype=pl.String)
    block_size: int | None = None
    if spec.tenants is not None:
        tenant_names, hashes = _tenants(rng_tenants, spec.tenants, inp)
        columns["tenant"] = tenant_names
        if hashes is not None:
            columns["prefix_hashes"] = hashes
            block_size = spec.tenants.block_size
    df = pl.DataFrame(columns)
    df = df.select(canonical_columns(df)).cast({c: REQUEST_POLARS_SCHEMA[c] for c in df.columns})
    meta = TraceMeta(
        source=spec.name,
        format="synthetic",
        block_size=block_size,
        extra=(("seed", str(spec.seed)), ("arrivals", type(spec.arrivals).__name__)),
    )
    return RequestTrace(df=df, meta=meta)


def _validate(spec: SynthSpec) -> None:
    """Reject out-of-range parameters with the parameter's name (the pydantic edge checks most too)."""

    def need(ok: bool, field: str, expected: str, value: object) -> None:
        if not ok:
            raise InputError(f"bad value {value!r}", field=field, expected=expected)

    duration = spec.duration_s
    need(math.isfinite(duration) and duration > 0, "duration_s", "a number > 0", duration)
    a = spec.arrivals
    if isinstance(a, MMPPArrivals):
        need(
            all(r >= 0 for r in a.rates) and max(a.rates) > 0,
            "arrival.mmpp.rates",
            "rates >= 0, one > 0",
            a.rates,
        )
        need(
            all(s > 0 for s in a.mean_sojourn_s),
            "arrival.mmpp.mean_sojourn_s",
            "numbers > 0",
            a.mean_sojourn_s,
        )
        switches = 2.0 * duration / sum(a.mean_sojourn_s) if all(s > 0 for s in a.mean_sojourn_s) else 0.0
        need(
            switches <= 5e7,
            "arrival.mmpp.mean_sojourn_s",
            "at most 5e7 state changes over the duration",
            a.mean_sojourn_s,
        )
    else:
        need(math.isfinite(a.rate) and a.rate > 0, "arrival.rate", "a number > 0", a.rate)
    if isinstance(a, GammaArrivals | WeibullArrivals):
        need(math.isfinite(a.cv) and a.cv > 0, "arrival.cv", "a number > 0", a.cv)
    if isinstance(a, WeibullArrivals):
        need(a.cv <= 50.0, "arrival.cv", "a Weibull CV <= 50", a.cv)
    expected_n = a.mean_rate * duration
    need(expected_n <= 200_000_000, "duration_s", "rate * duration <= 2e8 requests", expected_n)
    m = spec.modulation
    if isinstance(m, SinusoidModulation):
        need(0 <= m.amplitude < 1, "diurnal.amplitude", "0 <= amplitude < 1", m.amplitude)
        need(m.period_s > 0, "diurnal.period_s", "a number > 0", m.period_s)
    elif isinstance(m, ProfileModulation):
        need(
            len(m.levels) > 0 and all(x > 0 and math.isfinite(x) for x in m.levels),
            "diurnal.profile",
            "a non-empty list of numbers > 0",
            m.levels,
        )
        need(m.period_s > 0, "diurnal.period_s", "a number > 0", m.period_s)
    if isinstance(spec.lengths, IndependentLengths):
        for name, d in (("input", spec.lengths.input), ("output", spec.lengths.output)):
            _validate_dist(d, f"lengths.{name}", need)
    else:
        need(
            len(spec.lengths.input_tokens) == len(spec.lengths.output_tokens) > 0,
            "lengths.resample",
            "equal, non-empty input and output lists",
            len(spec.lengths.input_tokens),
        )
    t = spec.tenants
    if t is not None:
        need(t.count >= 1, "tenants.count", "an integer >= 1", t.count)
        need(t.zipf_s >= 0, "tenants.zipf_s", "a number >= 0", t.zipf_s)
        need(t.prompts_per_tenant >= 1, "tenants.prompts_per_tenant", "an integer >= 1", t.prompts_per_tenant)
        need(
            0 <= t.prompt_tokens[0] <= t.prompt_tokens[1],
            "tenants.prompt_tokens",
            "0 <= min <= max",
            t.prompt_tokens,
        )
        need(t.block_size is None or t.block_size >= 1, "tenants.block_size", "an integer >= 1", t.block_size)


def _validate_dist(d: LengthDist, field: str, need: Callable[[bool, str, str, object], None]) -> None:
    if isinstance(d, LognormalLengths):
        need(d.sigma >= 0 and math.isfinite(d.mu), f"{field}.sigma", "sigma >= 0 and a finite mu", d.sigma)
        need(
            1 <= d.min_tokens <= d.max_tokens, f"{field}.max", "1 <= min <= max", (d.min_tokens, d.max_tokens)
        )
    else:
        qs = [q for q, _ in d.knots]
        vs = [v for _, v in d.knots]
        ok = (
            len(d.knots) >= 2
            and qs[0] == 0.0
            and qs[-1] == 1.0
            and all(b > a for a, b in itertools.pairwise(qs))
            and all(v > 0 for v in vs)
            and all(b >= a for a, b in itertools.pairwise(vs))
        )
        need(ok, f"{field}.knots", "knots from q=0 to q=1, q increasing, tokens > 0 non-decreasing", d.knots)


# --------------------------------------------------------------------------------------------------------
# Arrival generation
# --------------------------------------------------------------------------------------------------------


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape ``k`` whose inter-arrival CV is ``cv`` (bisection on ``log k``).

    >>> round(weibull_shape_for_cv(1.0), 6)  # the exponential distribution
    1.0
    """
    if not (0 < cv <= 50):
        raise InputError(f"bad Weibull CV {cv}", field="arrival.cv", expected="0 < cv <= 50")

    def cv_of(k: float) -> float:
        return math.sqrt(math.expm1(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)))

    lo, hi = math.log(0.05), math.log(1000.0)  # CV(0.05) ~ 1.4e7, CV(1000) ~ 1.3e-3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if cv_of(math.exp(mid)) > cv:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _renewal(draw: Callable[[int], FloatArray], rate: float, horizon: float) -> FloatArray:
    """Event times ``0, g1, g1+g2, ...`` below ``horizon`` for i.i.d. gaps of mean ``1/rate``."""
    chunks: list[FloatArray] = [np.zeros(1)]
    t = 0.0
    while True:
        k = int((horizon - t) * rate * 1.05) + 64
        times = t + np.cumsum(draw(k))
        chunks.append(times[times < horizon])
        if times[-1] >= horizon:
            break
        t = float(times[-1])
    return np.concatenate(chunks)


def _mmpp(rng: np.random.Generator, a: MMPPArrivals, horizon: float) -> FloatArray:
    """MMPP event times on ``[0, horizon)``: alternate exponential sojourns, Poisson counts inside each."""
    (s0, s1), rates = a.mean_sojourn_s, np.asarray(a.rates, dtype=np.float64)
    state = int(rng.random() < s1 / (s0 + s1))  # stationary start
    starts: list[FloatArray] = []
    states: list[IntArray] = []
    t = 0.0
    while t < horizon:
        k = 2 * int(horizon / (s0 + s1)) + 8
        seq = (state + np.arange(k)) % 2
        lengths = rng.exponential(np.where(seq == 0, s0, s1))
        ends = t + np.cumsum(lengths)
        seg_starts = np.concatenate([[t], ends[:-1]])
        keep = seg_starts < horizon
        starts.append(seg_starts[keep])
        states.append(seq[keep])
        t = float(ends[-1])
        state = int((seq[-1] + 1) % 2)
    seg_start = np.concatenate(starts)
    seg_state = np.concatenate(states)
    seg_end = np.minimum(np.append(seg_start[1:], horizon), horizon)
    counts = rng.poisson(rates[seg_state] * (seg_end - seg_start))
    base = np.repeat(seg_start, counts)
    width = np.repeat(seg_end - seg_start, counts)
    return np.sort(base + rng.random(base.size) * width)


def _base_arrivals(rng: np.random.Generator, a: Arrivals, horizon: float) -> FloatArray:
    if isinstance(a, PoissonArrivals):
        return _renewal(lambda k: rng.exponential(1.0 / a.rate, k), a.rate, horizon)
    if isinstance(a, GammaArrivals):
        shape = 1.0 / (a.cv * a.cv)
        scale = 1.0 / (a.rate * shape)
        return _renewal(lambda k: rng.gamma(shape, scale, k), a.rate, horizon)
    if isinstance(a, WeibullArrivals):
        k_shape = weibull_shape_for_cv(a.cv)
        scale = 1.0 / (a.rate * math.gamma(1.0 + 1.0 / k_shape))
        return _renewal(lambda k: scale * rng.weibull(k_shape, k), a.rate, horizon)
    return _mmpp(rng, a, horizon)


def _cumulative_intensity(m: Modulation, duration: float) -> tuple[FloatArray, FloatArray]:
    """``(t, Lambda(t))`` on a grid of ``[0, duration]``, fine enough to interpolate the inverse linearly."""
    if isinstance(m, SinusoidModulation):
        steps = min(2_000_000, max(2, math.ceil(duration / (m.period_s / 4000.0))))
        t = np.linspace(0.0, duration, steps + 1)
        w = 2.0 * math.pi / m.period_s
        lam = t + m.amplitude / w * (np.cos(w * m.phase_s) - np.cos(w * (t + m.phase_s)))
        return t, lam
    levels = np.asarray(m.levels, dtype=np.float64)
    levels = levels / levels.mean()
    seg = m.period_s / levels.size
    # Breakpoints where the level changes, in trace time, plus both ends: Lambda is exactly linear between.
    first = math.floor(m.offset_s / seg)
    last = math.ceil((m.offset_s + duration) / seg)
    edges = np.arange(first, last + 1, dtype=np.float64) * seg - m.offset_s
    t = np.unique(np.clip(np.concatenate([[0.0], edges, [duration]]), 0.0, duration))
    idx = np.floor((t[:-1] + m.offset_s) / seg + 1e-9).astype(np.int64) % levels.size
    lam = np.concatenate([[0.0], np.cumsum(levels[idx] * np.diff(t))])
    return t, lam


def _arrivals(rng: np.random.Generator, a: Arrivals, m: Modulation | None, duration: float) -> FloatArray:
    if m is None:
        times = _base_arrivals(rng, a, duration)
    else:
        grid_t, grid_lam = _cumulative_intensity(m, duration)
        tau = _base_arrivals(rng, a, float(grid_lam[-1]))
        times = np.interp(tau, grid_lam, grid_t)
    times = times[times < duration]
    if times.size:
        times = times - times[0]
    return times


# --------------------------------------------------------------------------------------------------------
# Lengths, tenants, prefixes
# --------------------------------------------------------------------------------------------------------


def _draw_dist(rng: np.random.Generator, d: LengthDist, n: int) -> IntArray:
    if isinstance(d, LognormalLengths):
        x = rng.lognormal(d.mu, d.sigma, n)
        lo, hi = d.min_tokens, d.max_tokens
    else:
        qs = np.array([q for q, _ in d.knots])
        logv = np.log(np.array([v for _, v in d.knots]))
        x = np.exp(np.interp(rng.random(n), qs, logv))
        lo, hi = 1, 2**31 - 1
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def _lengths(rng: np.random.Generator, lengths: Lengths, n: int) -> tuple[IntArray, IntArray]:
    if isinstance(lengths, EmpiricalLengths):
        idx = rng.integers(0, len(lengths.input_tokens), n)
        inp = np.asarray(lengths.input_tokens, dtype=np.int64)[idx]
        out = np.asarray(lengths.output_tokens, dtype=np.int64)[idx]
        return inp, out
    rng_in, rng_out = rng.spawn(2)
    return _draw_dist(rng_in, lengths.input, n), _draw_dist(rng_out, lengths.output, n)


def _tenants(
    rng: np.random.Generator, spec: TenantSpec, input_tokens: IntArray
) -> tuple[pl.Series, pl.Series | None]:
    """Tenant names and (when ``block_size`` is set) prefix-hash lists for each request."""
    n = input_tokens.size
    weights = 1.0 / np.arange(1, spec.count + 1, dtype=np.float64) ** spec.zipf_s
    tenant = rng.choice(spec.count, size=n, p=weights / weights.sum())
    prompt = rng.integers(0, spec.prompts_per_tenant, n)
    lo, hi = spec.prompt_tokens
    prompt_len = rng.integers(lo, hi + 1, (spec.count, spec.prompts_per_tenant))
    names = pl.Series("tenant", [f"tenant-{i:02d}" for i in range(spec.count)], dtype=pl.String)
    tenant_col = names.gather(tenant).alias("tenant")
    if spec.block_size is None:
        return tenant_col, None
    bs = spec.block_size
    # Ids 0..S-1 are the shared system-prompt blocks, one run per (tenant, prompt); fresh ids follow.
    shared_blocks = (prompt_len // bs).ravel()
    shared_base = np.concatenate([[0], np.cumsum(shared_blocks)[:-1]])
    num_shared = int(shared_blocks.sum())
    key = tenant * spec.prompts_per_tenant + prompt
    req_shared = np.minimum(prompt_len.ravel()[key], input_tokens) // bs
    req_blocks = -(-input_tokens // bs)
    offsets = np.concatenate([[0], np.cumsum(req_blocks)])
    total = int(offsets[-1])
    owner = np.repeat(np.arange(n), req_blocks)
    pos = np.arange(total) - offsets[:-1][owner]
    is_shared = pos < req_shared[owner]
    ids = np.empty(total, dtype=np.uint64)
    ids[is_shared] = (shared_base[key][owner] + pos)[is_shared].astype(np.uint64)
    ids[~is_shared] = (num_shared + np.arange(int((~is_shared).sum()))).astype(np.uint64)
    arr = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(ids, pa.uint64()))
    hashes = pl.Series("prefix_hashes", arr)
    return tenant_col, hashes


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def write_parquet(trace: RequestTrace, path: str | Path, *, compression_level: int = 3) -> Path:
    """Write ``trace`` as canonical Parquet, byte-for-byte reproducible for given library versions.

    The :class:`TraceMeta` travels in the file's key-value metadata as :mod:`traces.readers.canonical`
    stores it, so ``load_trace`` (format ``canonical``) restores ``block_size`` and provenance. Encoding
    options and the zstd level are pinned, so equal traces give equal bytes.

    Args:
        trace: the trace to write.
        path: output file (parent folders are created).
        compression_level: zstd level (3 is fast; the bundled default trace uses 9).

    Returns:
        The path written.

    Raises:
        InputError: the file cannot be written.
    """
    out = Path(path)
    table = trace.to_arrow()
    table = table.replace_schema_metadata({META_KEY.encode(): meta_to_json(trace.meta).encode()})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table,
            out,
            compression="zstd",
            compression_level=compression_level,
            use_dictionary=["tenant", "model"],
            write_statistics=True,
            row_group_size=1 << 20,
        )
    except OSError as exc:
        raise InputError(f"cannot write Parquet: {exc.strerror or exc}", path=str(out)) from exc
    return out


# --------------------------------------------------------------------------------------------------------
# Pydantic edge: YAML files and the CLI
# --------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MMPPConfig(_Model):
    """Two-state MMPP: ``rates`` (req/s) and ``mean_sojourn_s`` (s) for state 0 and state 1."""

    rates: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]
    mean_sojourn_s: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]

    @model_validator(mode="after")
    def _one_positive(self) -> MMPPConfig:
        if max(self.rates) <= 0:
            raise ValueError("at least one MMPP rate must be > 0")
        return self


class ArrivalConfig(_Model):
    """Arrival process: ``kind`` with ``rate`` (and ``cv`` for gamma/weibull) or an ``mmpp`` block."""

    kind: ArrivalKind = ArrivalKind.POISSON
    rate: Annotated[float, Field(gt=0, description="mean requests per second")] | None = None
    cv: Annotated[float, Field(gt=0, le=50, description="CV of inter-arrival times")] | None = None
    mmpp: MMPPConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ArrivalConfig:
        if self.kind is ArrivalKind.MMPP:
            if self.mmpp is None:
                raise ValueError("kind mmpp needs an mmpp block (rates, mean_sojourn_s)")
            if self.rate is not None or self.cv is not None:
                raise ValueError("kind mmpp takes its rates from the mmpp block; drop rate and cv")
            return self
        if self.mmpp is not None:
            raise ValueError(f"an mmpp block needs kind mmpp, not {self.kind.value}")
        if self.rate is None:
            raise ValueError(f"kind {self.kind.value} needs a rate")
        if self.kind is ArrivalKind.POISSON and self.cv not in (None, 1.0):
            raise ValueError("poisson arrivals have CV 1; use kind gamma or weibull for another cv")
        if self.kind in (ArrivalKind.GAMMA, ArrivalKind.WEIBULL) and self.cv is None:
            raise ValueError(f"kind {self.kind.value} needs a cv")
        return self

    def to_arrivals(self) -> Arrivals:
        if self.kind is ArrivalKind.MMPP:
            assert self.mmpp is not None
            return MMPPArrivals(rates=self.mmpp.rates, mean_sojourn_s=self.mmpp.mean_sojourn_s)
        assert self.rate is not None
        if self.kind is ArrivalKind.POISSON:
            return PoissonArrivals(rate=self.rate)
        assert self.cv is not None
        if self.kind is ArrivalKind.GAMMA:
            return GammaArrivals(rate=self.rate, cv=self.cv)
        return WeibullArrivals(rate=self.rate, cv=self.cv)


class DiurnalConfig(_Model):
    """Periodic modulation: a sinusoid (``amplitude``) or a relative ``profile`` (e.g. 24 hourly levels)."""

    amplitude: Annotated[float, Field(ge=0, lt=1)] | None = None
    profile: list[Annotated[float, Field(gt=0)]] | None = Field(default=None, min_length=1)
    period_s: Annotated[float, Field(gt=0)] = 86_400.0
    phase_s: float = 0.0

    @model_validator(mode="after")
    def _one_of(self) -> DiurnalConfig:
        if (self.amplitude is None) == (self.profile is None):
            raise ValueError("give exactly one of amplitude (sinusoid) or profile (levels)")
        return self

    def to_modulation(self) -> Modulation:
        if self.profile is not None:
            return ProfileModulation(
                levels=tuple(self.profile), period_s=self.period_s, offset_s=self.phase_s
            )
        assert self.amplitude is not None
        return SinusoidModulation(amplitude=self.amplitude, period_s=self.period_s, phase_s=self.phase_s)


class LognormalConfig(_Model):
    """Lognormal lengths from ``mean`` and ``median`` or from ``mu`` and ``sigma``, clipped to [min, max]."""

    dist: Literal["lognormal"] = "lognormal"
    mean: Annotated[float, Field(gt=0)] | None = None
    median: Annotated[float, Field(gt=0)] | None = None
    mu: float | None = None
    sigma: Annotated[float, Field(ge=0)] | None = None
    min: Annotated[int, Field(ge=1)] = 1
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _params(self) -> LognormalConfig:
        by_moments = self.mean is not None and self.median is not None
        by_params = self.mu is not None and self.sigma is not None
        if by_moments == by_params or (by_moments and (self.mu is not None or self.sigma is not None)):
            raise ValueError("give either mean and median, or mu and sigma")
        if by_moments and self.mean is not None and self.median is not None and self.mean < self.median:
            raise ValueError("a lognormal needs mean >= median")
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self

    def to_dist(self) -> LengthDist:
        if self.mean is not None and self.median is not None:
            return LognormalLengths.from_mean_median(
                self.mean, self.median, max_tokens=self.max, min_tokens=self.min
            )
        assert self.mu is not None and self.sigma is not None
        return LognormalLengths(mu=self.mu, sigma=self.sigma, max_tokens=self.max, min_tokens=self.min)


class QuantileConfig(_Model):
    """Quantile-fitted lengths matching ``mean``, ``median`` and ``p99`` within [min, max]."""

    dist: Literal["quantile"]
    mean: Annotated[float, Field(gt=0)]
    median: Annotated[float, Field(gt=0)]
    p99: Annotated[float, Field(gt=0)]
    min: Annotated[float, Field(gt=0)] = 1.0
    max: Annotated[float, Field(gt=0)]

    def to_dist(self) -> LengthDist:
        return QuantileLengths.fit(
            mean=self.mean, median=self.median, p99=self.p99, min_tokens=self.min, max_tokens=self.max
        )


DistConfig = Annotated[LognormalConfig | QuantileConfig, Field(discriminator="dist")]


class ResampleConfig(_Model):
    """Resample (input, output) pairs jointly from a trace file (any format ``load_trace`` reads)."""

    path: str
    format: str | None = None


class LengthsConfig(_Model):
    """Either ``input`` and ``output`` distributions, or ``resample`` from a trace."""

    input: DistConfig | None = None
    output: DistConfig | None = None
    resample: ResampleConfig | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LengthsConfig:
        independent = self.input is not None and self.output is not None
        if independent == (self.resample is not None) or (
            self.resample is not None and (self.input is not None or self.output is not None)
        ):
            raise ValueError("give input and output distributions, or resample, not both")
        return self

    def to_lengths(self, base_dir: Path) -> Lengths:
        if self.resample is not None:
            path = Path(self.resample.path)
            if not path.is_absolute():
                path = base_dir / path
            return EmpiricalLengths.from_trace(load_trace(path, format=self.resample.format))
        assert self.input is not None and self.output is not None
        return IndependentLengths(input=self.input.to_dist(), output=self.output.to_dist())


class TenantConfig(_Model):
    """Tenants with shared system prompts; see :class:`TenantSpec`."""

    count: Annotated[int, Field(ge=1)]
    zipf_s: Annotated[float, Field(ge=0)] = 1.0
    prompts_per_tenant: Annotated[int, Field(ge=1)] = 2
    prompt_tokens: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = (200, 1000)
    block_size: Annotated[int, Field(ge=1)] | None = 16

    @model_validator(mode="after")
    def _range(self) -> TenantConfig:
        if self.prompt_tokens[1] < self.prompt_tokens[0]:
            raise ValueError("prompt_tokens is [min, max] with min <= max")
        return self

    def to_spec(self) -> TenantSpec:
        return TenantSpec(
            count=self.count,
            zipf_s=self.zipf_s,
            prompts_per_tenant=self.prompts_per_tenant,
            prompt_tokens=self.prompt_tokens,
            block_size=self.block_size,
        )


class SynthConfig(_Model):
    """A synthetic trace as written in YAML (or assembled from CLI flags); see :class:`SynthSpec`.

    Example YAML::

        duration_s: 3600
        seed: 7
        arrival: {kind: gamma, rate: 5.5, cv: 1.5}
        diurnal: {amplitude: 0.3, period_s: 3600, phase_s: -900}
        lengths:
          input: {dist: lognormal, mean: 1155, median: 1020, max: 16384}
          output: {dist: quantile, mean: 211, median: 129, p99: 601, min: 4, max: 1024}
        tenants: {count: 8, block_size: 16}
    """

    duration_s: Annotated[float, Field(gt=0)]
    seed: Annotated[int, Field(ge=0)] = 0
    arrival: ArrivalConfig
    diurnal: DiurnalConfig | None = None
    lengths: LengthsConfig | None = None
    tenants: TenantConfig | None = None
    model: str | None = None
    name: str = "synthetic"

    def to_spec(self, *, base_dir: Path | None = None, default_lengths: Lengths | None = None) -> SynthSpec:
        """The frozen spec; relative ``resample`` paths resolve against ``base_dir``.

        Raises:
            InputError: ``lengths`` is missing and no ``default_lengths`` is given.
        """
        if self.lengths is not None:
            lengths = self.lengths.to_lengths(base_dir or Path.cwd())
        elif default_lengths is not None:
            lengths = default_lengths
        else:
            raise InputError("no length model", field="lengths", expected="input/output or resample")
        return SynthSpec(
            arrivals=self.arrival.to_arrivals(),
            lengths=lengths,
            duration_s=self.duration_s,
            seed=self.seed,
            modulation=self.diurnal.to_modulation() if self.diurnal is not None else None,
            tenants=self.tenants.to_spec() if self.tenants is not None else None,
            model=self.model,
            name=self.name,
        )


def validation_error(exc: ValidationError, *, path: str | None) -> InputError:
    """One :class:`InputError` naming the key path of a pydantic error, e.g. ``field arrival.cv``.

    The first error's key path becomes ``field``; further errors follow in the message as ``key: msg``.
    """
    located: list[tuple[str, str]] = []
    for err in exc.errors():
        # Discriminated unions add the tag ('lognormal'/'quantile') to the location: not a key of the file.
        loc = ".".join(str(x) for x in err["loc"] if x not in ("lognormal", "quantile"))
        located.append((loc, str(err["msg"]).removeprefix("Value error, ")))
    first_loc, first_msg = located[0] if located else ("", str(exc))
    rest = [f"{loc}: {msg}" if loc else msg for loc, msg in located[1:]]
    return InputError("; ".join([first_msg, *rest]), path=path, field=first_loc or None)


def parse_config(data: Mapping[str, Any], *, source: str | None = None) -> SynthConfig:
    """Validate a mapping (from YAML or flags) into a :class:`SynthConfig`, errors as :class:`InputError`.

    >>> parse_config({"duration_s": 10, "arrival": {"kind": "gamma", "rate": 1}}).arrival.kind
    Traceback (most recent call last):
    ...
    traces.errors.InputError: field arrival: kind gamma needs a cv
    """
    try:
        return SynthConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_error(exc, path=source) from None


def load_spec(path: str | Path, *, default_lengths: Lengths | None = None) -> SynthSpec:
    """Read a YAML synth spec file into a :class:`SynthSpec`.

    Raises:
        InputError: missing file, bad YAML (with its line) or a bad key (with its dotted path).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read spec: {exc.strerror or exc}", path=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=str(p), row=row) from None
    if not isinstance(data, dict):
        raise InputError(
            "a synth spec is a YAML mapping", path=str(p), expected="keys duration_s, arrival, ..."
        )
    config = parse_config(data, source=str(p))
    return config.to_spec(base_dir=p.parent, default_lengths=default_lengths)

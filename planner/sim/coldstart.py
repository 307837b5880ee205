"""Cold starts: the time from "scale up" to "replica serving", one home for every run.

Why a mixture by default: the 7,531 load latencies of ``alibaba/clusterdata`` cluster-trace-v2026-GenAI
(``basemodel_update_latency_anon.csv``, values in ms) are bimodal: a third of the loads take about 3 s
(weights already on the node), the rest 20-50 s (pulled over the network). One lognormal
(:data:`LOGNORMAL_COLD_START`, kept as an option) puts its median at 13.4 s where the data's is 22.7 s,
and its p99 far out. Two components still overshoot p99 by 19 % (the slow mode has a shoulder at about
23 s and a peak at about 39 s); three components (:data:`FITTED_COLD_START`) match median, p90 and p99
within 3 % (``tests/planner/sim/test_coldstart.py`` refits them on the shared data).

Both shapes satisfy :class:`ColdStart` (``sample(rng, n)`` and ``quantile(q)``); :func:`rescaled` moves
either to another median (a larger model loads longer) and keeps its shape; :func:`cold_start_for` is
what the CLI and the dashboard call.

>>> round(LOGNORMAL_COLD_START.median_s, 1)
13.4
>>> round(FITTED_COLD_START.quantile(0.5), 1), round(FITTED_COLD_START.quantile(0.9), 1)
(22.8, 42.5)
>>> round(rescaled(FITTED_COLD_START, 360.0).quantile(0.5))
360
>>> x = FITTED_COLD_START.sample(np.random.default_rng(0), 100_000)
>>> 20.0 < float(np.median(x)) < 25.0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from traces.errors import InputError


class ColdStart(Protocol):
    """What a run needs of a cold-start distribution: draws for the simulator, a quantile for the MPC's
    lead time.

    Why a protocol: the replay only draws times and the MPC only reads a quantile, so the single
    lognormal and the fitted mixture are interchangeable without a common base class.
    """

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times in seconds (the caller owns the seeded generator)."""
        ...

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds."""
        ...


@dataclass(frozen=True)
class LognormalMixture:
    """A mixture of lognormals: ``log(seconds)`` is a Gaussian mixture.

    Attributes:
        weights: component probabilities (sum to 1).
        mu, sigma: per component, parameters of ``log(seconds)``.
        source: where the numbers come from.
    """

    weights: tuple[float, ...]
    mu: tuple[float, ...]
    sigma: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        k = len(self.weights)
        if k == 0 or len(self.mu) != k or len(self.sigma) != k:
            raise InputError("mixture components disagree in number", field="weights/mu/sigma",
                             expected="three tuples of equal, non-zero length")
        if any(w < 0 for w in self.weights) or not math.isclose(sum(self.weights), 1.0, abs_tol=1e-6):
            raise InputError(f"mixture weights {self.weights} do not sum to 1", field="weights",
                             expected="non-negative weights summing to 1")
        if any(s <= 0 for s in self.sigma):
            raise InputError("sigma must be positive", field="sigma", expected="numbers > 0")

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times in seconds (component first, then its lognormal)."""
        comp = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        mu = np.asarray(self.mu)[comp]
        sd = np.asarray(self.sigma)[comp]
        out: NDArray[np.float64] = np.exp(rng.normal(mu, sd))
        return out

    def quantile(self, q: float, *, grid: int = 20_001) -> float:
        """The ``q`` quantile in seconds (numerical inversion of the mixture CDF on a log grid)."""
        lo = min(m - 6 * s for m, s in zip(self.mu, self.sigma, strict=True))
        hi = max(m + 6 * s for m, s in zip(self.mu, self.sigma, strict=True))
        z = np.linspace(lo, hi, grid)
        cdf = np.zeros_like(z)
        for w, m, s in zip(self.weights, self.mu, self.sigma, strict=True):
            cdf += w * 0.5 * (1.0 + _erf((z - m) / (s * math.sqrt(2.0))))
        return float(math.exp(float(np.interp(q, cdf, z))))


def _erf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.special import erf

    out: NDArray[np.float64] = erf(x)
    return out


def fit_lognormal_mixture(seconds: NDArray[np.float64], *, components: int = 3, iterations: int = 2000,
                          source: str = "") -> LognormalMixture:
    """Maximum-likelihood lognormal mixture by EM on ``log(seconds)``.

    Deterministic: components start at evenly spaced quantiles of the log data with a common spread,
    so the same data always give the same fit (no seed needed).

    Args:
        seconds: positive observations.
        components: mixture components.
        iterations: EM iterations (the fit converges well before 2,000 on the Alibaba data).
        source: provenance text stored on the result.

    Raises:
        InputError: fewer positive observations than ``10 * components``.

    >>> rng = np.random.default_rng(1)
    >>> x = np.concatenate([rng.lognormal(1.0, 0.2, 3000), rng.lognormal(3.0, 0.2, 7000)])
    >>> m = fit_lognormal_mixture(x, components=2)
    >>> [round(v, 1) for v in m.mu], [round(w, 1) for w in m.weights]
    ([1.0, 3.0], [0.3, 0.7])
    """
    x = np.log(np.asarray(seconds, dtype=np.float64)[np.asarray(seconds) > 0])
    k = components
    if x.size < 10 * k:
        raise InputError(f"{x.size} positive cold-start times are too few for {k} components",
                         field="seconds", expected=f"at least {10 * k} positive values")
    mu = np.quantile(x, (np.arange(k) + 0.5) / k)
    sd = np.full(k, max(float(x.std()) / k, 1e-3))
    w = np.full(k, 1.0 / k)
    for _ in range(iterations):
        dens = w / (sd * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2)
        g = dens / np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
        nk = np.maximum(g.sum(axis=0), 1e-12)
        w = nk / x.size
        mu = (g * x[:, None]).sum(axis=0) / nk
        sd = np.maximum(np.sqrt((g * (x[:, None] - mu) ** 2).sum(axis=0) / nk), 1e-3)
    order = np.argsort(mu)
    return LognormalMixture(weights=tuple(float(v) for v in w[order] / w.sum()),
                            mu=tuple(float(v) for v in mu[order]), sigma=tuple(float(v) for v in sd[order]),
                            source=source)


ALIBABA_SOURCE = (
    "3-component lognormal mixture, maximum likelihood (EM, fit_lognormal_mixture) on the 7,531 model-load "
    "latencies of alibaba/clusterdata cluster-trace-v2026-GenAI basemodel_update_latency_anon.csv (ms): "
    "data median 22.7 s, p90 42.0 s, p99 51.8 s; mixture 22.8 s, 42.5 s, 50.7 s"
)

FITTED_COLD_START = LognormalMixture(
    weights=(0.36797, 0.24413, 0.38790),
    mu=(1.12069, 3.11671, 3.65954),
    sigma=(0.39703, 0.10495, 0.13739),
    source=ALIBABA_SOURCE,
)
"""The default cold start of every run (replay, autoscaling comparison, dashboard): median 22.8 s,
p90 42.5 s, p99 50.7 s. Only the parameters ship; ``tests/planner/sim/test_coldstart.py`` refits them on
the data."""


@dataclass(frozen=True)
class ColdStartDistribution:
    """Lognormal time from "scale up" to "replica serving", seconds.

    Attributes:
        mu, sigma: parameters of ``log(seconds)``.
        source: where the numbers come from.
    """

    mu: float
    sigma: float
    source: str = ""

    @property
    def median_s(self) -> float:
        return math.exp(self.mu)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds (a planner's lead time: start this early to be ready in time)."""
        from scipy.special import ndtri  # imported here: scipy costs every command's start-up

        return float(math.exp(self.mu + self.sigma * float(ndtri(q))))

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times (the caller owns the seeded generator)."""
        out: NDArray[np.float64] = rng.lognormal(self.mu, self.sigma, n)
        return out

    def with_median(self, median_s: float) -> ColdStartDistribution:
        """The same spread around another median (e.g. a larger model's load time)."""
        return ColdStartDistribution(math.log(median_s), self.sigma,
                                     f"{self.source}; median rescaled to {median_s:g} s")


LOGNORMAL_COLD_START = ColdStartDistribution(
    mu=2.5928,
    sigma=1.1722,
    source=("maximum-likelihood lognormal fitted on the 7,531 model-load latencies of "
            "alibaba/clusterdata cluster-trace-v2026-GenAI basemodel_update_latency_anon.csv (value in ms): "
            "median 13.4 s; the data are bimodal (about 2.6 s and 23 s), so p10/p90 are approximate"),
)
"""The older single lognormal fitted on the same data (an option, ``--cold-start lognormal``): it misplaces
the median, 13.4 s against the data's 22.7 s, because the data are bimodal."""

FROM_ZERO_S: tuple[tuple[float, float], ...] = ((16.06e9, 104.2), (141.2e9, 359.6), (470.0e9, 994.7))
"""``(weight bytes, seconds)``: an LLM replica from zero to its first token, without start-up optimisations,
for Llama-3-8B TP1, Llama-3-70B TP4 and Qwen3-235B-A22B TP8 in bf16 on 8 x H100 (Ray Serve LLM docs,
algorithms-and-numbers.md B9): model load, torch.compile and CUDA graphs. Nearly linear in the
bytes loaded, about 2 s per GB above a fixed 70 s."""


def replica_start_s(weight_bytes: float) -> float:
    """Seconds from asking for a replica to its serving, by the bytes of weights it loads: piecewise linear
    through :data:`FROM_ZERO_S`, extended along its end segments (never below a tenth of the smallest).

    Why weights alone: in the published figures the load and compile times grow with the model while the
    rest is fixed; the planner charges each replica it adds this much of its GPUs' time.

    >>> round(replica_start_s(16.06e9)), round(replica_start_s(70e9)), round(replica_start_s(940e9))
    (104, 214, 1903)
    """
    xs = [float(x) for x, _y in FROM_ZERO_S]
    ys = [float(y) for _x, y in FROM_ZERO_S]
    if weight_bytes <= xs[0]:
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        return max(ys[0] / 10, ys[0] - slope * (xs[0] - weight_bytes))
    if weight_bytes >= xs[-1]:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return ys[-1] + slope * (weight_bytes - xs[-1])
    return float(np.interp(weight_bytes, xs, ys))


class ColdStartShape(StrEnum):
    """Which distribution a run draws cold starts from (CLI ``--cold-start``)."""

    MIXTURE = "mixture"
    LOGNORMAL = "lognormal"


def rescaled(dist: ColdStartDistribution | LognormalMixture, median_s: float) -> ColdStartDistribution | \
        LognormalMixture:
    """``dist`` with its median moved to ``median_s`` and its shape (log-spread, modes) kept.

    Why: the fitted data are model loads of a production cluster; a 70B model at TP4 loads for minutes
    (B9: 360 s from zero), so the CLI shifts the whole distribution in log space rather than inventing a
    new spread.

    Raises:
        InputError: a median that is not positive.
    """
    if not median_s > 0 or not math.isfinite(median_s):
        raise InputError(f"bad cold-start median {median_s}", field="cold_start_median_s",
                         expected="seconds > 0")
    if isinstance(dist, ColdStartDistribution):
        return dist.with_median(median_s)
    shift = math.log(median_s) - math.log(dist.quantile(0.5))
    return LognormalMixture(weights=dist.weights, mu=tuple(m + shift for m in dist.mu), sigma=dist.sigma,
                            source=f"{dist.source}; shifted to median {median_s:g} s")


def cold_start_for(shape: ColdStartShape, *, median_s: float | None = None,
                   sigma: float | None = None) -> ColdStartDistribution | LognormalMixture:
    """The cold start a run uses: the fitted mixture (default) or a lognormal, optionally re-centred.

    Args:
        shape: mixture or single lognormal.
        median_s: move the median here (None: the fitted one).
        sigma: lognormal only: its log-spread (None: the fitted 1.17).

    Raises:
        InputError: a non-positive median or sigma, or a sigma given for the mixture.

    >>> round(cold_start_for(ColdStartShape.LOGNORMAL, median_s=60.0, sigma=0.2).quantile(0.5))
    60
    """
    if sigma is not None and (not sigma > 0 or not math.isfinite(sigma)):
        raise InputError(f"bad sigma {sigma}", field="cold_start_sigma", expected="a number > 0")
    if shape is ColdStartShape.MIXTURE:
        if sigma is not None:
            raise InputError("a sigma applies to the lognormal only", field="cold_start_sigma",
                             expected="--cold-start lognormal, or no sigma")
        return FITTED_COLD_START if median_s is None else rescaled(FITTED_COLD_START, median_s)
    base = LOGNORMAL_COLD_START if sigma is None else ColdStartDistribution(LOGNORMAL_COLD_START.mu, sigma,
                                                                           "lognormal")
    if median_s is None:
        return base
    return ColdStartDistribution(math.log(median_s), base.sigma,
                                 f"lognormal, median {median_s:g} s, sigma {base.sigma:g}")

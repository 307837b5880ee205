"""Cold-start times: a lognormal mixture fitted on Alibaba's GenAI model-load latencies.

Why a mixture: the 7,531 load latencies of ``alibaba/clusterdata`` cluster-trace-v2026-GenAI
(``basemodel_update_latency_anon.csv``, values in ms) are bimodal: a third of the loads take about 3 s
(weights already on the node), the rest 20-50 s (pulled over the network). One lognormal puts its median
at 13.4 s where the data's is 22.7 s, and its p99 far out. Two components still overshoot p99 by 19 %
(the slow mode has a shoulder at about 23 s and a peak at about 39 s); three components match median,
p90 and p99 within 3 % (see ``tests/planner/sim/test_coldstart.py``, which refits on the shared data).

:class:`LognormalMixture` has the same ``sample(rng, n)`` method as
:class:`planner.autoscale.context.ColdStartDistribution`, so either can be the simulator's cold start.

>>> import numpy as np
>>> x = DEFAULT_COLD_START_MIXTURE.sample(np.random.default_rng(0), 100_000)
>>> 20.0 < float(np.median(x)) < 25.0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from traces.errors import InputError


class ColdStartSampler(Protocol):
    """Anything that draws cold-start seconds from a caller-owned generator."""

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times in seconds."""
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

DEFAULT_COLD_START_MIXTURE = LognormalMixture(
    weights=(0.36797, 0.24413, 0.38790),
    mu=(1.12069, 3.11671, 3.65954),
    sigma=(0.39703, 0.10495, 0.13739),
    source=ALIBABA_SOURCE,
)
"""The simulator's default cold start (only the parameters ship; the test refits them on the data)."""

"""Cold starts: the time from "scale up" to "replica serving".

Two shapes, one protocol (:class:`ColdStart`: ``sample(rng, n)`` and ``quantile(q)``):

* :data:`FITTED_COLD_START`, the default of the autoscaling loop and of the comparison: the simulator's
  three-component lognormal mixture fitted on Alibaba's GenAI model-load latencies
  (:data:`planner.sim.coldstart.DEFAULT_COLD_START_MIXTURE`, imported, not copied), so the closed loop
  and the replay simulator draw cold starts from the same distribution;
* :data:`DEFAULT_COLD_START`, the older single lognormal fitted on the same data (kept as an option: it
  misplaces the median, 13.4 s against the data's 22.7 s, because the data are bimodal).

:func:`rescaled` moves either to another median (a larger model loads longer) and keeps its shape.

>>> round(DEFAULT_COLD_START.median_s, 1)
13.4
>>> round(FITTED_COLD_START.quantile(0.5), 1), round(FITTED_COLD_START.quantile(0.9), 1)
(22.8, 42.5)
>>> round(rescaled(FITTED_COLD_START, 360.0).quantile(0.5))
360
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from planner.sim.coldstart import DEFAULT_COLD_START_MIXTURE, LognormalMixture
from traces.errors import InputError


class ColdStart(Protocol):
    """What the loop and the MPC need of a cold-start distribution.

    Why a protocol: the loop only draws times and the MPC only reads a quantile (its lead time), so the
    single lognormal and the simulator's mixture are interchangeable without a common base class.
    """

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times in seconds (the caller owns the seeded generator)."""
        ...

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds."""
        ...


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
        return float(math.exp(self.mu + self.sigma * float(norm.ppf(q))))

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` cold-start times (the caller owns the seeded generator)."""
        out: NDArray[np.float64] = rng.lognormal(self.mu, self.sigma, n)
        return out

    def with_median(self, median_s: float) -> ColdStartDistribution:
        """The same spread around another median (e.g. a larger model's load time)."""
        return ColdStartDistribution(math.log(median_s), self.sigma,
                                     f"{self.source}; median rescaled to {median_s:g} s")


DEFAULT_COLD_START = ColdStartDistribution(
    mu=2.5928,
    sigma=1.1722,
    source=("maximum-likelihood lognormal fitted on the 7,531 model-load latencies of "
            "alibaba/clusterdata cluster-trace-v2026-GenAI basemodel_update_latency_anon.csv (value in ms): "
            "median 13.4 s; the data are bimodal (about 2.6 s and 23 s), so p10/p90 are approximate"),
)
"""Default cold start: fitted once (see ``tests/planner/autoscale/test_context.py``); only the
parameters ship."""

LLM_COLD_START_MEDIANS_S: dict[str, float] = {
    "Llama-3-8B-TP1": 104.2,
    "Llama-3-70B-TP4": 359.6,
    "Qwen3-235B-A22B-TP8": 994.7,
}
"""Time to first token from zero replicas, 8 x H100 on EC2, no optimisations (Ray Serve LLM
documentation's cold-start benchmark). Use with :meth:`ColdStartDistribution.with_median`."""


FITTED_COLD_START: LognormalMixture = DEFAULT_COLD_START_MIXTURE
"""The autoscaling loop's default cold start: the replay simulator's fitted mixture (median 22.8 s,
p90 42.5 s, p99 50.7 s)."""


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
    base = DEFAULT_COLD_START if sigma is None else ColdStartDistribution(DEFAULT_COLD_START.mu, sigma,
                                                                           "lognormal")
    if median_s is None:
        return base
    return ColdStartDistribution(math.log(median_s), base.sigma,
                                 f"lognormal, median {median_s:g} s, sigma {base.sigma:g}")

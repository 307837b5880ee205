"""Cold starts: the time from "scale up" to "replica serving", as a seeded lognormal.

>>> round(DEFAULT_COLD_START.median_s, 1)
13.4
>>> DEFAULT_COLD_START.quantile(0.9) > DEFAULT_COLD_START.median_s
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


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

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` cold-start times (the caller owns the seeded generator)."""
        out: np.ndarray = rng.lognormal(self.mu, self.sigma, n)
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
"""Time to first token from zero replicas, 8 x H100 on EC2, no optimisations (Ray Serve LLM docs; B9 in
``../shared/design/algorithms-and-numbers.md``). Use with :meth:`ColdStartDistribution.with_median`."""

"""Demand forecasts with quantiles: damped-trend exponential smoothing and its prediction intervals.

A series of per-bin rates (requests/s, prompt tokens/s, generation tokens/s) is smoothed with Holt's
damped additive trend (ETS(A,Ad,N)): level ``l``, trend ``b``, damping ``phi``::

    l_t = alpha * y_t + (1 - alpha) * (l_{t-1} + phi * b_{t-1})
    b_t = beta * (l_t - l_{t-1}) + (1 - beta) * phi * b_{t-1}
    yhat_{t+h} = l_t + (phi + ... + phi^h) * b_t

and its ``h``-step variance ``sigma^2 * (1 + sum_{j<h} (alpha + alpha * beta * (phi + ... + phi^j))^2)``
with ``sigma`` the in-sample one-step error (Hyndman & Athanasopoulos, *Forecasting: Principles and
Practice*, ETS prediction intervals). Quantiles are normal around the mean, floored at zero; because the
per-bin rate also carries Poisson noise that a short history underestimates, the variance gets at least
``mean / bin_s`` (the variance of a Poisson count rate).

>>> import numpy as np
>>> f = forecast_rate(np.full(60, 5.0), bin_s=10.0, steps=6, levels=(0.5, 0.9))
>>> round(f.mean[0], 3), f.quantile(0.9)[0] > f.mean[0]
(5.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Forecast:
    """Forecast of one rate over the next ``steps`` bins.

    Attributes:
        bin_s: bin length.
        mean: expected rate per future bin.
        levels: quantile levels.
        values: ``values[i]`` the ``levels[i]`` quantile per future bin.
    """

    bin_s: float
    mean: tuple[float, ...]
    levels: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    def quantile(self, level: float) -> tuple[float, ...]:
        """The quantile series of one of :attr:`levels`."""
        return self.values[self.levels.index(level)]


def damped_holt(y: F64, *, alpha: float, beta: float, phi: float) -> tuple[float, float, float]:
    """``(level, trend, sigma)`` after smoothing ``y`` (sigma: RMS one-step error)."""
    level = float(y[0])
    k = min(y.size - 1, 4)
    trend = float(y[k] - y[0]) / k if k > 0 else 0.0  # initial slope from the first few bins
    errs = []
    for v in y[1:]:
        pred = level + phi * trend
        errs.append(float(v) - pred)
        new_level = alpha * float(v) + (1 - alpha) * pred
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
    sigma = float(np.sqrt(np.mean(np.square(errs)))) if errs else 0.0
    return level, trend, sigma


def forecast_rate(y: F64, *, bin_s: float, steps: int, levels: tuple[float, ...] = (0.5, 0.9, 0.99),
                  alpha: float = 0.4, beta: float = 0.1, phi: float = 0.98) -> Forecast:
    """Forecast a non-negative rate series ``steps`` bins ahead, with quantiles.

    Args:
        y: past per-bin rates, oldest first (at least one).
        bin_s: bin length in seconds.
        steps: bins ahead.
        levels: quantile levels in (0, 1).
        alpha, beta, phi: smoothing of level and trend, trend damping.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        zeros = tuple(0.0 for _ in range(steps))
        return Forecast(bin_s, zeros, levels, tuple(zeros for _ in levels))
    level, trend, sigma = damped_holt(y, alpha=alpha, beta=beta, phi=phi)
    means = []
    sds = []
    cum_phi = 0.0
    var_sum = 0.0
    for h in range(1, steps + 1):
        cum_phi += phi ** h
        m = max(0.0, level + cum_phi * trend)
        if h > 1:
            cj = sum(phi ** i for i in range(1, h))
            var_sum += (alpha + alpha * beta * cj) ** 2
        var = sigma * sigma * (1.0 + var_sum)
        var = max(var, m / bin_s)
        means.append(m)
        sds.append(math.sqrt(var))
    vals = tuple(tuple(max(0.0, m + float(norm.ppf(q)) * s) for m, s in zip(means, sds, strict=True))
                 for q in levels)
    return Forecast(bin_s, tuple(means), levels, vals)

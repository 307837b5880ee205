"""A small auto-ARIMA for Dynamo's load predictor (statsmodels/pmdarima are not dependencies).

Dynamo's ``ARIMAPredictor`` calls ``pmdarima.auto_arima(buffer)`` and predicts one period ahead. Here:
every ARIMA(p, d, q) with ``p <= 2``, ``d <= 1``, ``q <= 1`` is fitted by conditional sum of squares
(residuals run forward from zero pre-sample errors, coefficients bounded inside (-0.99, 0.99) so the fit
stays stationary and invertible), the lowest AIC wins, and its one-step forecast is returned. pmdarima's
stepwise search over larger orders with a KPSS test for ``d`` is the reference; this is the same family
fitted the textbook way, enough for a buffer of 50 points.

>>> import numpy as np
>>> y = 10.0 + np.arange(30) * 2.0
>>> round(arima_forecast(y), 1)
70.0
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.signal import lfilter

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ArimaFit:
    """A fitted ARIMA(p, d, q): constant, AR and MA coefficients, residuals and AIC."""

    p: int
    d: int
    q: int
    const: float
    phi: tuple[float, ...]
    theta: tuple[float, ...]
    aic: float
    sse: float


def _residuals(z: F64, const: float, phi: F64, theta: F64) -> F64:
    """CSS residuals from ``t = p`` on: ``e_t = w_t - sum_j theta_j e_{t-j}`` with ``w`` the AR residual
    (a linear filter, so it runs vectorised through :func:`scipy.signal.lfilter`)."""
    p = phi.size
    w = z[p:] - const
    for i in range(p):
        w = w - phi[i] * z[p - 1 - i:z.size - 1 - i]
    if theta.size == 0:
        return w
    out: F64 = lfilter([1.0], np.concatenate(([1.0], theta)), w)
    return out


def fit_arima(y: F64, p: int, d: int, q: int) -> ArimaFit | None:
    """CSS fit of one order; None when there are too few points for it."""
    z = np.diff(y, n=d) if d else y.astype(np.float64)
    k = 1 + p + q
    if z.size - p < k + 2:
        return None
    scale = float(np.std(z)) or 1.0
    zs = z / scale

    def sse(x: F64) -> float:
        e = _residuals(zs, float(x[0]), x[1:1 + p], x[1 + p:])
        return float(e @ e)

    x0 = np.zeros(k)
    x0[0] = float(zs.mean())
    bounds = [(None, None)] + [(-0.99, 0.99)] * (p + q)
    res = minimize(sse, x0, method="L-BFGS-B", bounds=bounds)
    x = np.asarray(res.x, dtype=np.float64)
    n = z.size - p
    s = max(sse(x) * scale * scale, 1e-12 * n)
    aic = n * math.log(s / n) + 2 * k
    return ArimaFit(p, d, q, float(x[0]) * scale, tuple(float(v) for v in x[1:1 + p]),
                    tuple(float(v) for v in x[1 + p:]), aic, s)


def forecast_one(y: F64, fit: ArimaFit) -> float:
    """One-step-ahead forecast of ``y`` under ``fit``."""
    z = np.diff(y, n=fit.d) if fit.d else y.astype(np.float64)
    phi = np.array(fit.phi)
    theta = np.array(fit.theta)
    e = _residuals(z, fit.const, phi, theta)
    ar = float(phi @ z[-fit.p:][::-1]) if fit.p else 0.0
    ma = float(sum(theta[j] * e[-1 - j] for j in range(fit.q) if e.size > j))
    zhat = fit.const + ar + ma
    return float(y[-1] + zhat) if fit.d else zhat


def best_fit(y: F64) -> ArimaFit | None:
    """The lowest-AIC order among p <= 2, d <= 1, q <= 1."""
    fits = [f for p, d, q in itertools.product(range(3), range(2), range(2))
            if (f := fit_arima(y, p, d, q)) is not None]
    return min(fits, key=lambda f: f.aic) if fits else None


def arima_forecast(y: F64 | list[float] | tuple[float, ...]) -> float:
    """One-step-ahead auto-ARIMA forecast; the last value when the series is too short or constant."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.size == 0:
        return 0.0
    if arr.size < 5 or float(np.ptp(arr)) == 0.0:
        return float(arr[-1])
    fit = best_fit(arr)
    if fit is None:
        return float(arr[-1])
    out = forecast_one(arr, fit)
    return out if math.isfinite(out) else float(arr[-1])

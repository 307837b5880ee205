"""The step-time and step-power kernels the event loop can run, named by number.

Why numbers: numba cannot cache a compiled function that takes another compiled function as an
argument, so an event loop that received its kernel that way was compiled again in every process (about
4 s of every replay's start, issue 22). The loop takes a kernel id instead and calls the kernel through
:func:`step_time_of` / :func:`step_power_of`, and everything is cached on disk. A perf model still hands
out ``(function, params)`` (:meth:`planner.perf.api.ReplicaPerf.kernel`); :func:`kernel_id` maps the
function to its number.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

from planner.perf import kernel as kn

N_TERMS = 5
"""Engine terms (seconds each): per step, per sequence, per prefill token, per decode KV token, and per
prefill token per KV token of the batch (padded attention over the batch's gathered cache)."""


@nb.njit(cache=True)
def engine_step_time(prm: NDArray[np.float64], pt: float, pairs: float, ds: float,
                     kv: float) -> float:  # pragma: no cover - numba
    """The bare step model (``prm[N_TERMS:]``) plus the engine's own time (``prm[:N_TERMS]``)."""
    seqs = ds + (1.0 if pt > 0.0 else 0.0)
    if seqs <= 0.0:
        return 0.0
    base = kn.step_time(prm[N_TERMS:], pt, pairs, ds, kv)
    return float(base + prm[0] + prm[1] * seqs + prm[2] * pt + prm[3] * kv + prm[4] * pt * kv)


@nb.njit(cache=True)
def linear_step_time(prm: NDArray[np.float64], pt: float, pairs: float, ds: float,
                     kv: float) -> float:  # pragma: no cover - numba
    """``base + per_prefill_token * pt + per_pair * pairs + per_decode * ds + per_kv * kv``."""
    return float(prm[0] + prm[1] * pt + prm[2] * pairs + prm[3] * ds + prm[4] * kv)


@nb.njit(cache=True)
def linear_step_power(prm: NDArray[np.float64], pt: float, pairs: float, ds: float,
                      kv: float) -> float:  # pragma: no cover - numba
    """``prm[0]`` watts per GPU whenever a step runs (:class:`planner.sim.testing.LinearPerf`)."""
    return float(prm[0])


STEP_ROOFLINE, STEP_LINEAR, STEP_ENGINE = 0, 1, 2
POWER_NONE, POWER_ROOFLINE, POWER_LINEAR = 0, 1, 2


@nb.njit(cache=True)
def step_time_of(kid: int, prm: NDArray[np.float64], pt: float, pairs: float, ds: float,
                 kv: float) -> float:  # pragma: no cover - numba
    """Seconds of a step under kernel ``kid``."""
    if kid == STEP_ROOFLINE:
        return float(kn.step_time(prm, pt, pairs, ds, kv))
    if kid == STEP_LINEAR:
        return linear_step_time(prm, pt, pairs, ds, kv)
    return engine_step_time(prm, pt, pairs, ds, kv)


@nb.njit(cache=True)
def step_power_of(kid: int, prm: NDArray[np.float64], pt: float, pairs: float, ds: float,
                  kv: float) -> float:  # pragma: no cover - numba
    """Watts per GPU of a step under power kernel ``kid`` (0 without one)."""
    if kid == POWER_ROOFLINE:
        return float(kn.step_power(prm, pt, pairs, ds, kv))
    if kid == POWER_LINEAR:
        return linear_step_power(prm, pt, pairs, ds, kv)
    return 0.0


def kernel_id(fn: object) -> int:
    """The number of a step-time kernel a perf model handed out.

    Raises:
        TypeError: a kernel the event loop does not know (add it here and to :func:`step_time_of`).
    """
    known = {kn.step_time: STEP_ROOFLINE, linear_step_time: STEP_LINEAR, engine_step_time: STEP_ENGINE}
    if fn not in known:
        raise TypeError(f"the event loop has no step kernel {fn!r} (planner.sim.kernels)")
    return known[fn]


def power_kernel_id(fn: object | None) -> int:
    """The number of a power kernel (``None``: no power in the loop).

    Raises:
        TypeError: a kernel the event loop does not know.
    """
    if fn is None:
        return POWER_NONE
    known = {kn.step_power: POWER_ROOFLINE, linear_step_power: POWER_LINEAR}
    if fn not in known:
        raise TypeError(f"the event loop has no power kernel {fn!r} (planner.sim.kernels)")
    return known[fn]

"""Queueing theory: one request at a time with a constant step time is an M/D/1 or M/G/1 queue.

With ``max_num_seqs = 1``, prompts that fit one step and a step time of ``c`` seconds whatever the batch,
a request with ``m`` output tokens holds the replica for ``m`` steps (the prefill step gives the first
token). Poisson arrivals at rate ``lam`` then give the Pollaczek-Khinchine mean wait
``W = lam E[S^2] / (2 (1 - rho))``, ``rho = lam E[S]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.sim import EngineConfig, SimConfig, replay
from planner.sim.testing import LinearPerf, make_trace

C = 0.01
ONE_AT_A_TIME = EngineConfig(max_num_seqs=1, max_batched_tokens=64)
CONSTANT = LinearPerf(base_s=C, per_prefill_token_s=0.0, per_decode_s=0.0, per_kv_s=0.0)


def _mean_wait(out: np.ndarray, lam: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / lam, out.size))
    trace = make_trace(arrival, np.full(out.size, 8), out)
    res = replay(trace, CONSTANT, config=SimConfig(replicas=1, engine=ONE_AT_A_TIME))
    waits = res.requests["queueing_s"].to_numpy()
    return float(waits[out.size // 10:].mean())  # drop the warm-up from an empty system


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait(rho: float) -> None:
    n = 200_000
    lam = rho / C
    expected = lam * C**2 / (2 * (1 - rho))
    got = _mean_wait(np.ones(n, dtype=np.int64), lam, seed=3)
    assert got == pytest.approx(expected, rel=0.06)


def test_mg1_mean_wait_geometric_service() -> None:
    n = 200_000
    rng = np.random.default_rng(4)
    out = rng.geometric(0.2, n)  # E[m] = 5, E[m^2] = (2 - p) / p^2 = 45
    es, es2 = C * 5.0, C**2 * 45.0
    lam = 0.7 / es
    expected = lam * es2 / (2 * (1 - lam * es))
    got = _mean_wait(out, lam, seed=5)
    assert got == pytest.approx(expected, rel=0.08)

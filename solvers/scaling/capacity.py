"""Per-replica capacity at the SLO, from the perf model: what one replica can take before latency breaks.

The steady state of an aggregated continuous-batching replica at arrival rate ``lam`` (requests/s) with
prompts of ``isl`` and answers of ``osl`` tokens is a fixed point of the step time ``s``:

* ``B = lam * osl * s`` sequences decode in each step (Little's law over ``osl`` steps each), reading
  ``B * (isl + osl / 2)`` KV tokens;
* ``P = lam * isl * s`` prompt tokens are prefilled per step (chunked into the same steps);
* ``s = step(P, P * isl / 2, B, B * (isl + osl / 2))`` (:meth:`ReplicaPerf.step_time_s`).

The capacity is the largest ``lam`` whose fixed point exists with ``s <= tpot_margin * TPOT``, the prompt
fitting the step budget beside the decodes, ``B <= max_num_seqs``, the KV cache ``kv_fill`` full at most,
and a prompt's prefill (``ceil(isl / free budget)`` steps) within ``ttft_margin * TTFT``. Found by bisection.

>>> from planner.catalog import load_catalog
>>> from planner.perf import Parallelism, build_replica_perf
>>> from planner.contracts.serving import EngineConfig, SLOTarget
>>> cat = load_catalog()
>>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
>>> cap = replica_capacity(perf, isl=1000, osl=200, slo=SLOTarget(ttft_s=2.0, tpot_s=0.1),
...                        engine=EngineConfig())
>>> cap.rps > 1.0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.contracts.serving import EngineConfig, SLOTarget
from planner.perf.api import ReplicaPerf
from traces.errors import InputError


@dataclass(frozen=True)
class ReplicaCapacity:
    """One replica's sustainable load at the SLO for one length mix.

    Attributes:
        isl, osl: the mix (mean prompt and answer tokens).
        rps: requests/s at capacity.
        concurrency: requests in the replica at capacity (decoding plus prefilling).
        step_s: steady step time (the TPOT) at capacity.
    """

    isl: float
    osl: float
    rps: float
    concurrency: float
    step_s: float


def _steady_step(perf: ReplicaPerf, lam: float, isl: float, osl: float) -> float:
    """Fixed point of the step time at rate ``lam`` (inf when it diverges)."""
    s = float(np.asarray(perf.step_time_s(0.0, 0.0, 1.0, isl)))
    for _ in range(60):
        b = lam * osl * s
        p = lam * isl * s
        d = max(b, 1.0)
        s_new = float(np.asarray(perf.step_time_s(p, p * isl / 2.0, d, d * (isl + osl / 2))))
        if not math.isfinite(s_new) or s_new > 60.0:
            return math.inf
        if abs(s_new - s) <= 1e-7 * s:
            return s_new
        s = s_new
    return s


def _feasible(perf: ReplicaPerf, lam: float, isl: float, osl: float, slo: SLOTarget, engine: EngineConfig,
              tpot_margin: float, ttft_margin: float, kv_fill: float) -> tuple[bool, float]:
    s = _steady_step(perf, lam, isl, osl)
    if not math.isfinite(s):
        return False, s
    b = lam * osl * s
    p = lam * isl * s
    free = engine.max_batched_tokens - b
    prefill_steps = math.ceil(isl / free) if free >= 1 else math.inf
    ok = (s <= tpot_margin * slo.tpot_s and p <= free and b <= engine.max_num_seqs
          and b * (isl + osl) <= kv_fill * perf.kv_capacity_tokens
          and prefill_steps * s <= ttft_margin * slo.ttft_s)
    return ok, s


def replica_capacity(perf: ReplicaPerf, *, isl: float, osl: float, slo: SLOTarget, engine: EngineConfig,
                     tpot_margin: float = 0.8, ttft_margin: float = 0.5,
                     kv_fill: float = 0.9) -> ReplicaCapacity:
    """The largest sustainable request rate of one replica at the SLO (see the module docstring).

    Args:
        perf: the replica's performance model.
        isl, osl: mean prompt and answer lengths.
        slo: TTFT/TPOT targets.
        engine: scheduler limits (token budget, sequences).
        tpot_margin: the steady step time may use this fraction of the TPOT target (room for bursts).
        ttft_margin: a prompt's own prefill may use this fraction of the TTFT target (the rest is queueing).
        kv_fill: the KV cache may be this full at most.

    Raises:
        InputError: non-positive lengths, or no rate meets the SLO (the replica is too slow for it).
    """
    if not (isl > 0 and osl > 0):
        raise InputError(f"lengths must be positive (isl={isl}, osl={osl})", field="isl/osl",
                         expected="mean prompt and answer tokens > 0")
    lo, hi = 0.0, 1.0
    while _feasible(perf, hi, isl, osl, slo, engine, tpot_margin, ttft_margin, kv_fill)[0] and hi < 1e6:
        lo, hi = hi, hi * 2.0
    if lo == 0.0 and not _feasible(perf, 1e-6, isl, osl, slo, engine, tpot_margin, ttft_margin, kv_fill)[0]:
        raise InputError(f"one replica cannot meet TTFT {slo.ttft_s} s / TPOT {slo.tpot_s} s at any load "
                         f"(isl={isl:.0f}, osl={osl:.0f})", field="slo",
                         expected="looser SLO targets or a faster replica layout")
    for _ in range(40):
        mid = (lo + hi) / 2
        if _feasible(perf, mid, isl, osl, slo, engine, tpot_margin, ttft_margin, kv_fill)[0]:
            lo = mid
        else:
            hi = mid
    s = _steady_step(perf, lo, isl, osl)
    conc = lo * (osl * s + math.ceil(isl / max(engine.max_batched_tokens, 1)) * s)
    return ReplicaCapacity(isl=isl, osl=osl, rps=lo, concurrency=conc, step_s=s)


@dataclass(frozen=True)
class CapacityTable:
    """Capacity over a grid of length mixes, interpolated in log-lengths (policies look it up per tick).

    Attributes:
        isl_grid, osl_grid: ascending grid axes.
        rps: ``rps[i][j]`` at ``(isl_grid[i], osl_grid[j])``.
        concurrency: requests in the replica at that capacity.
    """

    isl_grid: tuple[float, ...]
    osl_grid: tuple[float, ...]
    rps: tuple[tuple[float, ...], ...]
    concurrency: tuple[tuple[float, ...], ...]

    def _interp(self, table: tuple[tuple[float, ...], ...], isl: float, osl: float) -> float:
        xi = np.log(np.asarray(self.isl_grid))
        xo = np.log(np.asarray(self.osl_grid))
        a = np.log(np.asarray(table))
        li = float(np.clip(math.log(max(isl, 1.0)), xi[0], xi[-1]))
        lo = float(np.clip(math.log(max(osl, 1.0)), xo[0], xo[-1]))
        i = int(np.clip(np.searchsorted(xi, li) - 1, 0, xi.size - 2)) if xi.size > 1 else 0
        j = int(np.clip(np.searchsorted(xo, lo) - 1, 0, xo.size - 2)) if xo.size > 1 else 0
        if xi.size == 1 and xo.size == 1:
            return float(np.exp(a[0, 0]))
        fi = (li - xi[i]) / (xi[i + 1] - xi[i]) if xi.size > 1 else 0.0
        fj = (lo - xo[j]) / (xo[j + 1] - xo[j]) if xo.size > 1 else 0.0
        i1 = min(i + 1, xi.size - 1)
        j1 = min(j + 1, xo.size - 1)
        v = ((1 - fi) * (1 - fj) * a[i, j] + fi * (1 - fj) * a[i1, j] + (1 - fi) * fj * a[i, j1]
             + fi * fj * a[i1, j1])
        return float(np.exp(v))

    def scaled(self, factor: float) -> CapacityTable:
        """The table with every capacity multiplied by ``factor`` (calibration against a replay)."""
        return CapacityTable(self.isl_grid, self.osl_grid,
                             tuple(tuple(v * factor for v in row) for row in self.rps),
                             tuple(tuple(v * factor for v in row) for row in self.concurrency))

    def rps_at(self, isl: float, osl: float) -> float:
        """Requests/s one replica sustains at the SLO for this mix."""
        return self._interp(self.rps, isl, osl)

    def concurrency_at(self, isl: float, osl: float) -> float:
        """Requests in one replica at that capacity."""
        return self._interp(self.concurrency, isl, osl)

    def need(self, requests: float, prompt_tokens: float, generation_tokens: float, seconds: float) -> float:
        """Replicas a span of ``seconds`` with these totals keeps busy at the SLO (its own length mix)."""
        if requests <= 0:
            return 0.0
        rps = self.rps_at(prompt_tokens / requests, generation_tokens / requests)
        return requests / max(seconds, 1e-9) / max(rps, 1e-9)


def capacity_table(perf: ReplicaPerf, *, slo: SLOTarget, engine: EngineConfig,
                   isl_grid: tuple[float, ...] = (128, 512, 1024, 2048, 4096, 8192),
                   osl_grid: tuple[float, ...] = (8, 32, 128, 256, 512, 1024),
                   tpot_margin: float = 0.8) -> CapacityTable:
    """:func:`replica_capacity` over a grid of mixes (a second or so)."""
    caps = [[replica_capacity(perf, isl=i, osl=o, slo=slo, engine=engine, tpot_margin=tpot_margin)
             for o in osl_grid] for i in isl_grid]
    return CapacityTable(
        isl_grid=tuple(float(x) for x in isl_grid), osl_grid=tuple(float(x) for x in osl_grid),
        rps=tuple(tuple(max(c.rps, 1e-6) for c in row) for row in caps),
        concurrency=tuple(tuple(max(c.concurrency, 1e-6) for c in row) for row in caps),
    )

"""Candidates and their goodput under the SLO, from a fast queueing estimate over the length mix.

A candidate is GPU type x TP x PP x EP x engine batch caps (``max_num_seqs`` B, ``max_batched_tokens``
C) x role (aggregated | prefill | decode). Layouts that do not fit in memory, or whose KV cache cannot
hold the longest request bucket, stay in the table with ``feasible = False`` and the reason.

Model of one replica at request rate ``λ`` (all lengths from the :class:`LengthMix` buckets ``k`` with
weights ``w_k``; ``T(p, pairs, n, kv)`` is the perf model's step time):

- Steady state of a continuous-batching engine. Each step carries on average ``p`` prefill tokens and
  ``N`` decoding sequences; by Little's law ``N = λ E[out] τ`` and ``p = λ E[in] τ`` where the mean step
  ``τ = T(p, κ p, N, N c)`` (fixed point; ``κ`` = attention pairs per prompt token, ``c`` = mean context
  of a decoding sequence, weighted by output tokens). A prefill replica has ``N = 0``, a decode replica
  ``p = 0``. The fixed point is solved to a bound on its true error (:func:`steady_state`), and the
  engine's utilisation ``r`` there (the step's elasticity to the rate is ``r / (1 - r)``) is held to
  :data:`MAX_UTILISATION`.
- Decode (TPOT): inter-token latency is linear in the batch, ``ITL(n) = a + b n`` (as llm-d's WVA
  fits it; ``a`` includes the mean prefill chunk riding along). The batch that still meets the TPOT SLO is
  ``n* = min((SLO - a)/b, B, KV headroom / c)``; concurrency is Poisson(N), so the share of requests
  meeting TPOT is ``Φ((n* - N)/√N)``.
- Prefill (TTFT): a prompt is work ``S_k = in_k / b_p · T_full`` for a prefill budget ``b_p`` tokens per
  step (``C`` minus the decode batch's p99), an M/G/1 queue (DistServe's M/D/1 generalised to the mix):
  ``ρ = λ E[S]``, mean wait ``W = λ E[S²] / (2 (1 - ρ))`` (Pollaczek-Khinchine), wait tail
  ``P(W > x) ≈ ρ exp(-θ x)`` with ``θ = 2 E[S](1 - ρ) / E[S²]`` (exponential with the same mean). A
  request's TTFT is the wait plus its own latency ``max(T(in_k alone), S_k)``; the TTFT attainment is
  ``Σ_k w_k P(W ≤ SLO - lat_k)``.
- Goodput is the largest ``λ`` on a fine geometric grid where the engine is stable within its
  utilisation bound and both attainments reach the target (0.99 for p99 SLOs).

The estimate is fast (every candidate of a catalog in seconds) and deliberately simple; the plan is
checked by replaying the trace (:mod:`planner.plan.verify`), never trusted from this model alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.perf.api import Parallelism, ReplicaPerf
from planner.perf.engine_profile import DEFAULT_ENGINE, engine_perf_inputs
from planner.perf.layouts import enumerate_layouts
from planner.perf.model import build_replica_perf
from planner.perf.precision import BF16, Precision
from solvers.capacity.demand import LengthMix
from solvers.capacity.problem import SLO, Config, PowerBasis, Role
from traces.errors import InputError

FloatArray = NDArray[np.float64]

_GRID = np.geomspace(1e-3, 1.0, 60)
"""Rates tried first, as fractions of a candidate's throughput ceiling (12 % apart); the bracket where the
SLO starts to fail is then refined on :data:`_REFINE` linear points (0.3 % apart)."""

_REFINE = 40

FIXED_POINT_RTOL = 1e-6
"""Relative width of the bracket that holds each rate's steady step when :func:`steady_state` stops: the
returned step is within this share of the fixed point (a bound on the true error, not a difference between
successive iterates; the kernel's own rounding is about 1e-8)."""

MAX_UTILISATION = 0.93
"""The highest engine utilisation a candidate is scored at (``r`` of :func:`steady_state`).

Why a bound: the mean step is ``τ* = g(τ*)``, so a 1 % rise in the rate raises the step, the batch and
every latency by ``r / (1 - r)`` %: 9 % at 0.9, 13 % at 0.93, 19 % at 0.95, without limit at saturation.
The estimate is a mean-value model of a window's busiest minute, and traffic inside that minute still
fluctuates; a replica planned closer to saturation misses its SLO in replay on a burst the model cannot
see. The value is measured with ``fleetwise bench plan``: every case plans the same GPUs and passes its
own replay at any bound from 0.90 to 0.96 (the default case replays at 0.9926); at 0.97 the default case's
plan drops a replica-window and replays at 0.988, under its 0.99 target. 0.93 keeps a margin below that. It
replaces the limit the old 150-step plain iteration set by accident (rates whose iteration had not settled
counted as unstable: ``r`` above about 0.94)."""

_TINY_STEP_S = 1e-12
"""A step time below any engine's (a picosecond): where :func:`steady_state` starts, below every fixed
point (the step time jumps from 0 to a weight read at any load)."""

_MAX_ROUNDS = 100
"""Safeguard on :func:`steady_state`'s rounds (it needs about 5 below saturation)."""

_UTILISATION_STEP = 1e-4
"""Relative step of the forward difference that measures ``g'(τ*)`` (well above the kernel's rounding,
whose power-limit bisection moves step times by about 1e-8)."""


@dataclass(frozen=True)
class ScoringOptions:
    """The candidate space and the SLO.

    Attributes:
        slo: latency targets.
        max_num_seqs: running-sequence caps tried (aggregated and decode roles).
        max_batched_tokens: per-step token budgets tried (aggregated and prefill roles).
        roles: roles enumerated.
        max_gpus: GPUs per replica at most.
        kv_headroom: share of the KV cache the mean decode batch may fill (the rest absorbs variance).
        max_utilisation: highest engine utilisation ``r`` a candidate is scored at (:data:`MAX_UTILISATION`).
        power_basis: how replica power is counted.
        expert_imbalance: MoE busiest-GPU expert load over the mean (the placement's step imbalance,
            from ``fleetwise experts``); 1.0 is a perfect balance.
        engine: engine profile whose step terms and curves the candidates are scored with
            (:mod:`planner.perf.engine_profile`: ``bare`` or ``vllm``).
        precisions: weight and KV dtypes tried (:mod:`planner.perf.precision`); a GPU without FP8
            tensor cores scores its fp8 candidates as infeasible, with that reason.
    """

    slo: SLO = field(default_factory=SLO)
    max_num_seqs: tuple[int, ...] = (64, 128, 256, 512)
    max_batched_tokens: tuple[int, ...] = (2048, 8192, 16384)
    roles: tuple[Role, ...] = (Role.AGGREGATED, Role.PREFILL, Role.DECODE)
    max_gpus: int = 8
    kv_headroom: float = 0.9
    max_utilisation: float = MAX_UTILISATION
    power_basis: PowerBasis = PowerBasis.PERF
    expert_imbalance: float = 1.0
    engine: str = DEFAULT_ENGINE
    precisions: tuple[Precision, ...] = (BF16,)


@dataclass(frozen=True, eq=False)
class Prediction:
    """The queueing estimate at a vector of rates (one entry per rate).

    Attributes:
        rate_rps: the rates.
        stable: the engine has a steady state within its caps and the prefill queue has ``ρ < 1``.
        utilisation: the engine's utilisation ``r`` (:class:`SteadyState`).
        ttft_attainment: predicted share of requests meeting TTFT.
        tpot_attainment: predicted share of requests meeting TPOT.
        step_s: mean step time.
        concurrency: mean decoding sequences.
        prefill_tokens: mean prefill tokens per step.
        rho: prefill utilisation.
        tpot_p99_s: ITL at the p99 batch.
        ttft_mean_s: mean TTFT (the mix's own latency plus the mean wait).
        tpot_mean_s: ITL at the mean batch.
        code: index into the reasons: the first condition that fails (0 where all hold).
        latency: ``[rates, buckets]`` a request's own prefill latency without queueing.
        theta: the wait tail's decay rate.
        weight: bucket weights.
        target: the quantile the TTFT target holds at (what :meth:`ttft_quantile` reports).
    """

    rate_rps: FloatArray
    stable: NDArray[np.bool_]
    utilisation: FloatArray
    ttft_attainment: FloatArray
    tpot_attainment: FloatArray
    step_s: FloatArray
    concurrency: FloatArray
    prefill_tokens: FloatArray
    rho: FloatArray
    tpot_p99_s: FloatArray
    ttft_mean_s: FloatArray
    tpot_mean_s: FloatArray
    code: NDArray[np.int64]
    latency: FloatArray
    theta: FloatArray
    weight: FloatArray
    target: float
    e2e_attainment: FloatArray | None = None
    """Predicted share meeting the end-to-end target (None: ones; no target set)."""
    e2e_mean_s: FloatArray | None = None
    """Mean end-to-end time (None: not estimated)."""

    @property
    def attainment(self) -> FloatArray:
        """Predicted share meeting every target: TTFT and TPOT independent, the end-to-end share a cap
        (it depends on both, so multiplying would count its misses twice)."""
        both = self.ttft_attainment * self.tpot_attainment
        if self.e2e_attainment is not None:
            both = np.minimum(both, self.e2e_attainment)
        return np.where(self.stable, both, 0.0)

    @property
    def ok(self) -> NDArray[np.bool_]:
        """Where the SLO holds."""
        return np.asarray(self.code == 0, dtype=np.bool_)

    @property
    def reason(self) -> tuple[str, ...]:
        """The failing condition per rate, in words (empty where the SLO holds)."""
        return tuple(_REASONS[int(c)] for c in self.code)

    def ttft_quantile(self, i: int) -> float:
        """Predicted TTFT at the SLO quantile for rate ``i`` (bisection over the bucket mixture)."""
        if not self.stable[i]:
            return math.nan
        lat, rho, theta = self.latency[i:i + 1], self.rho[i:i + 1], self.theta[i:i + 1]
        if float(lat.max()) <= 0.0:
            return 0.0
        lo, hi = 0.0, float(lat.max()) + 1.0
        while float((_miss(lat, rho, theta, hi) @ self.weight)[0]) > 1.0 - self.target and hi < 1e7:
            hi *= 2.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if float((_miss(lat, rho, theta, mid) @ self.weight)[0]) > 1.0 - self.target:
                lo = mid
            else:
                hi = mid
        return hi


def _t(perf: ReplicaPerf, p: FloatArray | float, pairs: FloatArray | float, n: FloatArray | float,
       kv: FloatArray | float) -> FloatArray:
    return np.asarray(perf.step_time_s(p, pairs, n, kv), dtype=np.float64)


def _ceiling_rps(perf: ReplicaPerf, role: Role, mix: LengthMix, batch: int, chunk: int, kappa: float,
                 ctx: float) -> float:
    """Throughput ceiling ignoring queueing: the top of the rate grid."""
    per_req = 0.0
    if role is not Role.DECODE:
        per_req += mix.mean_input * float(_t(perf, float(chunk), kappa * chunk, 0.0, 0.0)) / chunk
    if role is not Role.PREFILL:
        b = float(batch)
        per_req += mix.mean_output * float(_t(perf, 0.0, 0.0, b, b * ctx)) / b
    return 1.2 / per_req


def mix_moments(mix: LengthMix) -> tuple[float, float]:
    """``(κ, c)``: attention pairs per prompt token and the mean context of a decoding sequence."""
    w, i, o = mix.weight, mix.input_tokens, mix.output_tokens
    kappa = float(w @ (i * (i + 1) / 2.0)) / max(float(w @ i), 1e-9)
    ctx = float(w @ (o * (i + o / 2.0))) / max(float(w @ o), 1e-9)
    return kappa, ctx


@dataclass(frozen=True, eq=False)
class SteadyState:
    """The engine's fixed point at each rate (independent of the batch caps, which only bound it).

    Attributes:
        rate_rps: the rates.
        step_s: mean step ``τ*`` (within :data:`FIXED_POINT_RTOL` of the fixed point, never below it).
        prefill_tokens: mean prefill tokens per step.
        concurrency: mean decoding sequences.
        converged: a fixed point exists with the batch within the caps (False: the demand is above the
            engine's throughput).
        utilisation: ``r = g'(τ*)``, the share of a step's time that grows with its load at the margin
            (0 for a prefill replica, whose load is the prefill queue's ``ρ`` in :func:`predict`; 1 where
            there is no steady state).
    """

    rate_rps: FloatArray
    step_s: FloatArray
    prefill_tokens: FloatArray
    concurrency: FloatArray
    converged: NDArray[np.bool_]
    utilisation: FloatArray


def steady_state(perf: ReplicaPerf, role: Role, mix: LengthMix, rates: FloatArray, *,
                 cap_tokens: float = 65536.0, cap_seqs: float = 4096.0,
                 rtol: float = FIXED_POINT_RTOL) -> SteadyState:
    """Solve ``τ = g(τ) = T(λ E[in] τ, κ λ E[in] τ, λ E[out] τ, c λ E[out] τ)`` at each rate.

    The engine's steady step is the least fixed point of ``g``, the one an engine reaches from idle: ``g``
    grows with ``τ`` (a longer step gathers more work), so the plain iteration ``τ ← g(τ)`` from below
    climbs to it, with ratio ``r = g'(τ*)``, which is slow near saturation (160 steps for 1e-6 at ``r`` =
    0.93), and its successive difference understates its error by ``1 / (1 - r)``. ``g`` also jumps
    upward where a kernel changes regime (split-KV decode attention past a batch size), so it can cross
    the diagonal again above the least fixed point: a root finder over the whole range ``[0, τ_cap]``
    lands on such higher, unreachable crossings.

    Here each round runs a plain step from the lower end ``lo`` (``x0 → y0 → y1``; ``y0`` stays below the
    fixed point), then picks a trial point: Aitken's extrapolation of those steps (Steffensen: quadratic on
    smooth stretches) until an upper end is known, then Illinois false position between the ends; where
    ``g`` climbs faster than ``τ``, a stride of plain steps doubled each round. It probes ``g`` just below
    and just above the trial point (``x̂ (1 ∓ rtol/4)``). A point with ``g(x) <= x`` bounds the fixed
    point from above (``g`` maps ``[0, x]`` into itself), so ``hi`` is certified; points below it with
    ``g(x) > x`` raise ``lo``. It stops when ``hi - lo <= rtol * hi`` and returns ``hi``: within ``rtol``
    of a fixed point, and never below the least one. A rate whose lower end passes ``τ_cap``, the step at
    which the batch reaches ``cap_tokens``/``cap_seqs``, has no steady state within the caps (``converged``
    False: the demand is above the engine's throughput). About 6 rounds (3 kernel evaluations per rate
    each) against the plain iteration's 58 steps on average, 150 at most.

    Limit: a trial point that lands just past a jump, between the least fixed point and a higher
    crossing, is taken as a lower end, and the answer is that higher crossing: a step 2-6 % longer than
    the engine's (conservative: less goodput). On the bundled hour's candidates (3 GPU types, every layout,
    aggregated and decode, 260 rates each) that is 3 rates of about 19,000; every other rate is within
    ``rtol`` of the plain iteration run to convergence (``tests/solvers/capacity/test_steady_state.py``).

    ``utilisation`` is ``r = g'(τ*)`` (a forward difference: a little more load). It is the plain
    iteration's contraction ratio, and the step's elasticity to the rate is ``r / (1 - r)`` (``g``
    depends on ``λ τ`` only); :data:`MAX_UTILISATION` bounds it. A prefill replica runs whole chunks
    while busy and nothing else (its mean step is not defined), so it has no decode batch, ``τ = 0``,
    and its load is the prefill queue's ``ρ`` in :func:`predict`.
    """
    lam = np.asarray(rates, dtype=np.float64)
    zeros = np.zeros_like(lam)
    if role is Role.PREFILL:
        return SteadyState(rate_rps=lam, step_s=zeros, prefill_tokens=zeros, concurrency=zeros,
                           converged=np.ones(lam.shape, dtype=bool), utilisation=zeros)
    kappa, ctx = mix_moments(mix)
    e_in = mix.mean_input if role is not Role.DECODE else 0.0
    e_out = mix.mean_output

    def g(tau: FloatArray, at: NDArray[np.intp]) -> FloatArray:
        p = lam[at] * e_in * tau
        n = lam[at] * e_out * tau
        return _t(perf, p, kappa * p, n, n * ctx)

    busy = np.flatnonzero(lam > 0)  # an idle engine takes no steps: τ = 0
    tau_cap = cap_seqs / (lam[busy] * e_out)
    if e_in > 0:
        tau_cap = np.minimum(tau_cap, cap_tokens / (lam[busy] * e_in))
    eps = 0.25 * rtol
    lo = np.full(busy.size, _TINY_STEP_S)  # below every step: any load reads the weights
    g_lo = g(lo, busy)
    hi = np.full(busy.size, np.inf)  # no upper bound seen yet
    g_hi = np.full(busy.size, np.inf)
    weight = np.ones(busy.size)  # Illinois: the upper end's weight, halved while it stays
    stride = np.ones(busy.size)  # steps of plain iteration taken at once while g climbs faster than τ

    def absorb(live: NDArray[np.intp], x: FloatArray, gx: FloatArray) -> None:
        """Narrow the ends with points ``x`` of the live rates: ``g(x) <= x`` lowers ``hi``, a point below
        ``hi`` with ``g(x) > x`` raises ``lo``."""
        up = (gx <= x) & (x < hi[live])
        hi[live], g_hi[live] = np.where(up, x, hi[live]), np.where(up, gx, g_hi[live])
        down = (gx > x) & (x > lo[live]) & (x < hi[live])
        lo[live], g_lo[live] = np.where(down, x, lo[live]), np.where(down, gx, g_lo[live])

    for _ in range(_MAX_ROUNDS):
        live = np.flatnonzero((np.isinf(hi) | (hi - lo > rtol * hi)) & (lo < tau_cap))
        if not live.size:
            break
        at = busy[live]
        x0, y0 = lo[live], g_lo[live]
        y1 = g(y0, at)
        kept = hi[live]
        absorb(live, y0, y1)  # a plain step from below stays below
        # the next trial point: Aitken's extrapolation of x0 -> y0 -> y1 until an upper end is known (where
        # g climbs faster than τ, no fixed point is near: a stride of plain steps, doubled each round), then
        # Illinois false position between the ends
        s = (y1 - y0) / (y0 - x0)
        contracts = (s > 0.0) & (s < 1.0)
        stride[live] = np.where(contracts, 1.0, 2.0 * stride[live])
        aitken = np.where(contracts, x0 + (y0 - x0) / (1.0 - s), y0 + stride[live] * (y1 - y0))
        a, b = lo[live], hi[live]
        with np.errstate(invalid="ignore"):
            fa, fb = g_lo[live] - a, (g_hi[live] - b) * weight[live]
            secant = a - fa * (b - a) / (fb - fa)
        est = np.clip(np.where(np.isinf(b), aitken, secant), a, np.minimum(b, tau_cap[live]))
        # probes just below and above: once the estimate is within rtol/4 they close the bracket
        for side in (1.0 - eps, 1.0 + eps):
            absorb(live, est * side, g(est * side, at))
        weight[live] = np.where(hi[live] == kept, 0.5 * weight[live], 1.0)
    settled = (hi - lo <= rtol * hi) & (hi <= tau_cap)
    tau = zeros.copy()
    tau[busy] = np.where(settled, hi, np.minimum(lo, tau_cap))
    util = np.ones_like(lam)
    util[lam <= 0] = 0.0
    ok = np.flatnonzero(settled)
    if ok.size:
        step = _UTILISATION_STEP * hi[ok]
        util[busy[ok]] = (g(hi[ok] + step, busy[ok]) - g_hi[ok]) / step
    converged = np.ones(lam.shape, dtype=bool)
    converged[busy] = settled
    return SteadyState(rate_rps=lam, step_s=tau, prefill_tokens=lam * e_in * tau,
                       concurrency=lam * e_out * tau, converged=converged, utilisation=util)


_REASONS = ("", "unstable: demand above throughput", "no decode batch meets the TPOT SLO within the KV cache",
            "TPOT over the SLO at its statistic", "TTFT over the SLO at its statistic",
            "end-to-end latency over the SLO at its statistic",
            "over the utilisation bound: the step time too close to saturation")


def predict(perf: ReplicaPerf, role: Role, mix: LengthMix, slo: SLO, rates: FloatArray, *,
            max_num_seqs: int, max_batched_tokens: int, kv_headroom: float = 0.9,
            max_utilisation: float = MAX_UTILISATION, steady: SteadyState | None = None) -> Prediction:
    """The queueing estimate of one candidate at each rate in ``rates`` (see the module docstring).

    Args:
        perf: the replica's performance model.
        role: aggregated, prefill or decode.
        mix: request lengths.
        slo: targets.
        rates: request rates per replica, req/s.
        max_num_seqs: engine running-sequence cap B.
        max_batched_tokens: engine token budget per step C.
        kv_headroom: share of the KV cache the mean decode batch may fill.
        max_utilisation: rates where the engine's utilisation ``r`` is above it fail (code 6), stable or not.
        steady: a precomputed :func:`steady_state` at the same rates (it does not depend on B or C).

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    >>> pr = predict(perf, Role.AGGREGATED, LengthMix.single(1000, 200), SLO(), np.array([0.5, 500.0]),
    ...              max_num_seqs=256, max_batched_tokens=8192)
    >>> pr.stable.tolist(), pr.reason[1]
    ([True, False], 'unstable: demand above throughput')
    """
    lam = np.asarray(rates, dtype=np.float64)
    st = steady if steady is not None else steady_state(perf, role, mix, lam)
    has_p, has_d = role is not Role.DECODE, role is not Role.PREFILL
    kappa, ctx = mix_moments(mix)
    B, C = float(max_num_seqs), float(max_batched_tokens)
    tau, p, n = st.step_s, st.prefill_tokens, st.concurrency
    z = float(ndtri(slo.target))
    n99 = n + z * np.sqrt(n)
    kv_cap = float(perf.kv_capacity_tokens)
    if has_d:
        # decode: ITL(n) = a + b n with the mean prefill riding along
        t1 = _t(perf, p, kappa * p, 1.0, ctx)
        t2 = _t(perf, p, kappa * p, B, B * ctx)
        slope = np.maximum((t2 - t1) / max(B - 1.0, 1.0), 1e-12)
        a = t1 - slope
        n_star = np.minimum(np.minimum((slo.tpot_s - a) / slope, B), kv_headroom * kv_cap / ctx)
        sd = np.sqrt(np.maximum(n, 1e-12))
        tpot_att = np.where(n_star < 1.0, 0.0, ndtr((n_star - n) / sd))
        tpot_p99 = a + slope * np.maximum(n99, 1.0)
        tpot_mean = a + slope * np.maximum(n, 1.0)
    else:
        n_star = np.full_like(lam, np.inf)
        tpot_att = np.ones_like(lam)
        tpot_p99 = np.zeros_like(lam)
        tpot_mean = np.zeros_like(lam)
    if has_p:
        # prefill: M/G/1 over the mix with a budget of C minus the decode batch's p99 per step
        budget = np.maximum(C - np.minimum(n99, B), 1.0)
        t_full = _t(perf, budget, kappa * budget, n, n * ctx)
        work = mix.input_tokens[None, :] / budget[:, None] * t_full[:, None]  # [rates, buckets]
        alone_tok = np.minimum(mix.input_tokens[None, :], budget[:, None])
        alone = _t(perf, alone_tok, alone_tok * (alone_tok + 1) / 2.0, n[:, None], (n * ctx)[:, None])
        lat = np.maximum(alone, work)
        es = work @ mix.weight
        es2 = (work**2) @ mix.weight
        rho = lam * es
        theta = 2.0 * es * np.maximum(1.0 - rho, 0.0) / np.maximum(es2, 1e-300)
        ttft_att = 1.0 - _miss(lat, rho, theta, slo.ttft_s) @ mix.weight
        # mean TTFT: own latency plus the wait's mean ρ/θ (= λ E[S²] / (2 (1 - ρ)))
        ttft_mean = lat @ mix.weight + np.where(rho < 1.0, rho / np.maximum(theta, 1e-300), np.inf)
    else:
        lat = np.zeros((lam.size, 1))
        rho = np.zeros_like(lam)
        theta = np.zeros_like(lam)
        ttft_att = np.ones_like(lam)
        ttft_mean = np.zeros_like(lam)
    stable = st.converged & (rho < 1.0) & (p + np.minimum(n, B) <= C + 1e-9) & (n <= B)
    if slo.is_mean("tpot"):  # the mean batch within n* (the TPOT target, B and the KV cache)
        tpot_miss = np.maximum(n, 1.0) > n_star if has_d else np.zeros(lam.shape, dtype=bool)
    else:
        tpot_miss = tpot_att < slo.quantile("tpot")
    ttft_miss = ttft_mean > slo.ttft_s if slo.is_mean("ttft") else ttft_att < slo.quantile("ttft")
    e2e_att, e2e_mean, e2e_miss = _end_to_end(role, mix, slo, lat, rho, theta, ttft_mean, tpot_mean)
    over = st.utilisation > max_utilisation
    code = np.select([~stable, over, has_d & (n_star < 1.0), tpot_miss, ttft_miss, e2e_miss],
                     [1, 6, 2, 3, 4, 5], default=0)
    return Prediction(rate_rps=lam, stable=stable, utilisation=st.utilisation, ttft_attainment=ttft_att,
                      tpot_attainment=tpot_att,
                      step_s=tau, concurrency=n, prefill_tokens=p, rho=rho, tpot_p99_s=tpot_p99,
                      ttft_mean_s=ttft_mean, tpot_mean_s=tpot_mean,
                      code=code, latency=lat, theta=theta, weight=mix.weight, target=slo.quantile("ttft"),
                      e2e_attainment=e2e_att, e2e_mean_s=e2e_mean)


def _end_to_end(role: Role, mix: LengthMix, slo: SLO, lat: FloatArray, rho: FloatArray, theta: FloatArray,
                ttft_mean: FloatArray, itl_mean: FloatArray
                ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Share meeting the end-to-end target, mean end-to-end time, and where the target is missed.

    A bucket's end-to-end time is its TTFT plus ``(out - 1)`` inter-token gaps at the mean batch: a long
    answer's gaps average the batch over many steps, so its spread across requests comes from the
    prefill wait's tail and from the lengths (the buckets), not from one step's batch. A prefill pool
    promises nothing end to end (its requests finish elsewhere); a decode pool must finish within what
    the TTFT target leaves of the end-to-end one.
    """
    lam_shape = itl_mean.shape
    out1 = np.maximum(mix.output_tokens - 1.0, 0.0)
    if slo.e2e_s is None or role is Role.PREFILL:
        ones = np.ones(lam_shape)
        return ones, np.zeros(lam_shape), np.zeros(lam_shape, dtype=bool)
    budget = slo.e2e_s - (slo.ttft_s if role is Role.DECODE else 0.0)
    mean = (ttft_mean if role is Role.AGGREGATED else 0.0) + itl_mean * float(mix.weight @ out1)
    decode_s = np.atleast_1d(itl_mean)[:, None] * out1[None, :]  # [rates, buckets]
    if role is Role.DECODE:
        att = ((decode_s <= budget).astype(np.float64) @ mix.weight).reshape(lam_shape)
    else:
        att = 1.0 - _miss(lat, rho, theta, budget - decode_s) @ mix.weight
    miss = mean > budget if slo.is_mean("e2e") else att < slo.quantile("e2e")
    return np.asarray(att, dtype=np.float64), np.asarray(mean, dtype=np.float64), np.asarray(miss, dtype=bool)


def _miss(lat: FloatArray, rho: FloatArray, theta: FloatArray, t: FloatArray | float) -> FloatArray:
    """``P(TTFT_k > t)`` per rate and bucket: ``ρ exp(-θ (t - lat_k))`` (1 when the bucket alone is late)."""
    t_arr = np.asarray(t)
    slack = t_arr[..., None] - lat if t_arr.ndim == 1 else t_arr - lat  # t: scalar, per rate or per bucket
    return np.where(slack > 0, np.clip(rho[:, None] * np.exp(-theta[:, None] * np.maximum(slack, 0.0)),
                                       0.0, 1.0), 1.0)


@dataclass(frozen=True)
class OperatingPoint:
    """A candidate's goodput and the predicted state of a replica at that rate."""

    goodput_rps: float
    attainment: float
    ttft_p99_s: float
    tpot_p99_s: float
    concurrency: float
    step_s: float
    prefill_tokens: float
    reason: str


def goodput(perf: ReplicaPerf, role: Role, mix: LengthMix, slo: SLO, *, max_num_seqs: int,
            max_batched_tokens: int, kv_headroom: float = 0.9, max_utilisation: float = MAX_UTILISATION,
            steady: SteadyState | None = None) -> OperatingPoint:
    """The largest rate (on the grid) at which one replica meets the SLO, and its operating point.

    ``goodput_rps == 0`` with ``reason`` when even the lightest load misses the SLO. ``steady`` must
    come from :func:`rate_grid` rates of the same perf and role (it is shared across batch caps).
    """
    rates = steady.rate_rps if steady is not None else rate_grid(perf, role, mix)
    kw = {"max_num_seqs": max_num_seqs, "max_batched_tokens": max_batched_tokens, "kv_headroom": kv_headroom,
          "max_utilisation": max_utilisation}
    pr = predict(perf, role, mix, slo, rates, steady=steady, **kw)  # type: ignore[arg-type]
    ok = pr.ok
    if not ok[0]:
        return OperatingPoint(0.0, 0.0, math.nan, math.nan, 0.0, 0.0, 0.0, pr.reason[0])
    bad = np.flatnonzero(~ok)
    if bad.size:
        # refine the bracket [last ok, first failing] on a linear grid
        fine = np.linspace(rates[bad[0] - 1], rates[bad[0]], _REFINE + 2)[:-1]
        pr = predict(perf, role, mix, slo, fine, **kw)  # type: ignore[arg-type]
        fok = pr.ok
        fbad = np.flatnonzero(~fok)
        i = int(fbad[0] - 1) if fbad.size else fok.size - 1
        i = max(i, 0)
    else:
        i = ok.size - 1
    return OperatingPoint(
        goodput_rps=float(pr.rate_rps[i]), attainment=float(pr.attainment[i]),
        ttft_p99_s=pr.ttft_quantile(i), tpot_p99_s=float(pr.tpot_p99_s[i]),
        concurrency=float(pr.concurrency[i]), step_s=float(pr.step_s[i]),
        prefill_tokens=float(pr.prefill_tokens[i]), reason="ok")


def rate_grid(perf: ReplicaPerf, role: Role, mix: LengthMix, *, max_num_seqs: int = 1024,
              max_batched_tokens: int = 16384) -> FloatArray:
    """Rates to try: a geometric grid up to a throughput ceiling that ignores queueing."""
    kappa, ctx = mix_moments(mix)
    return _ceiling_rps(perf, role, mix, max_num_seqs, max_batched_tokens, kappa, ctx) * _GRID


SCORE_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(), "gpu": pl.String(), "tp": pl.Int64(), "pp": pl.Int64(), "ep": pl.Int64(),
    "role": pl.String(), "max_num_seqs": pl.Int64(), "max_batched_tokens": pl.Int64(), "gpus": pl.Int64(),
    "feasible": pl.Boolean(), "reason": pl.String(), "kv_capacity_tokens": pl.Int64(),
    "goodput_rps": pl.Float64(), "price_per_gpu_hour": pl.Float64(), "cost_per_hour": pl.Float64(),
    "usd_per_million_requests": pl.Float64(), "power_w": pl.Float64(), "pred_attainment": pl.Float64(),
    "pred_ttft_p99_s": pl.Float64(), "pred_tpot_p99_s": pl.Float64(), "concurrency": pl.Float64(),
    "step_s": pl.Float64(), "weight_dtype": pl.String(), "kv_dtype": pl.String(),
    "dp_attention": pl.Boolean(),
}
"""One row per candidate (the long table the CP-SAT model takes its variables from)."""


def config_key(gpu: str, tp: int, pp: int, ep: int, seqs: int, tokens: int, role: Role,
               precision: Precision = BF16, *, dp_attention: bool = False) -> str:
    """The candidate's unique name (its precision named unless bf16 weights and KV; ``dpa`` for DP
    attention).

    >>> config_key("H100-SXM", 2, 1, 1, 256, 8192, Role.AGGREGATED)
    'H100-SXM tp2 pp1 ep1 seqs256 tok8192 aggregated'
    >>> config_key("H200-SXM", 4, 1, 1, 64, 8192, Role.DECODE, Precision("fp8", "fp8"))
    'H200-SXM tp4 pp1 ep1 fp8+kv8 seqs64 tok8192 decode'
    >>> config_key("H200-SXM", 8, 1, 8, 256, 8192, Role.DECODE, dp_attention=True)
    'H200-SXM tp8 pp1 ep8 dpa seqs256 tok8192 decode'
    """
    prec = "" if precision == BF16 else f" {precision.label}"
    dpa = " dpa" if dp_attention else ""
    return f"{gpu} tp{tp} pp{pp} ep{ep}{dpa}{prec} seqs{seqs} tok{tokens} {role.value}"


def batch_caps(role: Role, options: ScoringOptions) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """The engine batch caps a role's candidates try: ``(max_batched_tokens, (max_num_seqs, ...))`` pairs.

    A prefill replica runs no decode batch (the largest sequence cap only), a decode replica no prompt
    chunks (a token budget just large enough for its batch); a budget below the sequence cap is skipped.

    >>> batch_caps(Role.DECODE, ScoringOptions(max_num_seqs=(64, 256), max_batched_tokens=(2048, 8192)))
    ((2048, (64, 256)),)
    """
    seqs_opts = options.max_num_seqs if role is not Role.PREFILL else (max(options.max_num_seqs),)
    tok_opts = options.max_batched_tokens if role is not Role.DECODE else (
        max(*options.max_num_seqs, min(options.max_batched_tokens)),)
    return tuple((int(tokens), tuple(int(s) for s in seqs_opts if role is Role.PREFILL or tokens >= s))
                 for tokens in tok_opts)


def candidate_count(model: ModelSpec, gpus: Sequence[GPUSpec], options: ScoringOptions) -> int:
    """Rows :func:`score_candidates` will score (the size of the work, known before any of it runs).

    >>> from planner.catalog import load_catalog
    >>> cat = load_catalog()
    >>> candidate_count(cat.model("Llama-3.1-8B"), [cat.gpu("H100-SXM")], ScoringOptions()) > 100
    True
    """
    per_layout = sum(len(seqs) for role in options.roles for _tokens, seqs in batch_caps(role, options))
    layouts = sum(enumerate_layouts(model, [g.name], max_gpus=min(options.max_gpus, 64)).height for g in gpus)
    return layouts * len(options.precisions) * per_layout


def score_gpu(model: ModelSpec, gpu: GPUSpec, mix: LengthMix, options: ScoringOptions) -> pl.DataFrame:
    """Every candidate on one GPU type, scored (one Ray task's worth of work).

    Returns:
        A frame in :data:`SCORE_SCHEMA`, infeasible candidates included with their reason.
    """
    layouts = enumerate_layouts(model, [gpu.name], max_gpus=min(options.max_gpus, 64))
    _prof, cal, gpu = engine_perf_inputs(options.engine, gpu)
    rows: list[dict[str, object]] = []
    slo = options.slo
    for prec, tp, pp, ep, dpa in ((p, *lay) for p in options.precisions for lay in zip(
            layouts["tp"].to_list(), layouts["pp"].to_list(), layouts["ep"].to_list(),
            layouts["dp_attention"].to_list(), strict=True)):
        par = Parallelism(tp=int(tp), pp=int(pp), ep=int(ep), dp_attention=bool(dpa))
        for role in options.roles:
            steady: SteadyState | None = None
            for tokens, seqs_opts in batch_caps(role, options):
                perf = None
                reason = ""
                try:
                    perf = build_replica_perf(model, gpu, par, max_batch_tokens=int(tokens), calibration=cal,
                                              expert_imbalance=options.expert_imbalance,
                                              weight_dtype=prec.weights, kv_dtype=prec.kv)
                except InputError as exc:
                    reason = exc.message
                if perf is not None and steady is None:
                    # step times do not depend on the token budget (only the KV capacity does)
                    grid = rate_grid(perf, role, mix, max_num_seqs=max(options.max_num_seqs),
                                     max_batched_tokens=max(options.max_batched_tokens))
                    steady = steady_state(perf, role, mix, grid)
                for seqs in seqs_opts:
                    rows.append(_score_row(perf, reason, gpu, par, role, int(seqs), int(tokens), mix, slo,
                                           options, steady, prec))
    return pl.DataFrame(rows, schema=SCORE_SCHEMA)


def _score_row(perf: ReplicaPerf | None, reason: str, gpu: GPUSpec, par: Parallelism, role: Role, seqs: int,
               tokens: int, mix: LengthMix, slo: SLO, options: ScoringOptions,
               steady: SteadyState | None, prec: Precision = BF16) -> dict[str, object]:
    row: dict[str, object] = {
        "key": config_key(gpu.name, par.tp, par.pp, par.ep, seqs, tokens, role, prec,
                          dp_attention=par.dp_attention), "gpu": gpu.name,
        "tp": par.tp, "pp": par.pp, "ep": par.ep, "role": role.value, "max_num_seqs": seqs,
        "max_batched_tokens": tokens, "gpus": par.gpus, "feasible": False, "reason": reason,
        "kv_capacity_tokens": 0, "goodput_rps": 0.0, "price_per_gpu_hour": gpu.price_per_hour,
        "cost_per_hour": par.gpus * gpu.price_per_hour, "usd_per_million_requests": None, "power_w": None,
        "pred_attainment": None, "pred_ttft_p99_s": None, "pred_tpot_p99_s": None, "concurrency": None,
        "step_s": None, "weight_dtype": prec.weights, "kv_dtype": prec.kv, "dp_attention": par.dp_attention,
    }
    if perf is None:
        return row
    row["kv_capacity_tokens"] = perf.kv_capacity_tokens
    need = mix.max_tokens if role is not Role.PREFILL else float(mix.input_tokens.max())
    if perf.kv_capacity_tokens < need:
        row["reason"] = (f"KV cache holds {perf.kv_capacity_tokens:,} tokens < {need:,.0f} of the longest "
                         "length bucket")
        return row
    op = goodput(perf, role, mix, slo, max_num_seqs=seqs, max_batched_tokens=tokens,
                 kv_headroom=options.kv_headroom, max_utilisation=options.max_utilisation, steady=steady)
    if op.goodput_rps <= 0:
        row["reason"] = op.reason
        return row
    kappa, ctx = mix_moments(mix)
    n, p = op.concurrency, op.prefill_tokens
    if options.power_basis is PowerBasis.TDP:
        power = par.gpus * gpu.tdp_w
    else:
        if role is Role.PREFILL:
            # a prefill replica's steps are full chunks while it is busy (its mean step is not defined)
            p = float(tokens)
        power = par.gpus * float(np.asarray(perf.step_power_w(p, kappa * p, n, n * ctx)))
    row.update(feasible=True, reason="ok", goodput_rps=op.goodput_rps,
               usd_per_million_requests=par.gpus * gpu.price_per_hour / (op.goodput_rps * 3600.0) * 1e6,
               power_w=power, pred_attainment=op.attainment, pred_ttft_p99_s=op.ttft_p99_s,
               pred_tpot_p99_s=op.tpot_p99_s, concurrency=op.concurrency, step_s=op.step_s)
    return row


def score_candidates(model: ModelSpec, gpus: Sequence[GPUSpec], mix: LengthMix,
                     options: ScoringOptions) -> pl.DataFrame:
    """Every candidate on every GPU type, in-process (see :mod:`planner.plan.run` for Ray)."""
    frames = [score_gpu(model, g, mix, options) for g in gpus]
    return pl.concat(frames) if frames else pl.DataFrame(schema=SCORE_SCHEMA)


def select_configs(scored: pl.DataFrame, *, per_group: int = 8) -> tuple[Config, ...]:
    """Deployable configurations for the solver: Pareto-pruned, then the best ``per_group`` by cost.

    Within one (GPU type, role) group, a row is dropped when another has no more GPUs per replica, no
    less goodput and no more power (and is better in one): such a row can be swapped for its dominator
    in any plan without raising cost, GPUs or watts, so pruning it never loses the optimum. The cap of
    ``per_group`` rows by USD per request is a heuristic that bounds the model size.
    """
    ok = scored.filter(pl.col("feasible") & (pl.col("goodput_rps") > 0))
    out: list[Config] = []
    for (_gpu, _role), grp in ok.group_by("gpu", "role", maintain_order=True):
        rows = grp.sort("usd_per_million_requests", "gpus", "key").unique(
            subset=["gpus", "goodput_rps", "power_w"], keep="first", maintain_order=True).to_dicts()
        keep: list[dict[str, object]] = []
        for r in rows:
            dominated = any(
                float(s["gpus"]) <= float(r["gpus"])  # type: ignore[arg-type]
                and float(s["goodput_rps"]) >= float(r["goodput_rps"])  # type: ignore[arg-type]
                and float(s["power_w"]) <= float(r["power_w"])  # type: ignore[arg-type]
                and (s["gpus"], s["goodput_rps"], s["power_w"]) != (r["gpus"], r["goodput_rps"], r["power_w"])
                for s in rows)
            if not dominated and len(keep) < per_group:
                keep.append(r)
        for r in keep:
            out.append(Config(key=str(r["key"]), gpu=str(r["gpu"]), role=Role(str(r["role"])),
                              gpus=int(r["gpus"]),  # type: ignore[call-overload]
                              goodput_rps=float(r["goodput_rps"]),  # type: ignore[arg-type]
                              price_per_gpu_hour=float(r["price_per_gpu_hour"]),  # type: ignore[arg-type]
                              power_w=float(r["power_w"]),  # type: ignore[arg-type]
                              tp=int(r["tp"]), pp=int(r["pp"]), ep=int(r["ep"]),  # type: ignore[call-overload]
                              max_num_seqs=int(r["max_num_seqs"]),  # type: ignore[call-overload]
                              max_batched_tokens=int(r["max_batched_tokens"]),  # type: ignore[call-overload]
                              weight_dtype=str(r["weight_dtype"]), kv_dtype=str(r["kv_dtype"]),
                              dp_attention=bool(r.get("dp_attention", False))))
    return tuple(out)

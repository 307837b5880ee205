"""The forecast-driven MPC as an autoscaling policy: ``mpc(ctx, params=...) -> ScalingDecision``.

Every ``interval_s`` the policy:

1. bins the context's counters (``requests_total``, ``prompt_tokens_total``,
   ``generation_tokens_total``) into per-bin rates (:func:`record`);
2. forecasts the request rate and both token rates over a horizon of at least the lead time (the cold start
   quantile ``lead_quantile``), with quantiles (:mod:`solvers.scaling.forecast`);
3. turns them into ready replicas needed per MPC step and quantile: the rate divided by one replica's
   capacity at the SLO for the recent length mix (:class:`~solvers.scaling.capacity.CapacityTable`), the
   step's worst bin, plus what clearing today's backlog takes (:func:`demand_levels`);
4. solves :mod:`solvers.scaling.mpc` for starts and stops and applies the first step's.

It sees only the :class:`~planner.autoscale.types.ScalingContext`, so it runs unchanged on live metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from planner.autoscale.types import ScalingContext, ScalingDecision, clamp, is_ready, own_state
from solvers.scaling.capacity import CapacityTable
from solvers.scaling.forecast import forecast_rate
from solvers.scaling.mpc import ScalingPlan, ScalingProblem, SolveParams, solve


@dataclass(frozen=True)
class MPCParams:
    """Tuning of the MPC policy.

    Attributes:
        capacity: per-replica capacity at the SLO over length mixes (None: ``replica_rps`` flat).
        replica_rps: fallback capacity in requests/s when no table is given.
        replica_concurrency: fallback requests in one replica at capacity.
        gpus_per_replica: GPUs per replica (GPU-hour accounting).
        min_replicas, max_replicas: bounds.
        interval_s: how often to re-plan.
        bin_s: history resolution.
        step_s: MPC step.
        lead_time_s: start-to-ready time planned for (use a high quantile of the cold start).
        horizon_s: planning horizon (at least ``lead_time_s`` + one step).
        history_s: history kept for the forecast.
        levels: demand quantile levels.
        weights: shortfall penalty per replica-step per level, as multiples of one replica-step's GPU cost.
        action_cost: price of one start or stop, in replica-steps.
        backlog_drain_s: queued requests are planned to be cleared within this time.
        min_history_bins: below this many bins of history the policy scales up only.
        max_up, max_down: ramp limits per step.
        solve: CP-SAT limits.
    """

    capacity: CapacityTable | None = None
    replica_rps: float = 4.0
    replica_concurrency: float = 64.0
    gpus_per_replica: int = 1
    min_replicas: int = 1
    max_replicas: int = 100
    interval_s: float = 15.0
    bin_s: float = 30.0
    step_s: float = 30.0
    lead_time_s: float = 60.0
    horizon_s: float = 600.0
    history_s: float = 1800.0
    levels: tuple[float, ...] = (0.5, 0.9, 0.99)
    weights: tuple[float, ...] = (8.0, 2.0, 0.6)
    action_cost: float = 0.3
    backlog_drain_s: float = 60.0
    min_history_bins: int = 6
    max_up: int = 16
    max_down: int = 4
    solve: SolveParams = field(default_factory=lambda: SolveParams(time_limit_s=0.2))


Sample = tuple[float, int, int, int]
"""``(t, requests_total, prompt_tokens_total, generation_tokens_total)`` at a bin boundary."""


@dataclass(frozen=True)
class MPCState:
    """History at bin boundaries, our own pending starts, the last plan."""

    samples: tuple[Sample, ...] = ()
    last_plan_s: float | None = None
    starts_s: tuple[float, ...] = ()
    plan: ScalingPlan | None = None


def record(ctx: ScalingContext, st: MPCState, p: MPCParams) -> MPCState:
    """Append a counter sample when a bin has elapsed; keep ``history_s``."""
    s: Sample = (ctx.now_s, ctx.requests_total, ctx.prompt_tokens_total, ctx.generation_tokens_total)
    if st.samples and ctx.now_s - st.samples[-1][0] < p.bin_s - 1e-9:
        return st
    kept = tuple(x for x in st.samples if x[0] >= ctx.now_s - p.history_s)
    return replace(st, samples=(*kept, s))


def rates(samples: tuple[Sample, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin request, prompt-token and generation-token rates."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.shape[0] < 2:
        z = np.zeros(0)
        return z, z, z
    dt = np.maximum(np.diff(arr[:, 0]), 1e-9)
    d = np.diff(arr[:, 1:], axis=0) / dt[:, None]
    return d[:, 0], d[:, 1], d[:, 2]


def demand_levels(ctx: ScalingContext, st: MPCState, p: MPCParams,
                  steps: int) -> tuple[tuple[float, ...], ...]:
    """Ready replicas needed per MPC step for each quantile level."""
    req, pt, gt = rates(st.samples)
    bins_per_step = max(1, round(p.step_s / p.bin_s))
    n_bins = steps * bins_per_step
    recent = slice(-max(1, round(300 / p.bin_s)), None)
    isl = float(pt[recent].sum() / req[recent].sum()) if req.size and req[recent].sum() > 0 else 1000.0
    osl = float(gt[recent].sum() / req[recent].sum()) if req.size and req[recent].sum() > 0 else 200.0
    cap = p.capacity.rps_at(isl, osl) if p.capacity is not None else p.replica_rps
    f_req = forecast_rate(req, bin_s=p.bin_s, steps=n_bins, levels=p.levels)
    f_pt = forecast_rate(pt, bin_s=p.bin_s, steps=n_bins, levels=p.levels)
    f_gt = forecast_rate(gt, bin_s=p.bin_s, steps=n_bins, levels=p.levels)
    conc = p.capacity.concurrency_at(isl, osl) if p.capacity is not None else p.replica_concurrency
    now_need = (sum(ctx.running) + sum(ctx.waiting) + ctx.pending_at_router) / max(conc, 1e-9)
    queued = sum(ctx.waiting) + ctx.pending_at_router
    backlog = queued / max(cap * p.backlog_drain_s, 1e-9)
    drain_steps = max(1, math.ceil(p.backlog_drain_s / p.step_s))
    out = []
    for lv in p.levels:
        per_bin = np.maximum.reduce([
            np.asarray(f_req.quantile(lv)) / cap,
            np.asarray(f_pt.quantile(lv)) / max(cap * isl, 1e-9),
            np.asarray(f_gt.quantile(lv)) / max(cap * osl, 1e-9),
        ])
        per_step = per_bin.reshape(steps, bins_per_step).max(axis=1)
        per_step[:drain_steps] += backlog
        if req.size < p.min_history_bins:  # too little history to forecast: hold today's load
            per_step = np.maximum(per_step, now_need)
        out.append(tuple(float(x) for x in per_step))
    return tuple(out)


def arrivals(ctx: ScalingContext, st: MPCState, p: MPCParams,
             steps: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Replicas already starting, by the step they should be ready, and the start times still pending.

    Our own start times are kept; the oldest are dropped as replicas become ready (the context only says
    how many are still starting). Starts we did not make are assumed ready after the full lead time.
    """
    starting = ctx.starting + sum(1 for i in range(len(ctx.running)) if not is_ready(ctx, i))
    mine = st.starts_s[-starting:] if starting else ()
    times = [ctx.now_s + p.lead_time_s] * (starting - len(mine)) + [t + p.lead_time_s for t in mine]
    out = [0] * steps
    for t in times:
        k = min(steps - 1, max(0, math.ceil((t - ctx.now_s) / p.step_s)))
        out[k] += 1
    return tuple(out), tuple(mine)


def mpc(ctx: ScalingContext, *, params: MPCParams | None = None) -> ScalingDecision[MPCState]:
    """One tick of the MPC policy (re-plans every ``interval_s``)."""
    p = params or MPCParams()
    st = record(ctx, own_state(ctx, MPCState, MPCState), p)
    if st.last_plan_s is not None and ctx.now_s - st.last_plan_s < p.interval_s - 1e-9:
        return ScalingDecision(ctx.replicas, st)
    steps = max(2, math.ceil(max(p.horizon_s, p.lead_time_s + p.step_s) / p.step_s))
    lead = max(1, math.ceil(p.lead_time_s / p.step_s))
    arriving, mine = arrivals(ctx, st, p, steps)
    ready_now = sum(1 for i in range(len(ctx.running)) if is_ready(ctx, i))
    c = p.gpus_per_replica * p.step_s / 3600.0
    problem = ScalingProblem(
        step_s=p.step_s,
        demand=demand_levels(ctx, st, p, steps),
        weights=tuple(w * c for w in p.weights),
        ready_now=ready_now,
        arriving=arriving,
        lead_steps=lead,
        min_replicas=min(p.min_replicas, p.max_replicas),
        max_replicas=max(p.max_replicas, ready_now + sum(arriving)),
        max_up=p.max_up,
        max_down=p.max_down,
        gpus_per_replica=p.gpus_per_replica,
        action_cost=p.action_cost * c,
    )
    plan = solve(problem, params=p.solve)
    change = plan.change_now
    if len(st.samples) < p.min_history_bins + 1:
        change = max(change, 0)  # too little history to trust a forecast of less load: never shrink yet
    desired = clamp(ctx.replicas + change, p.min_replicas, p.max_replicas)
    new_starts = mine + tuple(ctx.now_s for _ in range(max(0, desired - ctx.replicas)))
    return ScalingDecision(desired, replace(st, last_plan_s=ctx.now_s, starts_s=new_starts, plan=plan))

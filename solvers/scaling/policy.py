"""The forecast-driven MPC as an autoscaling policy: ``mpc(ctx, params=...) -> ScalingDecision``.

Every ``interval_s`` the policy:

1. bins the context's counters (``requests_total``, ``prompt_tokens_total``,
   ``generation_tokens_total``) and turns each bin into its *need*: replicas kept busy at the SLO, the
   bin's requests over one replica's capacity for that bin's own length mix, so prompt-heavy bins weigh
   their prefill work (:func:`bin_need`, :func:`record`);
2. forecasts the need over a horizon of at least the lead time (the cold start quantile
   ``lead_quantile``) as quantiles of each step's peak: today's level plus empirical excesses learned from
   the history (:func:`~solvers.scaling.forecast.peak_forecast`; the Holt forecast is an option);
3. adds what clearing today's backlog takes, and today's in-system load as a floor for the first steps
   (:func:`demand_levels`);
4. solves :mod:`solvers.scaling.mpc` for starts and stops and applies the first step's.

It sees only the :class:`~planner.contracts.scaling.ScalingContext`, so it runs unchanged on live metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from planner.contracts.scaling import ScalingContext, ScalingDecision, clamp, is_ready, own_state
from solvers.scaling.capacity import CapacityTable
from solvers.scaling.forecast import forecast_rate, peak_forecast
from solvers.scaling.mpc import ScalingPlan, ScalingProblem, SolveParams, solve
from solvers.scaling.risk import Risk


class Forecaster(StrEnum):
    """How the MPC forecasts need: empirical peak quantiles (default) or damped Holt with Gaussian bands."""

    PEAK = "peak"
    HOLT = "holt"


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
        horizon_s: how far the plan looks *past the lead time* (the MPC plans ``lead_time_s + horizon_s``).
            Why past it: a start pays GPU time from now but serves only after the lead, so a horizon that
            ends soon after the lead never finds a start worth its cold start; with 70B cold starts of
            six minutes the old "at least the lead plus one step" horizon never scaled up at all.
        history_s: history kept for the forecast.
        levels: demand quantile levels.
        weights: shortfall penalty per replica-step per level, as multiples of one replica-step's GPU cost.
        action_cost: price of one start or stop, in replica-steps.
        backlog_drain_s: queued requests are planned to be cleared within this time.
        min_history_bins: below this many bins of history the policy scales up only.
        max_up, max_down: ramp limits per step.
        forecaster: peak quantiles (default) or the Holt forecast.
        level_alpha: EWMA weight of the newest bin in the peak forecaster's level.
        reactive_floor: the first steps need at least this fraction of the replicas today's in-system
            requests fill at capacity (0: forecast only).
        season_s: period of the seasonal component (86,400: the same time yesterday), 0 for none. The
            forecast level of a step ``tau`` ahead moves by what the need did from ``now - season_s`` to
            ``now - season_s + tau`` (:func:`seasonal_delta`), so a daily ramp is started before it shows
            in today's bins; learned only from the past.
        season_bin_s: resolution of the seasonal memory (mean need per bin of this length).
        season_weight: multiplier of the seasonal delta (1: yesterday's ramp as it was).
        hold_s: each step's peak is forecast over at least this long (see
            :func:`~solvers.scaling.forecast.peak_forecast`'s ``hold_bins``).
        tail_from: levels above this quantile level come from an exponential tail fitted to the forecast
            excesses (:func:`~solvers.scaling.forecast.excess_quantiles`); None: empirical quantiles only.
        min_origins: past origins a forecast step needs for its own excess quantiles; steps with fewer pool
            the nearer steps' (see :func:`~solvers.scaling.forecast.peak_forecast`).
        replan_on_surge: re-plan before ``interval_s`` is up when the bin just closed needed more replicas
            than the fleet holds (ready and starting). Why: a long interval keeps a 14-day replay cheap,
            but a surge the plan did not foresee (a step up of the load, traffic back after an outage)
            would wait up to ``interval_s`` on top of the cold start; reactive baselines look every tick.
        busy_factor: load-following risk (0: off). A step whose expected level (the last five minutes'
            mean need plus the seasonal delta) is at least ``busy_factor`` x the typical level (the median
            of the seasonal memory's coarse bins, or of the history without one) is *busy*, and gets one
            more demand row: the ``busy_level`` quantile of its peak (exponential tail from
            ``busy_tail_from``), at ``busy_weight``. Why: the SLO's burst clause counts violation minutes
            among the busy minutes (arrivals above 1.25 x the median minute), where one missed spike
            fails the most requests; the same headroom all day (``with_risk`` burst-averse) also pays for
            it at night, when the default levels already suffice.
        busy_level, busy_weight, busy_tail_from: the busy row's quantile, shortfall weight (multiples of
            a replica-step's cost) and tail threshold (None: empirical quantile).
        solve: CP-SAT limits (a deterministic-time budget, so that a replay gives the same numbers on a
            busy and an idle machine; typical solves need well under a tenth of it).
    """

    capacity: CapacityTable | None = None
    replica_rps: float = 4.0
    replica_concurrency: float = 64.0
    gpus_per_replica: int = 1
    min_replicas: int = 1
    max_replicas: int = 100
    interval_s: float = 15.0
    bin_s: float = 10.0
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
    forecaster: Forecaster = Forecaster.PEAK
    level_alpha: float = 0.1
    hold_s: float = 120.0
    reactive_floor: float = 1.0
    season_s: float = 0.0
    season_bin_s: float = 300.0
    season_weight: float = 1.0
    tail_from: float | None = None
    min_origins: int = 8
    replan_on_surge: bool = True
    busy_factor: float = 0.0
    busy_level: float = 0.999
    busy_weight: float = 1.5
    busy_tail_from: float | None = 0.8
    solve: SolveParams = field(
        default_factory=lambda: SolveParams(time_limit_s=5.0, deterministic_time_s=0.05))


def with_risk(p: MPCParams, risk: Risk) -> MPCParams:
    """``p`` at a risk setting.

    * ``plain`` leaves it.
    * ``burst-averse`` buys for a 0.999 level of each step's peak, extrapolated past the largest burst
      seen by an exponential tail from the 0.8 quantile, with shortfall weights (8, 4, 2), all day.
    * ``load-following`` keeps the default levels and adds that 0.999 row (weight 1.5) only in busy steps:
      those whose expected level is above the typical one (``busy_factor`` 1, see :class:`MPCParams`).

    Why presets and not a per-trace tuning: the default levels cover what the history has shown, so a
    burst larger than any before it (Azure code's minutes 9 and 14, each a new record) is missed whatever
    the cold start; burst-averse pays for the records it has not seen yet. Measured (70B TP4, 360 s cold
    starts): Azure code 78.3 GPU-h at 0.9833 with 4 of 18 burst minutes in violation (plain) against
    140.4 at 0.9976 with none (burst-averse). On a diurnal workload burst-averse also pays for the
    headroom at night, when the default levels suffice; load-following spends it where the busy minutes
    are (ServeGen m-small 14 d: 13,998 GPU-h at 0.9982 with 42 of 4,350 burst minutes in violation,
    against plain's 11,399 at 0.9977 with 81 and burst-averse's 17,239 at 0.9989 with 21; with
    weight 2, 15,355 at 0.9984 with 28; busy from 1.25 x the typical level, 13,481 at 0.9979 with 54).
    """
    if risk is Risk.PLAIN:
        return p
    if risk is Risk.LOAD_FOLLOWING:
        return replace(p, busy_factor=1.0, busy_level=0.999, busy_weight=1.5, busy_tail_from=0.8)
    return replace(p, levels=(0.5, 0.9, 0.999), weights=(8.0, 4.0, 2.0), tail_from=0.8)


Sample = tuple[float, int, int, int]
"""``(t, requests_total, prompt_tokens_total, generation_tokens_total)`` at a bin boundary."""


@dataclass(frozen=True)
class MPCState:
    """History at bin boundaries (counters, and each bin's need), our own pending starts, the last plan.

    The seasonal memory (only with ``season_s > 0``): ``season[j]`` is the mean need over the coarse bin
    ``season_first + j`` (``season_bin_s`` long, counted from t = 0); ``season_open`` is the coarse bin
    being filled and ``season_acc`` its ``(sum of need x seconds, seconds)``.
    """

    samples: tuple[Sample, ...] = ()
    need: tuple[float, ...] = ()
    last_plan_s: float | None = None
    starts_s: tuple[float, ...] = ()
    plan: ScalingPlan | None = None
    season: tuple[float, ...] = ()
    season_first: int = 0
    season_open: int = -1
    season_acc: tuple[float, float] = (0.0, 0.0)


def bin_need(prev: Sample, cur: Sample, p: MPCParams) -> float:
    """Replicas the bin between two counter samples kept busy at the SLO (its *need*).

    The bin's requests divided by what one replica sustains at the SLO *for that bin's own length mix*
    (``prompt / requests``, ``generation / requests``; :class:`~solvers.scaling.capacity.CapacityTable`).
    Why per bin: a bin of long prompts costs a replica far more prefill time than the same number of
    chat requests, so prompt-heavy bursts show up as need, not only as request rate; and one need series
    (instead of separate request, prompt-token and generation-token forecasts whose upper quantiles are
    combined by a max) keeps the noise of one heavy-tailed series from setting the fleet size.
    """
    dt = max(cur[0] - prev[0], 1e-9)
    n_req = cur[1] - prev[1]
    if n_req <= 0:
        return 0.0
    if p.capacity is not None:
        return p.capacity.need(n_req, cur[2] - prev[2], cur[3] - prev[3], dt)
    return n_req / dt / max(p.replica_rps, 1e-9)


def record(ctx: ScalingContext, st: MPCState, p: MPCParams) -> MPCState:
    """Append a counter sample (and its bin's need) when a bin has elapsed; keep ``history_s``."""
    s: Sample = (ctx.now_s, ctx.requests_total, ctx.prompt_tokens_total, ctx.generation_tokens_total)
    if st.samples and ctx.now_s - st.samples[-1][0] < p.bin_s - 1e-9:
        return st
    new_need = bin_need(st.samples[-1], s, p) if st.samples else None
    need = (*st.need, new_need) if new_need is not None else st.need
    cut = 0
    while cut < len(st.samples) and st.samples[cut][0] < ctx.now_s - p.history_s:
        cut += 1
    # need[j] is the bin between samples[j] and samples[j + 1]: drop as many needs as samples
    st = replace(st, samples=(*st.samples[cut:], s), need=need[cut:])
    if p.season_s > 0 and new_need is not None:
        st = record_season(st, p, t0=st.samples[-2][0], t1=ctx.now_s, need=new_need)
    return st


def record_season(st: MPCState, p: MPCParams, *, t0: float, t1: float, need: float) -> MPCState:
    """Add one bin's need to the seasonal memory; close the coarse bin when the bin starts a new one.

    Keeps one period plus two coarse bins: enough to look up the same time one period ago and the
    horizon after it (the horizon is far shorter than a period).
    """
    idx = int(((t0 + t1) / 2) // p.season_bin_s)
    acc_sum, acc_dt = st.season_acc
    season, first, open_ = st.season, st.season_first, st.season_open
    if open_ >= 0 and idx != open_:
        mean = acc_sum / acc_dt if acc_dt > 0 else 0.0
        if not season:
            first = open_
        # coarse bins without any sample (no tick in them) repeat the last mean
        season = (*season, *([mean] * max(1, open_ - (first + len(season)) + 1)))
        keep = math.ceil(p.season_s / p.season_bin_s) + 2
        if len(season) > keep:
            first += len(season) - keep
            season = season[-keep:]
        acc_sum, acc_dt = 0.0, 0.0
    dt = max(t1 - t0, 0.0)
    return replace(st, season=season, season_first=first, season_open=idx,
                   season_acc=(acc_sum + need * dt, acc_dt + dt))


def seasonal_delta(st: MPCState, p: MPCParams, now_s: float, ahead_s: np.ndarray) -> np.ndarray:
    """How much the need rose (or fell) one period ago over each ``ahead_s``: ``S(now - P + a) - S(now - P)``.

    ``S`` is the seasonal memory interpolated linearly between coarse-bin centres. Zero until a full
    period of memory covers ``now - P`` (never a guess from the future).

    >>> p = MPCParams(season_s=600.0, season_bin_s=100.0)
    >>> st = MPCState()
    >>> for k in range(12):   # need ramps 0, 1, 2, ... per 100 s bin
    ...     st = record_season(st, p, t0=100.0 * k, t1=100.0 * k + 100.0, need=float(k))
    >>> seasonal_delta(st, p, 1000.0, np.array([100.0, 200.0])).round(6).tolist()
    [1.0, 2.0]
    """
    out = np.zeros(ahead_s.shape, dtype=np.float64)
    if p.season_s <= 0 or not st.season:
        return out
    centres = (st.season_first + np.arange(len(st.season)) + 0.5) * p.season_bin_s
    base = now_s - p.season_s
    if base < centres[0]:
        return out
    vals = np.asarray(st.season, dtype=np.float64)
    out = np.interp(base + ahead_s, centres, vals) - float(np.interp(base, centres, vals))
    return out * p.season_weight


def rates(samples: tuple[Sample, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin request, prompt-token and generation-token rates."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.shape[0] < 2:
        z = np.zeros(0)
        return z, z, z
    dt = np.maximum(np.diff(arr[:, 0]), 1e-9)
    d = np.diff(arr[:, 1:], axis=0) / dt[:, None]
    return d[:, 0], d[:, 1], d[:, 2]


def recent_capacity(st: MPCState, p: MPCParams, window_s: float = 300.0) -> float:
    """Requests/s one replica sustains at the SLO for the last ``window_s``' length mix."""
    if p.capacity is None:
        return p.replica_rps
    req, pt, gt = rates(st.samples)
    k = max(1, round(window_s / p.bin_s))
    n = float(req[-k:].sum()) if req.size else 0.0
    if n <= 0:
        return p.capacity.rps_at(1000.0, 200.0)
    return p.capacity.rps_at(float(pt[-k:].sum()) / n, float(gt[-k:].sum()) / n)


def demand_levels(ctx: ScalingContext, st: MPCState, p: MPCParams,
                  steps: int) -> tuple[tuple[float, ...], ...]:
    """Ready replicas needed per MPC step for each quantile level.

    The bins' need series (:func:`bin_need`) is forecast ``steps`` MPC steps ahead with quantiles of
    each step's busiest bin (:func:`~solvers.scaling.forecast.peak_forecast`, or the Holt forecast when
    ``forecaster`` says so); the backlog queued now is added to the steps that should clear it, and
    with too little history to forecast, today's load in the replicas (in-system requests over a
    replica's concurrency at capacity) is the floor.
    """
    need = np.asarray(st.need, dtype=np.float64)
    bins_per_step = max(1, round(p.step_s / p.bin_s))
    cap = recent_capacity(st, p)
    if p.forecaster is Forecaster.PEAK:
        f = peak_forecast(need, bin_s=p.bin_s, bins_per_step=bins_per_step, steps=steps, levels=p.levels,
                          alpha=p.level_alpha, hold_bins=max(1, round(p.hold_s / p.bin_s)),
                          tail_from=p.tail_from, min_origins=p.min_origins)
        per_level = [np.asarray(f.quantile(lv)) for lv in p.levels]
    else:
        fh = forecast_rate(need, bin_s=p.bin_s, steps=steps * bins_per_step, levels=p.levels)
        per_level = [np.asarray(fh.quantile(lv)).reshape(steps, bins_per_step).max(axis=1)
                     for lv in p.levels]
    if p.capacity is not None:
        isl, osl = 1000.0, 200.0
        req, pt, gt = rates(st.samples)
        if req.size and req[-10:].sum() > 0:
            isl, osl = float(pt[-10:].sum() / req[-10:].sum()), float(gt[-10:].sum() / req[-10:].sum())
        conc = p.capacity.concurrency_at(isl, osl)
    else:
        conc = p.replica_concurrency
    now_need = (sum(ctx.running) + sum(ctx.waiting) + ctx.pending_at_router) / max(conc, 1e-9)
    queued = sum(ctx.waiting) + ctx.pending_at_router
    backlog = queued / max(cap * p.backlog_drain_s, 1e-9)
    drain_steps = max(1, math.ceil(p.backlog_drain_s / p.step_s))
    season = seasonal_delta(st, p, ctx.now_s, p.step_s * np.arange(1, steps + 1, dtype=np.float64))
    out = []
    for lv_need in per_level:
        per_step = np.maximum(np.array(lv_need, dtype=np.float64) + season, 0.0)
        per_step[:drain_steps] += backlog
        if need.size < p.min_history_bins:  # too little history to forecast: hold today's load
            per_step = np.maximum(per_step, now_need)
        else:  # a burst the forecast missed: what is in the system now must be served until it drains
            per_step[:drain_steps] = np.maximum(per_step[:drain_steps], now_need * p.reactive_floor)
        out.append(tuple(float(x) for x in per_step))
    if p.busy_factor > 0:
        out.append(busy_row(need, st, p, steps, season, backlog, drain_steps))
    return tuple(out)


def busy_row(need: np.ndarray, st: MPCState, p: MPCParams, steps: int, season: np.ndarray,
             backlog: float, drain_steps: int) -> tuple[float, ...]:
    """The busy steps' extra demand row: the ``busy_level`` quantile where the level is busy, else 0."""
    if need.size < p.min_history_bins:
        return tuple(0.0 for _ in range(steps))
    bins_per_step = max(1, round(p.step_s / p.bin_s))
    typical = float(np.median(st.season)) if len(st.season) >= 12 else float(np.median(need))
    recent = float(need[-max(1, round(300.0 / p.bin_s)):].mean())
    busy = (recent + season) >= p.busy_factor * max(typical, 1e-9)
    if not busy.any():  # quiet hours: no second forecast
        return tuple(0.0 for _ in range(steps))
    f = peak_forecast(need, bin_s=p.bin_s, bins_per_step=bins_per_step, steps=steps, levels=(p.busy_level,),
                      alpha=p.level_alpha, hold_bins=max(1, round(p.hold_s / p.bin_s)),
                      tail_from=p.busy_tail_from, min_origins=p.min_origins)
    row = np.maximum(np.asarray(f.quantile(p.busy_level), dtype=np.float64) + season, 0.0)
    row[:drain_steps] += backlog
    return tuple(float(x) for x in np.where(busy, row, 0.0))


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


def surged(ctx: ScalingContext, before: MPCState, after: MPCState) -> bool:
    """Whether the bin closed at this tick needed more replicas than the fleet holds (ready and starting).

    >>> ctx = ScalingContext(now_s=30.0, replicas=2, running=(0,), waiting=(0,), kv_cache_usage_perc=(0.0,))
    >>> a = MPCState(samples=((0.0, 0, 0, 0), (15.0, 9, 0, 0)), need=(1.0,))
    >>> surged(ctx, a, replace(a, samples=(*a.samples, (30.0, 50, 0, 0)), need=(1.0, 3.5)))
    True
    >>> surged(ctx, a, replace(a, samples=(*a.samples, (30.0, 20, 0, 0)), need=(1.0, 1.5)))
    False
    >>> surged(ctx, a, a)   # no bin closed at this tick
    False
    """
    closed = after.samples[-1:] != before.samples[-1:] and len(after.samples) >= 2  # record() took a sample
    return closed and bool(after.need) and after.need[-1] > ctx.replicas


def mpc(ctx: ScalingContext, *, params: MPCParams | None = None) -> ScalingDecision[MPCState]:
    """One tick of the MPC policy (re-plans every ``interval_s``)."""
    p = params or MPCParams()
    before = own_state(ctx, MPCState, MPCState)
    st = record(ctx, before, p)
    if st.last_plan_s is not None and ctx.now_s - st.last_plan_s < p.interval_s - 1e-9 \
            and not (p.replan_on_surge and surged(ctx, before, st)):
        return ScalingDecision(ctx.replicas, st)
    steps = max(2, math.ceil((p.lead_time_s + p.horizon_s) / p.step_s))
    lead = max(1, math.ceil(p.lead_time_s / p.step_s))
    arriving, mine = arrivals(ctx, st, p, steps)
    ready_now = sum(1 for i in range(len(ctx.running)) if is_ready(ctx, i))
    c = p.gpus_per_replica * p.step_s / 3600.0
    problem = ScalingProblem(
        step_s=p.step_s,
        demand=demand_levels(ctx, st, p, steps),
        weights=tuple(w * c for w in (*p.weights, *((p.busy_weight,) if p.busy_factor > 0 else ()))),
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

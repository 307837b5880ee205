"""Closed-loop replay: a trace through replicas whose count a policy sets every control tick.

``run_policy(trace, perf, policy, config=LoopConfig(...)) -> LoopResult``. Every ``tick_s`` the loop:

1. advances the engine (:mod:`planner.autoscale.engine`) to the tick, routing arrivals on the way;
2. marks starting replicas whose cold start is over as ready, and hands them the gateway's queue;
3. builds the :class:`~planner.contracts.scaling.ScalingContext` a live exporter would build from vLLM's
   metrics (gauges per replica, cumulative counters and histograms), calls the policy, and applies the
   decision: new replicas start with a cold start drawn from the seeded distribution (the k-th start of
   every policy gets the same draw, so policies are compared on the same luck); removed replicas are
   those still starting first, then the ready ones with the least work, which drain (finish what they hold,
   take nothing new) before they release their GPUs.

GPU time is counted from the scale-up decision (the GPU is held while the model loads) to the moment a
replica has drained, and the run ends when the last request finishes.

Why not :func:`planner.sim.replay`: its ``SimConfig`` has no autoscaling yet. This loop is the stand-in;
policies see only :class:`ScalingContext`, so they move over unchanged when the replay simulator calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from planner.autoscale import engine as E  # noqa: N812 (field constants read as E.PI_*)
from planner.autoscale.coldstart import FITTED_COLD_START, ColdStart
from planner.contracts.scaling import PolicyFn, ScalingContext
from planner.perf.api import ReplicaPerf
from planner.sim.config import EngineConfig, SLOTarget
from traces.errors import InputError
from traces.schema import RequestTrace

TTFT_BUCKETS_S: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                                     2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
"""``le`` bounds of ``vllm:time_to_first_token_seconds`` (vLLM v1's buckets)."""

ITL_BUCKETS_S: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                                    5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
"""``le`` bounds of ``vllm:inter_token_latency_seconds``."""

ProgressFn = Callable[[float, float], None]
"""``progress(now_s, end_s)`` once per tick."""


@dataclass(frozen=True)
class LoopConfig:
    """The closed loop's options.

    Attributes:
        initial_replicas: replicas ready at time 0 (the same for every policy compared).
        max_replicas: slots available (no policy can hold more at once).
        tick_s: control-tick period (policies with longer periods skip ticks themselves).
        cold_start: distribution of the time from scale-up to ready.
        engine: per-replica scheduler limits.
        slo: the latency targets a request must meet.
        seed: seeds the cold-start draws.
        drain_limit_s: after the last arrival, stop this long later even if requests remain.
        minute_floor: a minute is "in violation" when fewer than this fraction of its arrivals met the SLO.
        burst_factor: a minute is a burst minute when its arrivals exceed this multiple of the median minute.
    """

    initial_replicas: int = 1
    max_replicas: int = 64
    tick_s: float = 5.0
    cold_start: ColdStart = FITTED_COLD_START
    engine: EngineConfig = field(default_factory=EngineConfig)
    slo: SLOTarget = field(default_factory=lambda: SLOTarget(ttft_s=2.0, tpot_s=0.1))
    seed: int = 0
    drain_limit_s: float = 3600.0
    minute_floor: float = 0.99
    burst_factor: float = 1.25

    def __post_init__(self) -> None:
        if not 0 <= self.initial_replicas <= self.max_replicas:
            raise InputError(f"initial_replicas {self.initial_replicas} not in [0, {self.max_replicas}]",
                             field="initial_replicas", expected="0 <= initial_replicas <= max_replicas")
        if not self.tick_s > 0:
            raise InputError("tick_s must be positive", field="tick_s", expected="seconds > 0")


@dataclass(frozen=True)
class LoopSummary:
    """One policy's outcome on one trace.

    Attributes:
        gpu_hours: GPU time held (loading, serving, draining).
        attainment: fraction of requests meeting both TTFT and TPOT targets (unfinished ones miss).
        ttft_p90_s, ttft_p99_s, tpot_p99_s: latency percentiles over finished requests.
        violation_minutes: minutes whose arrivals met the SLO less often than ``minute_floor``.
        burst_violation_minutes: those among the burst minutes.
        burst_minutes: minutes with arrivals above ``burst_factor`` x the median minute.
        scale_actions: ticks at which the replica count changed.
        oscillations: changes of direction between consecutive scale actions.
        peak_replicas, mean_replicas: of the requested count over the run.
        unfinished, rejected: requests that never finished / were refused.
        makespan_s: time of the last finish.
    """

    policy: str
    requests: int
    gpu_hours: float
    attainment: float
    ttft_p90_s: float
    ttft_p99_s: float
    tpot_p99_s: float
    violation_minutes: int
    burst_violation_minutes: int
    burst_minutes: int
    scale_actions: int
    oscillations: int
    peak_replicas: int
    mean_replicas: float
    unfinished: int
    rejected: int
    makespan_s: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and Parquet)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class LoopResult:
    """Per-request latencies, the replica timeline (one row per tick) and the summary."""

    requests: pl.DataFrame
    timeline: pl.DataFrame
    summary: LoopSummary
    final_state: object | None = None


def _hist(counts: np.ndarray) -> tuple[int, ...]:
    """Per-bucket counts to Prometheus' cumulative ``le`` counts (the +Inf bucket dropped)."""
    return tuple(int(x) for x in np.cumsum(counts)[:-1])


def build_context(now_s: float, a: dict[str, np.ndarray], state: object | None,
                  th: np.ndarray, ih: np.ndarray) -> ScalingContext:
    """The context from the engine's arrays: starting and ready replicas are listed (starting = unready)."""
    pi = a["pi"]
    ci = a["ci"]
    cf = a["cf"]
    listed = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_STARTING) | (pi[:, E.PI_STATE] == E.STATE_READY))
    ready = pi[listed, E.PI_STATE] == E.STATE_READY
    kvcap = max(int(ci[E.C_KVCAP]), 1)
    return ScalingContext(
        now_s=now_s,
        replicas=int(listed.size),
        running=tuple(int(x) for x in pi[listed, E.PI_NRUN]),
        waiting=tuple(int(x) for x in pi[listed, E.PI_NWAIT]),
        kv_cache_usage_perc=tuple(float(x) / kvcap for x in pi[listed, E.PI_KV]),
        ttft_buckets_s=TTFT_BUCKETS_S,
        ttft_counts=_hist(th),
        itl_buckets_s=ITL_BUCKETS_S,
        itl_counts=_hist(ih),
        state=state,
        ready=tuple(bool(x) for x in ready),
        pending_at_router=int(ci[E.C_RTAIL] - ci[E.C_RHEAD]),
        requests_total=int(ci[E.C_ARRIVED]),
        prompt_tokens_total=int(ci[E.C_PROMPT]),
        generation_tokens_total=int(ci[E.C_GEN]),
        ttft_sum_s=float(cf[E.CF_TTFT_SUM]),
        ttft_count=int(ci[E.C_TTFT_N]),
        itl_sum_s=float(cf[E.CF_ITL_SUM]),
        itl_count=int(ci[E.C_ITL_N]),
    )


def run_policy(trace: RequestTrace, perf: ReplicaPerf, policy: PolicyFn, *, config: LoopConfig,
               name: str = "policy", progress: ProgressFn | None = None) -> LoopResult:
    """Replay ``trace`` with ``policy`` setting the replica count every ``config.tick_s``.

    Args:
        trace: canonical request trace.
        perf: one replica's performance model (step time, KV capacity, GPUs).
        policy: ``decide(ctx) -> ScalingDecision``.
        config: loop options.
        name: the policy's name in the summary.
        progress: called once per tick.

    Returns:
        Latencies per request, the replica timeline and the summary.

    Raises:
        InputError: the replica has no KV room, or a request asks for no output.
    """
    df = trace.df
    arr = df["arrival_s"].to_numpy().astype(np.float64)
    inp = df["input_tokens"].to_numpy().astype(np.int64)
    out = df["output_tokens"].to_numpy().astype(np.int64)
    n = arr.size
    if n and int(out.min()) < 1:
        raise InputError("a request asks for no output token", path=trace.meta.source,
                         row=int(np.argmax(out < 1)) + 1, field="output_tokens", expected="an integer >= 1")
    kvcap = int(perf.kv_capacity_tokens)
    if kvcap < 1:
        raise InputError("the replica has no room for KV cache", field="kv_capacity_tokens",
                         expected="a model/GPU layout that leaves memory for the KV cache")
    eng = config.engine
    slots = config.max_replicas * 2 + 4
    a = E.new_arrays(n, slots, eng.max_num_seqs)
    ci = a["ci"]
    ci[E.C_MBT] = eng.max_batched_tokens
    ci[E.C_MAXSEQ] = eng.max_num_seqs
    ci[E.C_KVCAP] = kvcap
    tb = np.array(TTFT_BUCKETS_S)
    ib = np.array(ITL_BUCKETS_S)
    th = np.zeros(tb.size + 1, dtype=np.int64)
    ih = np.zeros(ib.size + 1, dtype=np.int64)
    kernel, kp = perf.kernel()
    pi, pf = a["pi"], a["pf"]
    alloc_t = np.full(slots, np.nan)
    ready_at = np.full(slots, np.inf)
    draws = config.cold_start.sample(np.random.default_rng(config.seed), 4096)
    n_starts = 0
    gpu_s = 0.0
    for r in range(config.initial_replicas):
        pi[r, E.PI_STATE] = E.STATE_READY
        alloc_t[r] = 0.0
    last_arrival = float(arr[-1]) if n else 0.0
    end_limit = last_arrival + config.drain_limit_s
    state: object | None = None
    rows: list[tuple[float, int, int, int, int, int, int]] = []
    i = 0
    t = 0.0
    k = 0
    while True:
        t = k * config.tick_s
        i = E.run_until(kernel, kp, t, i, arr, inp, out, a["rq"], a["rf"], pi, pf, a["run"], ci, a["cf"],
                        tb, th, ib, ih, a["gate"])
        E.try_idle_stop(t, pi, pf)
        # releases: drained replicas hand back their GPUs
        freed = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_FREE) & ~np.isnan(alloc_t))
        for fr in freed:
            r_ = int(fr)
            gpu_s += max(0.0, float(pf[r_, E.PF_STOP]) - float(alloc_t[r_]))
            alloc_t[r_] = np.nan
        # readiness
        became = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_STARTING) & (ready_at <= t))
        if became.size:
            pi[became, E.PI_STATE] = E.STATE_READY
            ready_at[became] = np.inf
        E.dispatch_gateway(kernel, kp, t, inp, out, a["rq"], pi, pf, a["run"], ci, a["gate"])
        finished = int(ci[E.C_DONE]) + int((a["rq"][:, E.RQ_PHASE] == 5).sum()) if i >= n else -1
        if (i >= n and finished >= n) or t >= end_limit:
            break
        ctx = build_context(t, a, state, th, ih)
        decision = policy(ctx)
        state = decision.state
        desired = max(0, min(config.max_replicas, int(decision.desired_replicas)))
        cur = ctx.replicas
        if desired > cur:
            free = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_FREE) & np.isnan(alloc_t))
            for r in free[: desired - cur]:
                pi[r, E.PI_STATE] = E.STATE_STARTING
                alloc_t[r] = t
                ready_at[r] = t + float(draws[n_starts % draws.size])
                n_starts += 1
        elif desired < cur:
            drop = cur - desired
            starting = np.flatnonzero(pi[:, E.PI_STATE] == E.STATE_STARTING)
            starting = starting[np.argsort(-ready_at[starting], kind="stable")]
            for r in starting[:drop]:
                pi[r, E.PI_STATE] = E.STATE_FREE
                gpu_s += t - float(alloc_t[r])
                alloc_t[r] = np.nan
                ready_at[r] = np.inf
            drop -= min(drop, starting.size)
            if drop:
                ready = np.flatnonzero(pi[:, E.PI_STATE] == E.STATE_READY)
                load = pi[ready, E.PI_NRUN] + pi[ready, E.PI_NWAIT]
                for r in ready[np.argsort(load, kind="stable")][:drop]:
                    pi[r, E.PI_STATE] = E.STATE_DRAINING
            E.try_idle_stop(t, pi, pf)
        st = pi[:, E.PI_STATE]
        rows.append((t, desired, int((st == E.STATE_READY).sum()), int((st == E.STATE_STARTING).sum()),
                     int((st == E.STATE_DRAINING).sum()), sum(ctx.running) + sum(ctx.waiting),
                     ctx.pending_at_router))
        if progress is not None:
            progress(t, last_arrival)
        k += 1
    rf = a["rf"]
    finish = rf[:, E.RF_FINISH]
    makespan = float(np.nanmax(finish)) if n and not np.all(np.isnan(finish)) else t
    end_t = max(makespan, 0.0)
    for held in np.flatnonzero(~np.isnan(alloc_t)):
        stop = float(pf[held, E.PF_STOP]) if pi[held, E.PI_STATE] == E.STATE_FREE else end_t
        gpu_s += max(0.0, min(stop, end_t) - float(alloc_t[held]))
    first = rf[:, E.RF_FIRST]
    rejected = a["rq"][:, E.RQ_PHASE] == 5
    requests = _request_table(arr, inp, out, first, finish, rejected)
    timeline = pl.DataFrame(rows, schema={"t_s": pl.Float64, "desired": pl.Int32, "ready": pl.Int32,
                                          "starting": pl.Int32, "draining": pl.Int32, "in_system": pl.Int64,
                                          "at_gateway": pl.Int64}, orient="row")
    summary = summarize(name, requests, timeline, gpu_hours=gpu_s * perf.gpus / 3600.0, makespan_s=makespan,
                        config=config)
    return LoopResult(requests=requests, timeline=timeline, summary=summary, final_state=state)


def _request_table(arr: np.ndarray, inp: np.ndarray, out: np.ndarray, first: np.ndarray, finish: np.ndarray,
                   rejected: np.ndarray) -> pl.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), np.nan)
    return pl.DataFrame({
        "arrival_s": arr, "input_tokens": inp.astype(np.int32), "output_tokens": out.astype(np.int32),
        "ttft_s": first - arr, "tpot_s": tpot, "finish_s": finish, "rejected": rejected,
    })


def _pct(x: np.ndarray, q: float) -> float:
    x = x[~np.isnan(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def summarize(name: str, requests: pl.DataFrame, timeline: pl.DataFrame, *, gpu_hours: float,
              makespan_s: float, config: LoopConfig) -> LoopSummary:
    """SLO attainment, violation minutes and scaling activity from the run's tables."""
    ttft = requests["ttft_s"].to_numpy()
    tpot = requests["tpot_s"].to_numpy()
    rej = requests["rejected"].to_numpy()
    arr = requests["arrival_s"].to_numpy()
    slo = config.slo
    with np.errstate(invalid="ignore"):
        met = (~rej) & ~np.isnan(ttft) & (ttft <= slo.ttft_s) & (np.isnan(tpot) | (tpot <= slo.tpot_s))
    minute = (arr // 60).astype(np.int64)
    n_min = int(minute.max()) + 1 if arr.size else 0
    per_min = np.bincount(minute, minlength=n_min).astype(np.float64)
    met_min = np.bincount(minute, weights=met.astype(np.float64), minlength=n_min)
    active = per_min > 0
    bad = active & (met_min < config.minute_floor * per_min)
    med = float(np.median(per_min[active])) if active.any() else 0.0
    burst = active & (per_min > config.burst_factor * med)
    desired = timeline["desired"].to_numpy().astype(np.int64) if timeline.height else np.zeros(0, np.int64)
    steps = np.diff(desired)
    moves = np.sign(steps[steps != 0])
    return LoopSummary(
        policy=name,
        requests=int(arr.size),
        gpu_hours=gpu_hours,
        attainment=float(met.mean()) if arr.size else float("nan"),
        ttft_p90_s=_pct(ttft, 90),
        ttft_p99_s=_pct(ttft, 99),
        tpot_p99_s=_pct(tpot, 99),
        violation_minutes=int(bad.sum()),
        burst_violation_minutes=int((bad & burst).sum()),
        burst_minutes=int(burst.sum()),
        scale_actions=int(moves.size),
        oscillations=int((moves[1:] != moves[:-1]).sum()) if moves.size > 1 else 0,
        peak_replicas=int(desired.max()) if desired.size else 0,
        mean_replicas=float(desired.mean()) if desired.size else 0.0,
        unfinished=int(np.isnan(requests["finish_s"].to_numpy()).sum() - rej.sum()),
        rejected=int(rej.sum()),
        makespan_s=makespan_s,
    )


def static_policy(replicas: int) -> PolicyFn:
    """A fixed fleet, as a policy (the reference every autoscaler is measured against)."""
    from planner.contracts.scaling import ScalingDecision

    def decide(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(replicas, None)

    return decide


"""Closed-loop runs: a trace through replicas whose count a policy sets every control tick.

``run_policy(trace, perf, policy, config=LoopConfig(...)) -> LoopResult`` runs the policy inside the
replay simulator (:func:`planner.sim.replay` with ``SimConfig.autoscale``: the one closed loop, with
the replica life cycle of :mod:`planner.sim.lifecycle`) and reads off what an autoscaling comparison
reports: SLO attainment, GPU-hours (held from the scale-up decision until a replica has drained),
violation minutes, burst minutes, scale actions and oscillations.

Cold starts are drawn in start order from one seeded generator, so the k-th start of every policy gets
the same draw and policies are compared on the same luck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from planner.contracts.scaling import PolicyFn, ScalingContext, ScalingDecision
from planner.perf.api import ReplicaPerf
from planner.sim import SimConfig, replay
from planner.sim.coldstart import FITTED_COLD_START, ColdStart
from planner.sim.config import AutoscaleConfig, EngineConfig, SLOTarget
from traces.errors import InputError
from traces.schema import RequestTrace


@dataclass(frozen=True)
class LoopConfig:
    """The closed loop's options.

    Attributes:
        initial_replicas: replicas ready at time 0 (the same for every policy compared).
        min_replicas, max_replicas: bounds the simulator holds every policy's wish to (the replay keeps
            at least one replica).
        tick_s: control-tick period (policies with longer periods skip ticks themselves).
        cold_start: distribution of the time from scale-up to ready.
        engine: per-replica scheduler limits.
        slo: the latency targets a request must meet.
        seed: seeds the cold-start draws.
        minute_floor: a minute is "in violation" when fewer than this fraction of its arrivals met the SLO.
        burst_factor: a minute is a burst minute when its arrivals exceed this multiple of the median minute.
    """

    initial_replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 64
    tick_s: float = 5.0
    cold_start: ColdStart = FITTED_COLD_START
    engine: EngineConfig = field(default_factory=EngineConfig)
    slo: SLOTarget = field(default_factory=lambda: SLOTarget(ttft_s=2.0, tpot_s=0.1))
    seed: int = 0
    minute_floor: float = 0.99
    burst_factor: float = 1.25

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InputError(f"replica bounds {self.min_replicas}..{self.max_replicas}", field="min_replicas",
                             expected="1 <= min_replicas <= max_replicas")
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise InputError(f"initial_replicas {self.initial_replicas} not in [{self.min_replicas}, "
                             f"{self.max_replicas}]", field="initial_replicas",
                             expected="min_replicas <= initial_replicas <= max_replicas")
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


def run_policy(trace: RequestTrace, perf: ReplicaPerf, policy: PolicyFn, *, config: LoopConfig,
               name: str = "policy") -> LoopResult:
    """Replay ``trace`` with ``policy`` setting the replica count every ``config.tick_s``.

    Args:
        trace: canonical request trace.
        perf: one replica's performance model.
        policy: ``decide(ctx) -> ScalingDecision``.
        config: bounds, tick, cold start, engine, SLO and the violation-minute definitions.
        name: the policy's name in the summary.

    Returns:
        Latencies per request, the replica timeline (one row per tick) and the summary.

    Raises:
        InputError: what :func:`planner.sim.replay` rejects (no KV room, a request asking for no output).
    """
    sim = SimConfig(
        replicas=config.initial_replicas, engine=config.engine, default_slo=config.slo,
        interval_s=config.tick_s, seed=config.seed,
        autoscale=AutoscaleConfig(policy=policy, interval_s=config.tick_s, min_replicas=config.min_replicas,
                                  max_replicas=config.max_replicas, cold_start=config.cold_start,
                                  seed=config.seed))
    res = replay(trace, perf, config=sim)
    rq = res.requests
    requests = pl.DataFrame({
        "arrival_s": rq["arrival_s"], "input_tokens": rq["input_tokens"],
        "output_tokens": rq["output_tokens"],
        "ttft_s": rq["ttft_s"].fill_null(np.nan), "tpot_s": rq["tpot_s"].fill_null(np.nan),
        "finish_s": rq["finish_s"].fill_null(np.nan), "rejected": rq["rejected"],
    })
    ts = res.timeseries
    timeline = pl.DataFrame({
        "t_s": ts["t_s"],
        "desired": (ts["replicas_serving"] + ts["replicas_starting"]).round(0).cast(pl.Int32),
        "ready": ts["replicas_serving"].round(0).cast(pl.Int32),
        "starting": ts["replicas_starting"].round(0).cast(pl.Int32),
        "draining": ts["replicas_draining"].round(0).cast(pl.Int32),
        "in_system": (ts["running"] + ts["waiting"]).round(0).cast(pl.Int64),
        "at_gateway": pl.Series([0] * ts.height, dtype=pl.Int64),
    })
    summary = summarize(name, requests, timeline, gpu_hours=res.summary.gpu_hours,
                        makespan_s=res.summary.makespan_s, config=config)
    return LoopResult(requests=requests, timeline=timeline, summary=summary)


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
    def decide(ctx: ScalingContext) -> ScalingDecision[None]:
        return ScalingDecision(replicas, None)

    return decide


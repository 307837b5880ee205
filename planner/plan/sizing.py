"""First fleet sizing: per-replica capacity from the performance model, replicas from peak demand.

This is the walking skeleton's planner. It is deliberately simple and transparent so that the OR-Tools
planner (``solvers``) and replay verification can replace it behind the same ``solve(problem)`` seam:

1. Demand: the trace's peak per-window request rate and its mean prompt/output lengths.
2. Per candidate (GPU type x tensor-parallel degree), from the performance model:
   - decode: the largest batch ``B`` whose pure-decode step at the trace's mean context stays within the
     TPOT SLO and whose KV fits the cache; decode throughput ``B / step(B)`` tokens/s;
   - prefill: throughput of full chunks of ``chunk_tokens`` tokens; the chunk's latency must fit the
     TTFT SLO;
   - a replica's request capacity is the inverse of the GPU-time one request needs
     (``input/prefill_tps + output/decode_tps``), derated by a target utilisation so that queueing
     stays bounded (M/M/1-style headroom).
3. Replicas = ceil(peak rate / capacity); cost = replicas x GPUs per replica x price x hours.
4. The cheapest feasible candidate wins; ties go to fewer GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import polars as pl

from planner.catalog import GPUSpec, ModelSpec
from planner.perf.api import Parallelism, ReplicaPerf
from traces.errors import InputError
from traces.schema import RequestTrace


@dataclass(frozen=True)
class SLO:
    """Latency targets, at the 99th percentile."""

    ttft_p99_s: float = 2.0
    tpot_p99_s: float = 0.1


@dataclass(frozen=True)
class Demand:
    """What the trace asks of the fleet."""

    peak_rate_rps: float
    mean_rate_rps: float
    mean_input_tokens: float
    mean_output_tokens: float
    duration_s: float
    requests: int


@dataclass(frozen=True)
class Candidate:
    """One evaluated configuration."""

    gpu: str
    tp: int
    gpus_per_replica: int
    feasible: bool
    reason: str
    kv_capacity_tokens: int = 0
    decode_batch: int = 0
    decode_tps: float = 0.0
    prefill_tps: float = 0.0
    replica_rps: float = 0.0
    replicas: int = 0
    cost_per_hour: float = 0.0

    @property
    def gpus_total(self) -> int:
        return self.replicas * self.gpus_per_replica


@dataclass(frozen=True)
class PlanProblem:
    """Inputs of :func:`solve`."""

    model: ModelSpec
    gpus: tuple[GPUSpec, ...]
    demand: Demand
    slo: SLO = SLO()
    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    target_utilization: float = 0.7
    chunk_tokens: int = 2048


@dataclass(frozen=True)
class PlanResult:
    """The chosen configuration, every candidate considered, and the plan's total cost."""

    best: Candidate | None
    candidates: tuple[Candidate, ...]
    demand: Demand
    hours: float

    @property
    def total_cost(self) -> float:
        return 0.0 if self.best is None else self.best.cost_per_hour * self.hours


def demand_from_trace(trace: RequestTrace, *, window_s: float = 60.0) -> Demand:
    """Peak and mean request rate over fixed windows, and mean lengths.

    Raises:
        InputError: the trace is empty.
    """
    df = trace.df
    if df.height == 0:
        raise InputError("trace has no requests", path=trace.meta.source)
    duration = max(trace.duration_s, window_s)
    per_window = df.group_by((pl.col("arrival_s") // window_s).alias("w")).len()
    peak = float(per_window["len"].max()) / window_s  # type: ignore[arg-type]
    return Demand(
        peak_rate_rps=peak,
        mean_rate_rps=df.height / duration,
        mean_input_tokens=float(df["input_tokens"].mean()),  # type: ignore[arg-type]
        mean_output_tokens=float(df["output_tokens"].mean()),  # type: ignore[arg-type]
        duration_s=duration,
        requests=df.height,
    )


def _largest_decode_batch(perf: ReplicaPerf, context: float, tpot_s: float, kv_capacity: int) -> int:
    """Largest B with step(B) <= tpot and B * context <= KV capacity (step time grows with B)."""
    by_kv = int(kv_capacity // max(context, 1.0))
    lo, hi = 0, max(min(by_kv, 4096), 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        t = float(perf.step_time_s(0.0, 0.0, float(mid), float(mid) * context))
        if t <= tpot_s:
            lo = mid
        else:
            hi = mid - 1
    return lo


def evaluate_candidate(perf: ReplicaPerf, gpu: GPUSpec, tp: int, problem: PlanProblem) -> Candidate:
    """Size one configuration (see module docstring)."""
    d, slo = problem.demand, problem.slo
    context = d.mean_input_tokens + d.mean_output_tokens / 2.0
    batch = _largest_decode_batch(perf, context, slo.tpot_p99_s, perf.kv_capacity_tokens)
    base = Candidate(
        gpu=gpu.name,
        tp=tp,
        gpus_per_replica=perf.gpus,
        feasible=False,
        reason="",
        kv_capacity_tokens=perf.kv_capacity_tokens,
    )
    if batch < 1:
        return replace(base, reason="no decode batch meets the TPOT SLO within the KV capacity")
    decode_tps = batch / float(perf.step_time_s(0.0, 0.0, float(batch), float(batch) * context))
    n = float(problem.chunk_tokens)
    chunk_s = float(perf.step_time_s(n, n * (n + 1) / 2.0, 0.0, 0.0))
    if chunk_s > slo.ttft_p99_s:
        return replace(
            base, reason=f"a {problem.chunk_tokens}-token prefill chunk takes {chunk_s:.2f} s > TTFT SLO"
        )
    prefill_tps = n / chunk_s
    busy_s = d.mean_input_tokens / prefill_tps + d.mean_output_tokens / decode_tps
    replica_rps = problem.target_utilization / busy_s
    replicas = max(1, math.ceil(d.peak_rate_rps / replica_rps))
    return Candidate(
        gpu=gpu.name,
        tp=tp,
        gpus_per_replica=perf.gpus,
        feasible=True,
        reason="ok",
        kv_capacity_tokens=perf.kv_capacity_tokens,
        decode_batch=batch,
        decode_tps=decode_tps,
        prefill_tps=prefill_tps,
        replica_rps=replica_rps,
        replicas=replicas,
        cost_per_hour=replicas * perf.gpus * gpu.price_per_hour,
    )


def evaluate_gpu(problem: PlanProblem, gpu: GPUSpec) -> list[Candidate]:
    """All TP options of one GPU type (a unit of work for one Ray task)."""
    from planner.perf import build_replica_perf

    out: list[Candidate] = []
    for tp in problem.tp_options:
        if tp > gpu.gpus_per_node:
            continue
        try:
            perf = build_replica_perf(problem.model, gpu, Parallelism(tp=tp))
        except InputError as exc:
            out.append(
                Candidate(gpu=gpu.name, tp=tp, gpus_per_replica=tp, feasible=False, reason=exc.message)
            )
            continue
        out.append(evaluate_candidate(perf, gpu, tp, problem))
    return out


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """Cheapest feasible candidate; ties broken by fewer GPUs, then lower TP."""
    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        return None
    return min(feasible, key=lambda c: (round(c.cost_per_hour, 6), c.gpus_total, c.tp))


def solve(problem: PlanProblem) -> PlanResult:
    """Evaluate every candidate in-process and pick the cheapest (see :mod:`planner.plan.run` for Ray)."""
    cands = [c for g in problem.gpus for c in evaluate_gpu(problem, g)]
    return PlanResult(
        best=choose(cands),
        candidates=tuple(cands),
        demand=problem.demand,
        hours=problem.demand.duration_s / 3600.0,
    )

"""What a replay returns: per-request table, time series, power per scope and a summary.

Built from the shards' raw arrays by :func:`build_result`; every number a surface shows is computed here
once (surfaces never recompute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec
from planner.contracts.kv_tiers import KVTiers
from planner.perf.api import ReplicaPerf
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import EngineConfig, SimConfig
from planner.sim.state import prefill_time_per_token
from traces.schema import POWER_POLARS_SCHEMA, RequestTrace

if TYPE_CHECKING:
    from planner.sim.fault_loop import FaultStats
    from planner.sim.replay import ShardOutput

DEFAULT_CLASS = "default"
"""SLO class of requests whose trace has no ``slo_class``."""


@dataclass(frozen=True)
class ClassSummary:
    """Latency and SLO attainment of one SLO class.

    Attributes:
        attainment: fraction of the class's requests whose TTFT and TPOT both met the targets
            (rejected requests count as misses).
        p99_met: whether the class's p99 TTFT and p99 TPOT are within the targets.
    """

    slo_class: str
    requests: int
    ttft_target_s: float
    tpot_target_s: float
    attainment: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    p99_met: bool


@dataclass(frozen=True)
class TierSummary:
    """What one KV tier below HBM did in a replay (:mod:`planner.contracts.kv_tiers`).

    Attributes:
        hit_tokens: prompt tokens loaded from it when their requests were first admitted (part of
            ``cached_prefix_tokens``).
        hit_ratio: ``hit_tokens`` over all prompt tokens.
        loaded_gb: KV read from it into HBM, every admission (re-admissions after preemption too),
            summed over the replica's GPUs.
        stored_gb: KV written into it (blocks evicted from the level above).
        load_s: seconds its loads took (bytes over bandwidth, every load), summed over loads.
        prefill_s_saved: an estimate of the GPU seconds its hits saved: the tokens it served, priced at
            the perf model's prefill seconds per token of a full chunk, less ``load_s``. Overlapped loads
            hide behind compute, so what TTFT gains is best read from a replay without the tier
            (``fleetwise kv-tiers`` shows both).
    """

    name: str
    hit_tokens: int
    hit_ratio: float
    loaded_gb: float
    stored_gb: float
    load_s: float
    prefill_s_saved: float = 0.0


@dataclass(frozen=True)
class SessionSummary:
    """How long sessions took: from a session's first arrival to its last turn's finish.

    Why it is the number to compare: in a closed-loop replay (:mod:`planner.sim.session_loop`) a slow
    turn delays every later turn of its session, so queueing shows up here more than in per-request
    latencies; in an open-loop replay the same definition gives the time the recorded schedule implies.

    Attributes:
        sessions: sessions with at least one finished turn.
        closed_loop: whether later turns waited for their predecessors (else: trace arrivals).
        mean_s, p50_s, p99_s, max_s: completion time statistics, seconds.
        turns_mean: turns per session.
    """

    sessions: int
    closed_loop: bool
    mean_s: float
    p50_s: float
    p99_s: float
    max_s: float
    turns_mean: float


@dataclass(frozen=True)
class AnswerSummary:
    """When the answer starts, for traces whose outputs begin with reasoning (``reasoning_tokens``).

    Why: a reasoning model's first token is a thinking token; what a chat user waits for is the first
    answer token, ``TTFT + reasoning_tokens x TPOT`` (each request's own mean gap), which long reasoning
    makes tens of seconds while TTFT stays short.

    Attributes:
        requests: requests with a reasoning count that got a first token.
        reasoning_share: reasoning tokens over their output tokens.
        p50_s, p99_s, max_s: time to the first answer token, seconds.
    """

    requests: int
    reasoning_share: float
    p50_s: float
    p99_s: float
    max_s: float


def answer_summary(requests: pl.DataFrame) -> AnswerSummary | None:
    """Time to first answer token from a per-request table with ``first_answer_s`` (None without one)."""
    if "first_answer_s" not in requests.columns:
        return None
    got = requests.filter(pl.col("first_answer_s").is_not_null())
    if got.height == 0:
        return None
    t = got["first_answer_s"].to_numpy().astype(np.float64)
    reasoning = float(got["reasoning_tokens"].cast(pl.Int64).sum())
    output = float(got["output_tokens"].cast(pl.Int64).sum())
    return AnswerSummary(requests=got.height, reasoning_share=reasoning / output if output else 0.0,
                         p50_s=_pct(t, 50), p99_s=_pct(t, 99), max_s=float(t.max()))


def session_summary(requests: pl.DataFrame, *, closed_loop: bool) -> SessionSummary | None:
    """Completion time per session from a per-request table with ``session_id`` (None without one)."""
    if "session_id" not in requests.columns:
        return None
    per = (requests.filter(pl.col("session_id").is_not_null())
           .group_by("session_id")
           .agg((pl.col("finish_s").max() - pl.col("arrival_s").min()).alias("span"), pl.len().alias("turns"))
           .filter(pl.col("span").is_not_null()))
    if per.height == 0:
        return None
    span = per["span"].to_numpy().astype(np.float64)
    return SessionSummary(sessions=per.height, closed_loop=closed_loop, mean_s=float(span.mean()),
                          p50_s=_pct(span, 50), p99_s=_pct(span, 99), max_s=float(span.max()),
                          turns_mean=float(per["turns"].mean()))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SimSummary:
    """Cluster-level outcome of a replay.

    Attributes:
        makespan_s: from time 0 to the last finish (the period GPUs are counted for).
        goodput_rps: requests that met their SLO per second of makespan.
        gpu_hours: replicas x GPUs per replica x makespan.
        energy_kwh: from the power model (None without a GPU spec).
        cost_usd: GPU-hours x the GPU's price per hour (None without a GPU spec).
        violations: engine invariant violations (time going back, KV over capacity): always 0 unless
            there is a bug; reported so tests and users can see it.
    """

    requests: int
    completed: int
    rejected: int
    replicas: int
    gpus_per_replica: int
    makespan_s: float
    throughput_rps: float
    output_tokens_per_s: float
    goodput_rps: float
    utilization: float
    preemptions: int
    cached_prefix_tokens: int
    prompt_tokens: int
    steps: int
    gpu_hours: float
    energy_kwh: float | None
    cost_usd: float | None
    classes: tuple[ClassSummary, ...]
    violations: int
    prefix_hit_ratio_bound: float | None = None
    """What one LRU cache holding the fleet's whole KV capacity would hit on the same requests
    (:mod:`planner.sim.prefix_bound`); None when not computed or the trace has no prefix hashes."""
    kv_tiers: tuple[TierSummary, ...] = ()
    """Per KV tier below HBM (empty for an HBM-only replay)."""
    kv_capacity_tokens: int = 0
    """KV tokens one replica's HBM holds: a request whose prompt plus output is larger fits nowhere
    (KV tiers hold evicted prefixes, not a running request's working set) and is rejected."""
    longest_rejected_tokens: int = 0
    """Prompt plus output of the longest rejected request (0 when none was)."""
    sessions: SessionSummary | None = None
    """Session completion times, for traces with ``session_id`` (None without)."""
    answers: AnswerSummary | None = None
    """Time to the first answer token, for traces with ``reasoning_tokens`` (None without)."""

    @property
    def prefix_hit_ratio(self) -> float:
        """Prompt tokens served from a prefix cache over all prompt tokens."""
        return self.cached_prefix_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        d: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__
                                if k not in ("classes", "kv_tiers", "sessions", "answers")}
        d["sessions"] = None if self.sessions is None else self.sessions.__dict__.copy()
        d["answers"] = None if self.answers is None else self.answers.__dict__.copy()
        d["classes"] = [c.__dict__.copy() for c in self.classes]
        d["kv_tiers"] = [t.__dict__.copy() for t in self.kv_tiers]
        d["prefix_hit_ratio"] = self.prefix_hit_ratio
        return d


@dataclass(frozen=True)
class SimResult:
    """A replay's outputs (polars frames; :mod:`planner.sim.writer` writes them as Parquet).

    Attributes:
        requests: one row per request, in trace order (see :func:`build_result` for the columns).
        timeseries: one row per interval: replicas, utilization, running, waiting, KV usage, tokens,
            power.
        power: long table in :data:`traces.schema.POWER_POLARS_SCHEMA` (average watts per interval per
            GPU, server, rack and row), or None without a GPU spec.
        summary: the headline numbers.
    """

    requests: pl.DataFrame
    timeseries: pl.DataFrame
    power: pl.DataFrame | None
    summary: SimSummary
    pools: tuple[PoolSummary, ...] = ()
    replicas: pl.DataFrame | None = None
    capping: CappingStats | None = None
    faults: FaultStats | None = None


@dataclass(frozen=True)
class PoolSummary:
    """One pool's outcome (multi-pool and P/D replays; see :mod:`planner.sim.cluster`).

    Attributes:
        name: pool name.
        role: ``both``, ``prefill`` or ``decode``.
        summary: the pool's own summary over the requests it served (for a decode pool: the requests
            it decoded; TTFT is then the prefill pool's).
        scale_ups, scale_downs: autoscaler actions taken (replicas started / drained or cancelled).
        scale_ups_deferred: scale-ups that found no free replica slot (retried at the next tick).
        peak_replicas: most replicas held at once (starting + serving + draining).
    """

    name: str
    role: str
    summary: SimSummary
    scale_ups: int = 0
    scale_downs: int = 0
    scale_ups_deferred: int = 0
    peak_replicas: int = 0


@dataclass(frozen=True)
class CappingStats:
    """What power capping did over a replay.

    Attributes:
        row_budget_w: the budget the policy defended.
        peak_row_w: highest row power over a telemetry period.
        mean_row_w: average row power over the makespan.
        over_budget_s: time the row was above its budget (telemetry periods).
        capped_s: time at least one server was clock-locked.
        capped_server_s: server-seconds of clock locks.
        brake_events: times the policy engaged the out-of-band brake (off -> on).
        brake_s: time the brake was engaged.
        policy_calls: telemetry ticks at which the policy was called.
    """

    row_budget_w: float
    peak_row_w: float
    mean_row_w: float
    over_budget_s: float
    capped_s: float
    capped_server_s: float
    brake_events: int
    brake_s: float
    policy_calls: int

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)



def tpot_s(first: NDArray[np.float64], finish: NDArray[np.float64], output_tokens: NDArray[Any]
           ) -> NDArray[np.float64]:
    """Time per output token after the first: ``(finish - first) / (outputs - 1)``, NaN for one-token
    answers and unfinished requests (the one definition every replay table uses)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out: NDArray[np.float64] = np.where(output_tokens > 1,
                                            (finish - first) / np.maximum(output_tokens - 1, 1), np.nan)
    return out

def _pct(x: np.ndarray, q: float) -> float:
    x = x[~np.isnan(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def build_result(trace: RequestTrace, outputs: Sequence[ShardOutput], *, perf: ReplicaPerf,
                 config: SimConfig, gpu: GPUSpec | None) -> SimResult:
    """Join the shards' arrays into the result tables.

    Request columns: ``request_id`` (trace row), ``arrival_s``, ``first_token_s``, ``finish_s``,
    ``ttft_s``, ``tpot_s`` (mean time per output token after the first; null for one-token answers),
    ``e2e_s``, ``queueing_s`` (arrival to first scheduled), ``replica``, ``preemptions``,
    ``cached_prefix_tokens``, ``input_tokens``, ``output_tokens``, ``slo_class``, ``rejected`` (prompt
    plus output larger than the replica's whole KV cache: never admitted, as vLLM refuses it).
    """
    n = trace.num_requests
    R = config.replicas
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    sched = np.full(n, np.nan)
    replica = np.full(n, -1, dtype=np.int32)
    preempt = np.zeros(n, dtype=np.int32)
    cached = np.zeros(n, dtype=np.int32)
    tier_tokens = np.zeros((n, E.N_LEVELS), dtype=np.int64)
    rejected = np.zeros(n, dtype=bool)
    busy = np.zeros(R)
    steps = 0
    violations = 0
    n_int = max((o.ts.shape[0] for o in outputs), default=1)
    ts = np.zeros((n_int, R, E.N_TS))
    df = trace.df
    arrival = df["arrival_s"].to_numpy().astype(np.float64)
    for o in outputs:
        ids = o.request_ids
        if o.arrival_s is not None:  # closed loop: when each turn was actually sent
            arrival[ids] = o.arrival_s
        first[ids] = o.rf[:, E.F_FIRST]
        finish[ids] = o.rf[:, E.F_FINISH]
        sched[ids] = o.rf[:, E.F_SCHED]
        local = o.rq[:, E.R_REP]
        replica[ids] = np.where(local >= 0, o.replica_ids[np.maximum(local, 0)], -1)
        preempt[ids] = o.rq[:, E.R_PREEMPT]
        cached[ids] = np.maximum(o.rq[:, E.R_CACHED], 0)
        tier_tokens[ids] = o.rq[:, E.R_T1:E.R_T3 + 1]
        rejected[ids] = o.rq[:, E.R_PHASE] == E.PH_REJECTED
        busy[o.replica_ids] = o.busy_s
        steps += int(o.steps.sum())
        violations += o.violations
        ts[: o.ts.shape[0], o.replica_ids, :] = o.ts
    inp = df["input_tokens"].to_numpy()
    out = df["output_tokens"].to_numpy()
    classes = (df["slo_class"].fill_null(DEFAULT_CLASS) if "slo_class" in df.columns
               else pl.Series("slo_class", [DEFAULT_CLASS] * n, dtype=pl.String))
    # the engine's hand-over latency shifts every token the client sees (NaN stays NaN)
    first = first + handover_s(first, replica, ts, config.engine, config.interval_s)
    finish = finish + handover_s(finish, replica, ts, config.engine, config.interval_s)
    ttft = first - arrival
    tpot = tpot_s(first, finish, out)
    requests = pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": arrival,
        "first_token_s": first,
        "finish_s": finish,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": finish - arrival,
        "queueing_s": sched - arrival,
        "replica": replica,
        "preemptions": preempt,
        "cached_prefix_tokens": cached,
        "input_tokens": inp.astype(np.int32),
        "output_tokens": out.astype(np.int32),
        "slo_class": classes.to_numpy() if n else np.array([], dtype=object),
        "rejected": rejected,
    }, schema_overrides={"slo_class": pl.String}).with_columns(pl.col(pl.Float64).fill_nan(None))
    if "session_id" in df.columns:  # per-session completion times (summarize) need it
        requests = requests.with_columns(df["session_id"])
    if "reasoning_tokens" in df.columns:  # the first answer token follows the reasoning ones
        r = df["reasoning_tokens"]
        requests = requests.with_columns(r, (pl.col("ttft_s") + r.cast(pl.Float64)
                                             * pl.col("tpot_s").fill_null(0.0)).alias("first_answer_s"))
    if config.kv_tiers is not None:  # which tier served each request's prompt tokens beyond HBM
        requests = requests.with_columns(
            pl.Series(f"{lv.name}_prefix_tokens", tier_tokens[:, k - 1].astype(np.int32))
            for k, lv in config.kv_tiers.slots())

    makespan = float(np.nanmax(finish)) if n and not np.all(np.isnan(finish)) else 0.0
    n_used = max(1, int(np.ceil(makespan / config.interval_s))) if makespan > 0 else 1
    if n_used > ts.shape[0]:  # the hand-over latency can carry the last token past the last step's interval
        ts = np.concatenate([ts, np.zeros((n_used - ts.shape[0], *ts.shape[1:]))])
    ts = ts[:n_used]
    dt = config.interval_s
    t_start = np.arange(n_used) * dt
    span = np.minimum(dt, np.maximum(makespan - t_start, 0.0))
    span = np.where(span > 0, span, dt)
    gpus = int(perf.gpus)
    timeseries = pl.DataFrame({
        "t_s": t_start,
        "replicas": np.full(n_used, R, dtype=np.int32),
        "utilization": ts[:, :, E.T_BUSY].sum(axis=1) / (span * R),
        "running": ts[:, :, E.T_RUNNING].sum(axis=1) / span,
        "waiting": ts[:, :, E.T_WAITING].sum(axis=1) / span,
        "kv_usage": ts[:, :, E.T_KV].sum(axis=1) / (span * R * max(1, int(perf.kv_capacity_tokens)
                                                                     // config.engine.block_size)),
        "prefill_tokens": ts[:, :, E.T_PREFILL].sum(axis=1),
        "decode_tokens": ts[:, :, E.T_DECODE].sum(axis=1),
        "steps": ts[:, :, E.T_STEPS].sum(axis=1),
    })
    power_df: pl.DataFrame | None = None
    energy_kwh: float | None = None
    cost: float | None = None
    gpu_hours = R * gpus * makespan / 3600.0
    if gpu is not None:
        watts = _replica_power(ts, span, perf, gpu.idle_w)  # [interval, replica] average W per GPU
        energy_kwh = float((watts * span[:, None]).sum() * gpus / 3.6e6)
        cost = gpu_hours * gpu.price_per_hour
        timeseries = timeseries.with_columns(pl.Series("power_w", watts.sum(axis=1) * gpus))
        power_df = _power_scopes(watts, t_start, gpus, gpu.gpus_per_node, config)

    summary = summarize(requests, config=config, replicas=R, gpus_per_replica=gpus, makespan=makespan,
                        gpu_hours=gpu_hours, energy_kwh=energy_kwh, cost_usd=cost,
                        busy_s=float(busy.sum()), replica_s=R * makespan, steps=steps, violations=violations)
    need = (inp.astype(np.int64) + out.astype(np.int64))[rejected]
    summary = replace(summary, kv_capacity_tokens=int(perf.kv_capacity_tokens),
                      longest_rejected_tokens=int(need.max()) if need.size else 0)
    if config.kv_tiers is not None:
        summary = replace(summary, kv_tiers=tier_summaries(
            config.kv_tiers, [o.tier_io for o in outputs], tier_tokens, perf,
            trace.meta.block_size or config.engine.block_size, summary.prompt_tokens, config))
    return SimResult(requests=requests, timeseries=timeseries, power=power_df, summary=summary)


def tier_summaries(tiers: KVTiers, ios: Sequence[NDArray[np.int64] | None], tier_tokens: NDArray[np.int64],
                   perf: ReplicaPerf, hbt: int, prompt_tokens: int,
                   config: SimConfig) -> tuple[TierSummary, ...]:
    """Per tier: what it served (``tier_tokens``: per request, tokens from levels 1..3 at first admission)
    and moved (``ios``: the engines' per-level counters)."""
    per_token = prefill_time_per_token(perf, config.engine.max_batched_tokens)
    io = sum((x for x in ios if x is not None), np.zeros((E.N_LEVELS + 1, 2), np.int64))
    gb_per_token = float(perf.kv_bytes_per_token) * perf.gpus / 1e9
    out = []
    for k, lv in tiers.slots():
        hits = int(tier_tokens[:, k - 1].sum())
        loaded = int(io[k, E.TIO_LOADED])
        out.append(TierSummary(
            name=lv.name, hit_tokens=hits, hit_ratio=hits / prompt_tokens if prompt_tokens else 0.0,
            loaded_gb=loaded * gb_per_token, stored_gb=int(io[k, E.TIO_STORED]) * hbt * gb_per_token,
            load_s=loaded * lv.seconds_per_token(float(perf.kv_bytes_per_token)),
            prefill_s_saved=loaded * (per_token - lv.seconds_per_token(float(perf.kv_bytes_per_token)))))
    return tuple(out)


def summarize(requests: pl.DataFrame, *, config: SimConfig, replicas: int, gpus_per_replica: int,
              makespan: float, gpu_hours: float, energy_kwh: float | None, cost_usd: float | None,
              busy_s: float, replica_s: float, steps: int, violations: int) -> SimSummary:
    """The summary of a per-request table (whole cluster or one pool); SLO targets from ``config``.

    Args:
        replica_s: replica-seconds the replicas were held (utilization = ``busy_s / replica_s``).
    """
    n = requests.height
    ttft = requests["ttft_s"].fill_null(np.nan).to_numpy().astype(np.float64)
    tpot = requests["tpot_s"].fill_null(np.nan).to_numpy().astype(np.float64)
    finish = requests["finish_s"].fill_null(np.nan).to_numpy().astype(np.float64)
    rejected = requests["rejected"].to_numpy().astype(bool)
    out = requests["output_tokens"].to_numpy()
    cls_np = requests["slo_class"].to_numpy()
    met = np.zeros(n, dtype=bool)
    summaries = []
    for name in sorted(set(cls_np.tolist())):
        sel = cls_np == name
        tgt = config.slo_for(name)
        c_ttft = ttft[sel]
        c_tpot = tpot[sel]
        ok = (~rejected[sel]) & (c_ttft <= tgt.ttft_s) & ((c_tpot <= tgt.tpot_s) | np.isnan(c_tpot))
        ok &= ~np.isnan(c_ttft)
        met[sel] = ok
        p99_ttft = _pct(c_ttft, 99)
        p99_tpot = _pct(c_tpot, 99)
        summaries.append(ClassSummary(
            slo_class=str(name), requests=int(sel.sum()), ttft_target_s=tgt.ttft_s, tpot_target_s=tgt.tpot_s,
            attainment=float(ok.mean()) if sel.any() else float("nan"),
            ttft_p50_s=_pct(c_ttft, 50), ttft_p99_s=p99_ttft, tpot_p50_s=_pct(c_tpot, 50),
            tpot_p99_s=p99_tpot,
            p99_met=bool(p99_ttft <= tgt.ttft_s and (np.isnan(p99_tpot) or p99_tpot <= tgt.tpot_s)),
        ))
    done = ~np.isnan(finish)
    completed = int(done.sum())
    return SimSummary(
        requests=n, completed=completed, rejected=int(rejected.sum()), replicas=replicas,
        gpus_per_replica=gpus_per_replica, makespan_s=makespan,
        throughput_rps=completed / makespan if makespan > 0 else 0.0,
        output_tokens_per_s=float(out[done].sum()) / makespan if makespan > 0 else 0.0,
        goodput_rps=float(met.sum()) / makespan if makespan > 0 else 0.0,
        utilization=busy_s / replica_s if replica_s > 0 else 0.0,
        preemptions=int(requests["preemptions"].cast(pl.Int64).sum()),
        cached_prefix_tokens=int(requests["cached_prefix_tokens"].cast(pl.Int64).sum()),
        prompt_tokens=int(requests["input_tokens"].cast(pl.Int64).sum()),
        steps=steps, gpu_hours=gpu_hours, energy_kwh=energy_kwh, cost_usd=cost_usd, classes=tuple(summaries),
        violations=violations, sessions=session_summary(requests, closed_loop=config.closed_loop),
        answers=answer_summary(requests),
    )


def handover_s(t: np.ndarray, replica: np.ndarray, ts: np.ndarray, eng: EngineConfig,
               dt: float) -> np.ndarray:
    """Seconds from a token's step to the client: ``output_delay_s`` plus ``output_delay_steps`` times the
    replica's mean step time in the interval the token was made in (async scheduling hands a step's
    tokens over while the next step runs, so the lag grows with the step). ``ts``: the engine's time
    series at resolution ``dt``; ``replica``: its slot of each token's request (the single-pool replay
    and every pool of a cluster use this one rule)."""
    out = np.full(t.shape, eng.output_delay_s)
    if eng.output_delay_steps <= 0.0 or ts.shape[0] == 0 or t.size == 0:
        return out
    steps = ts[:, :, E.T_STEPS]
    mean_step = np.where(steps > 0, ts[:, :, E.T_BUSY] / np.maximum(steps, 1e-12), 0.0)
    ok = np.isfinite(t) & (replica >= 0)
    idx = np.clip((np.where(ok, t, 0.0) // dt).astype(np.int64), 0, ts.shape[0] - 1)
    rep = np.maximum(replica, 0).astype(np.int64)
    out += np.where(ok, eng.output_delay_steps * mean_step[idx, rep], 0.0)
    return out


def _replica_power(ts: np.ndarray, span: np.ndarray, perf: ReplicaPerf, idle_w: float) -> np.ndarray:
    """Average watts per GPU for each (interval, replica).

    Why from per-interval averages: the loop keeps only per-interval sums (power in the loop is for
    capping). Each interval's steps are charged the *energy* of its average step composition above idle
    (the dynamic terms are linear in FLOPs, bytes and steps, which average exactly) and the whole
    interval ``idle_w``. Charging the average step's *power* over the interval's busy time instead
    read high wherever a few prompt steps mix with many decode steps (a short average step at high
    power times the long real busy time): +5 to +11 % energy per token against vLLM on the H100.
    """
    steps = ts[:, :, E.T_STEPS]
    safe = np.maximum(steps, 1e-12)
    comp = (ts[:, :, E.T_PREFILL] / safe, ts[:, :, E.T_PAIRS] / safe, ts[:, :, E.T_DECODE] / safe,
            ts[:, :, E.T_DKV] / safe)
    p_step = np.broadcast_to(np.asarray(perf.step_power_w(*comp), dtype=np.float64), steps.shape)
    t_step = np.broadcast_to(np.asarray(perf.step_time_s(*comp), dtype=np.float64), steps.shape)
    p_floor = float(np.asarray(perf.step_power_w(0.0, 0.0, 0.0, 0.0)))  # the model's idle term
    busy = np.minimum(ts[:, :, E.T_BUSY], span[:, None])
    run_s = steps * t_step
    if getattr(perf, "spec_decode", None) is not None:
        # speculative decoding's token-equivalent step keeps its prefill whole, so it is not linear in
        # the composition: the average composition's time reads near a full prefill step for an
        # interval of mostly short decode steps. Its steps ran for the busy time the loop measured.
        run_s = busy
    dynamic = np.where(steps > 0, run_s * np.maximum(p_step - p_floor, 0.0), 0.0)
    energy = dynamic + busy * p_floor + (span[:, None] - busy) * idle_w
    out: np.ndarray = energy / span[:, None]
    return out


def _power_scopes(watts: np.ndarray, t_start: np.ndarray, gpus_per_replica: int, gpus_per_node: int,
                  config: SimConfig) -> pl.DataFrame:
    """Per-GPU watts laid out on servers, racks and rows (replica ``r`` owns GPUs ``r*g .. r*g+g-1``)."""
    n_int = watts.shape[0]
    per_gpu = np.repeat(watts, gpus_per_replica, axis=1)  # [interval, gpu]
    n_gpu = per_gpu.shape[1]
    gpu_ids = np.arange(n_gpu)
    server = gpu_ids // gpus_per_node
    rack = server // config.servers_per_rack
    row = rack // config.racks_per_row
    frames = []
    for scope, group in (("gpu", gpu_ids), ("server", server), ("rack", rack), ("row", row)):
        n_g = int(group.max()) + 1
        onehot = np.zeros((n_gpu, n_g))
        onehot[gpu_ids, group] = 1.0
        agg = per_gpu @ onehot  # sum of the GPUs' watts in each group
        frames.append(pl.DataFrame({
            "t_s": np.repeat(t_start, n_g),
            "scope": [scope] * (n_int * n_g),
            "id": np.tile(np.array([f"{scope}{i}" for i in range(n_g)], dtype=object), n_int),
            "power_w": agg.reshape(-1),
        }, schema=POWER_POLARS_SCHEMA))
    return pl.concat(frames)

"""Replay verification: a plan is never trusted from the queueing model alone.

Each plan variant (the solver's plan and the next-best single-configuration plans) is replayed window by
window: the requests that arrive in a window go through that window's replicas (shifted to start at 0,
queues empty at the window start). Where a window runs several configurations, its requests are split
between them in proportion to their goodput. A window of a disaggregated plan that runs one prefill and
one decode configuration is replayed as that pair (:func:`planner.sim.replay_cluster`: the prefill pool
hands each request's KV to the decode pool over the prefill GPUs' network). A window with more than one
configuration of a phase is checked approximately (``approximate``): TTFT from the prefill pools
replaying one-token answers, TPOT from the decode pools replaying whole requests (pessimistic: they also
run the prefills).

For each variant the report gives the predicted attainment (the queueing estimate at the rate each
replica actually sees) next to the replayed one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.perf.api import Parallelism
from planner.perf.engine_profile import DEFAULT_ENGINE, engine_perf_inputs
from planner.perf.model import RooflinePerf, build_replica_perf
from planner.plan.slo_classes import OTHER, SLOClass, labels, slo_of, targets
from planner.sim import (
    ClusterConfig,
    EngineConfig,
    Pool,
    PoolRole,
    SimConfig,
    SLOTarget,
    replay,
    replay_cluster,
)
from solvers.capacity import SLO, CapacityPlan, Config, LengthMix, Role, Window, predict, started
from solvers.capacity.problem import TargetKind
from traces.schema import RequestTrace

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Variant:
    """A plan to verify: a label, its configurations and replicas per window."""

    label: str
    configs: tuple[Config, ...]
    replicas: tuple[tuple[tuple[str, int], ...], ...]
    cost_usd: float


@dataclass(frozen=True, eq=False)
class ReplayTask:
    """One replay: a slice of the trace through ``replicas`` replicas of one configuration."""

    model: ModelSpec
    gpu: GPUSpec
    config: Config
    replicas: int
    trace: RequestTrace
    slo: SLO
    seed: int
    expert_imbalance: float = 1.0
    engine: str = DEFAULT_ENGINE
    decode: Config | None = None
    """With a prefill ``config``: the decode configuration its requests move to (a P/D replay)."""
    decode_replicas: int = 0
    decode_gpu: GPUSpec | None = None
    """The decode configuration's GPU type (when it differs from ``gpu``)."""


@dataclass(frozen=True, eq=False)
class ReplayOut:
    """Per request of the task's slice: TTFT and TPOT (nan when not served)."""

    ttft_s: FloatArray
    tpot_s: FloatArray


def _layout(c: Config) -> Parallelism:
    """A configuration's parallel layout."""
    return Parallelism(tp=c.tp, pp=c.pp, ep=c.ep, dp_attention=c.dp_attention)


def _replica(task: ReplayTask, c: Config, replicas: int,
             spec: GPUSpec) -> tuple[RooflinePerf, SimConfig, GPUSpec]:
    """One configuration's replica model and pool settings, as the task's engine runs it."""
    prof, cal, gpu = engine_perf_inputs(task.engine, spec)
    perf = build_replica_perf(task.model, gpu, _layout(c), calibration=cal,
                              max_batch_tokens=c.max_batched_tokens, expert_imbalance=task.expert_imbalance,
                              weight_dtype=c.weight_dtype, kv_dtype=c.kv_dtype)
    engine = EngineConfig(max_batched_tokens=max(c.max_batched_tokens, c.max_num_seqs),
                          max_num_seqs=c.max_num_seqs).with_profile(prof)
    cfg = SimConfig(replicas=max(1, replicas), engine=engine, seed=task.seed,
                    default_slo=SLOTarget(ttft_s=task.slo.ttft_s, tpot_s=task.slo.tpot_s))
    return perf, cfg, gpu


def run_replay(task: ReplayTask) -> ReplayOut:
    """Replay one task (the unit a Ray task runs): one pool, or a prefill pool handing its requests' KV
    to a decode pool over the prefill GPUs' network (:func:`planner.sim.replay_cluster`)."""
    perf, cfg, gpu = _replica(task, task.config, task.replicas, task.gpu)
    if task.decode is None:
        res = replay(task.trace, perf, config=cfg, gpu=gpu)
    else:
        d_perf, d_cfg, d_gpu = _replica(task, task.decode, task.decode_replicas, task.decode_gpu or task.gpu)
        pools = [Pool("prefill", perf, cfg, gpu=gpu, role=PoolRole.PREFILL, decode_pool="decode"),
                 Pool("decode", d_perf, d_cfg, gpu=d_gpu, role=PoolRole.DECODE)]
        res = replay_cluster(task.trace, pools, config=ClusterConfig(default_slo=cfg.default_slo))
    req = res.requests
    ttft = req["ttft_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    tpot = req["tpot_s"].cast(pl.Float64).fill_null(0.0).to_numpy()
    rejected = req["rejected"].to_numpy().astype(bool)
    ttft = np.where(rejected, np.inf, ttft)
    return ReplayOut(ttft_s=np.asarray(ttft, dtype=np.float64), tpot_s=np.asarray(tpot, dtype=np.float64))


MapFn = Callable[[Sequence[ReplayTask]], list[ReplayOut]]


def map_local(tasks: Sequence[ReplayTask]) -> list[ReplayOut]:
    """Run replay tasks one after the other in this process."""
    return [run_replay(t) for t in tasks]


@dataclass(frozen=True)
class WindowCheck:
    """One replayed window of a variant: what ran and what the replay measured.

    Attributes:
        window: window index in the plan.
        start_s: window start, seconds from the trace start.
        requests: requests that arrived in it.
        replicas: replicas per configuration key.
        gpus: GPUs those replicas hold.
        attainment: share of its requests meeting both targets.
        ttft_at_slo_s: TTFT at the SLO's statistic.
        tpot_at_slo_s: TPOT at the SLO's statistic.
        ttft_p50_s: median TTFT.
        tpot_p50_s: median TPOT.
        e2e_at_slo_s: end-to-end time at the end-to-end target's statistic (None without that target).
    """

    window: int
    start_s: float
    requests: int
    replicas: tuple[tuple[str, int], ...]
    gpus: int
    attainment: float
    ttft_at_slo_s: float
    tpot_at_slo_s: float
    ttft_p50_s: float
    tpot_p50_s: float
    e2e_at_slo_s: float | None = None


@dataclass(frozen=True)
class ClassCheck:
    """One SLO class of a replayed variant, against its own targets.

    Attributes:
        name: the class (``other``: requests no listed class claims, held to the plan's targets).
        requests: its requests replayed.
        ttft_target_s: its TTFT target.
        tpot_target_s: its TPOT target.
        attainment: share of its requests meeting both its targets.
        ttft_at_slo_s: its TTFT at the SLO's statistic.
        tpot_at_slo_s: its TPOT at the SLO's statistic.
        meets_slo: every one of its targets met at its statistic.
        e2e_target_s: its end-to-end target (None: none).
        e2e_at_slo_s: its end-to-end time at that target's statistic (None: no target).
    """

    name: str
    requests: int
    ttft_target_s: float
    tpot_target_s: float
    attainment: float
    ttft_at_slo_s: float
    tpot_at_slo_s: float
    meets_slo: bool
    e2e_target_s: float | None = None
    e2e_at_slo_s: float | None = None


@dataclass(frozen=True)
class Verification:
    """Predicted vs replayed outcome of one variant over the replayed windows.

    Attributes:
        label: ``plan`` or ``alt-N``.
        configs: the configuration keys.
        cost_usd: the variant's cost over the whole trace.
        windows: windows replayed.
        requests: requests replayed.
        predicted_attainment: share meeting both SLOs, queueing estimate.
        replayed_attainment: share meeting both SLOs in the replay.
        replayed_ttft_p99_s: replayed TTFT at p99.
        replayed_tpot_p99_s: replayed TPOT at p99.
        meets_slo: every replayed target (TTFT, TPOT, end to end when set) at its statistic within it.
        approximate: True for disaggregated variants (see the module docstring).
    """

    label: str
    configs: tuple[str, ...]
    cost_usd: float
    windows: int
    requests: int
    predicted_attainment: float
    replayed_attainment: float
    replayed_ttft_p99_s: float
    replayed_tpot_p99_s: float
    meets_slo: bool
    approximate: bool
    replayed_ttft_at_slo_s: float = float("nan")
    """Replayed TTFT at the SLO's statistic (``SLO.statistic``: a percentile, p99 by default, or the mean)."""
    replayed_tpot_at_slo_s: float = float("nan")
    """Replayed TPOT at the SLO's statistic."""
    by_window: tuple[WindowCheck, ...] = ()
    """The replayed windows one by one (what the report and the dashboard draw)."""
    goodput_rps: float = float("nan")
    """Requests per second that met both targets over the replayed windows (DistServe's goodput: the
    ``replayed_attainment`` share of the replayed rate)."""
    by_class: tuple[ClassCheck, ...] = ()
    """With SLO classes: each class against its own targets (``meets_slo`` is all of theirs)."""
    replayed_e2e_at_slo_s: float | None = None
    """Replayed end-to-end time (arrival to last token) at its target's statistic (None: no target)."""


def plan_variant(plan: CapacityPlan) -> Variant:
    """The solver's plan as a variant."""
    reps = tuple(tuple(sorted(plan.replicas(w).items())) for w in range(len(plan.windows)))
    return Variant(label="plan", configs=plan.configs, replicas=reps, cost_usd=plan.objective_usd or 0.0)


def single_variants(configs: Sequence[Config], windows: Sequence[Window], *, exclude: Sequence[str],
                    count: int) -> list[Variant]:
    """The next-best aggregated configurations alone, each sized per window by ``ceil(D / goodput)``; the
    cost counts the replicas started between windows as the solver does."""
    agg = sorted((c for c in configs if c.role is Role.AGGREGATED and c.key not in exclude),
                 key=lambda c: c.cost_per_goodput)
    out = []
    for k, c in enumerate(agg[:count]):
        reps = tuple(((c.key, int(np.ceil(w.demand_rps / c.goodput_rps - 1e-9))),) if w.demand_rps > 0 else ()
                     for w in windows)
        counts = [sum(n for _k, n in r) for r in reps]
        starts = sum(started(counts))
        cost = sum(n * c.price_per_hour * w.duration_s / 3600.0 for n, w in zip(counts, windows, strict=True))
        cost += starts * c.price_per_hour * c.start_s / 3600.0
        out.append(Variant(label=f"alt-{k + 1}", configs=(c,), replicas=reps, cost_usd=cost))
    return out


def pick_windows(windows: Sequence[Window], max_windows: int) -> list[int]:
    """All windows, or the busiest plus evenly spaced others up to ``max_windows``."""
    n = len(windows)
    if n <= max_windows:
        return list(range(n))
    peak = max(range(n), key=lambda i: windows[i].demand_rps)
    spaced = {round(x) for x in np.linspace(0, n - 1, max_windows - 1)}
    return sorted(spaced | {peak})[:max_windows]


def _slice(trace: RequestTrace, w: Window, *, last: bool = False) -> RequestTrace:
    """The window's requests, re-based at its start; the last window keeps its end (the trace's final
    arrival is at the trace's duration, which the half-open window would drop)."""
    t = pl.col("arrival_s")
    end = w.start_s + w.duration_s
    df = trace.df.filter((t >= w.start_s) & ((t <= end) if last else (t < end)))
    df = df.with_columns(pl.col("arrival_s") - w.start_s)
    return RequestTrace(df=df, meta=trace.meta)


def _split(n: int, weights: Sequence[float], seed: int) -> NDArray[np.int64]:
    """Assign ``n`` requests to parts in proportion to ``weights`` (seeded, deterministic)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)


def _class_parts(lab: NDArray[np.str_], reps: dict[str, int], by_key: dict[str, Config],
                 ) -> list[tuple[NDArray[np.int64], dict[str, int]]]:
    """A window's requests split by the pools that serve them: the rows of each class with dedicated
    configurations go to those, every other row to the configurations that serve any class."""
    dedicated = sorted({by_key[k].slo_class for k in reps if by_key[k].slo_class})
    parts: list[tuple[NDArray[np.int64], dict[str, int]]] = []
    for cls in dedicated:
        parts.append((np.flatnonzero(lab == cls).astype(np.int64),
                      {k: n for k, n in reps.items() if by_key[k].slo_class == cls}))
    shared = {k: n for k, n in reps.items() if not by_key[k].slo_class}
    rest = np.flatnonzero(~np.isin(lab, np.array(dedicated, dtype=str))).astype(np.int64)
    if shared:
        parts.append((rest, shared))
    return [(rows, r) for rows, r in parts if rows.size and r]


def verify(trace: RequestTrace, variants: Sequence[Variant], *, model: ModelSpec, gpus: dict[str, GPUSpec],
           windows: Sequence[Window], mix: LengthMix, slo: SLO, max_windows: int = 12, seed: int = 0,
           map_fn: MapFn = map_local, expert_imbalance: float = 1.0,
           engine: str = DEFAULT_ENGINE, classes: Sequence[SLOClass] = ()) -> list[Verification]:
    """Replay every variant on the chosen windows and compare with the queueing estimate.

    With ``classes``, each request is held to its class's targets (others to ``slo``), a configuration
    dedicated to a class serves only that class's requests, and the variant meets the SLO only when
    every class does."""
    chosen = pick_windows(windows, max_windows)
    tasks: list[ReplayTask] = []
    index: list[tuple[int, int, str, NDArray[np.int64], str]] = []  # variant, window, config, rows, kind
    predicted: dict[int, list[tuple[float, int]]] = {}
    approximate: set[int] = set()  # variants with a window whose split was replayed phase by phase
    slices = {w: _slice(trace, windows[w], last=w == len(windows) - 1) for w in chosen}
    window_labels = {w: labels(sl, classes) for w, sl in slices.items()}
    for vi, v in enumerate(variants):
        by_key = {c.key: c for c in v.configs}
        for w in chosen:
            sl = slices[w]
            if sl.num_requests == 0 or not v.replicas[w]:
                continue
            for idx, reps in _class_parts(window_labels[w], dict(v.replicas[w]), by_key):
                part_slo = slo_of(by_key[next(iter(reps))].slo_class, slo, classes)
                sub_sl = sl if idx.size == sl.num_requests else RequestTrace(df=sl.df[idx.tolist()],
                                                                            meta=sl.meta)
                approx = _part_tasks(sub_sl, idx, reps, by_key, windows[w], part_slo, tasks, index,
                                     predicted.setdefault(vi, []), vi=vi, w=w, model=model, gpus=gpus,
                                     mix=mix, seed=seed, expert_imbalance=expert_imbalance, engine=engine)
                if approx:
                    approximate.add(vi)
    outs = map_fn(tasks)
    results = []
    for vi, v in enumerate(variants):
        ttft_parts: dict[int, FloatArray] = {}
        tpot_parts: dict[int, FloatArray] = {}
        e2e_parts: dict[int, FloatArray] = {}
        for (vj, w, _k, rows, kind), out in zip(index, outs, strict=True):
            if vj != vi:
                continue
            n_w = slices[w].num_requests
            if kind in ("both", "ttft"):
                ttft_parts.setdefault(w, np.full(n_w, np.nan))[rows] = out.ttft_s
            if kind in ("both", "tpot"):
                tpot_parts.setdefault(w, np.full(n_w, np.nan))[rows] = out.tpot_s
        ws = sorted(set(ttft_parts) | set(tpot_parts))
        # a window replayed for one phase only (cannot happen for whole plans) counts as met for the other
        sizes = {w: slices[w].num_requests for w in ws}
        ttft = np.concatenate([ttft_parts.get(w, np.zeros(sizes[w])) for w in ws] or [np.zeros(0)])
        tpot = np.concatenate([tpot_parts.get(w, np.zeros(sizes[w])) for w in ws] or [np.zeros(0)])
        for w in ws:
            e2e_parts[w] = _e2e(ttft_parts.get(w, np.zeros(sizes[w])), tpot_parts.get(w, np.zeros(sizes[w])),
                                slices[w])
        e2e = np.concatenate([e2e_parts[w] for w in ws] or [np.zeros(0)])
        lab = np.concatenate([window_labels[w] for w in ws] or [np.zeros(0, dtype=str)])
        tt, pt, et = targets(lab, slo, classes)
        ok = _met(ttft, tpot, tt, pt) & (e2e <= et)
        preds = predicted.get(vi, [])
        n_pred = sum(n for _a, n in preds)
        pred = sum(a * n for a, n in preds) / n_pred if n_pred else float("nan")
        by_key = {c.key: c for c in v.configs}
        per_window = []
        for w in ws:
            n = sizes[w]
            wt = ttft_parts.get(w, np.zeros(n))
            wp = tpot_parts.get(w, np.zeros(n))
            wtt, wpt, wet = targets(window_labels[w], slo, classes)
            window_reps = tuple(sorted(v.replicas[w]))
            per_window.append(WindowCheck(
                window=w, start_s=windows[w].start_s, requests=n, replicas=window_reps,
                gpus=sum(by_key[k].gpus * r for k, r in window_reps),
                attainment=(float((_met(wt, wp, wtt, wpt) & (e2e_parts[w] <= wet)).mean()) if n
                            else float("nan")),
                ttft_at_slo_s=_stat(wt, slo, "ttft"), tpot_at_slo_s=_stat(wp, slo, "tpot"),
                ttft_p50_s=_at(wt, 50.0), tpot_p50_s=_at(wp, 50.0),
                e2e_at_slo_s=_e2e_stat(e2e_parts[w], slo)))
        by_class = _by_class(lab, ttft, tpot, e2e, ok, slo, classes)
        t99, p99 = _at(ttft, 99.0), _at(tpot, 99.0)
        t_slo, p_slo, e_slo = _stat(ttft, slo, "ttft"), _stat(tpot, slo, "tpot"), _e2e_stat(e2e, slo)
        meets = (all(c.meets_slo for c in by_class) if classes
                 else bool(t_slo <= slo.ttft_s and p_slo <= slo.tpot_s
                           and (e_slo is None or e_slo <= slo.limit("e2e"))))
        results.append(Verification(
            label=v.label, configs=tuple(c.key for c in v.configs), cost_usd=v.cost_usd, windows=len(ws),
            requests=int(ttft.size), predicted_attainment=pred,
            replayed_attainment=float(ok.mean()) if ok.size else float("nan"),
            replayed_ttft_p99_s=t99, replayed_tpot_p99_s=p99,
            meets_slo=meets, approximate=vi in approximate,
            replayed_ttft_at_slo_s=t_slo, replayed_tpot_at_slo_s=p_slo, replayed_e2e_at_slo_s=e_slo,
            by_window=tuple(per_window),
            goodput_rps=float(ok.sum()) / sum(windows[w].duration_s for w in ws) if ws else float("nan"),
            by_class=by_class))
    return results


def _part_tasks(sl: RequestTrace, idx: NDArray[np.int64], reps: dict[str, int], by_key: dict[str, Config],
                window: Window, slo: SLO, tasks: list[ReplayTask],
                index: list[tuple[int, int, str, NDArray[np.int64], str]],
                predicted: list[tuple[float, int]], *, vi: int, w: int, model: ModelSpec,
                gpus: dict[str, GPUSpec], mix: LengthMix, seed: int, expert_imbalance: float,
                engine: str) -> bool:
    """The replay tasks of one pool set in one window (``idx``: its rows in the window's slice); returns
    whether its prefill and decode had to be replayed apart (approximate)."""
    rate = sl.num_requests / window.duration_s
    agg = [k for k in reps if by_key[k].role is Role.AGGREGATED]
    groups: list[tuple[list[str], str]] = []
    if agg:
        groups.append((agg, "both"))
    pre = [k for k in reps if by_key[k].role is Role.PREFILL]
    dec = [k for k in reps if by_key[k].role is Role.DECODE]
    approximate = False
    if len(pre) == 1 and len(dec) == 1:
        # one prefill and one decode configuration: replayed as the P/D pair it is
        cp, cd = by_key[pre[0]], by_key[dec[0]]
        tasks.append(ReplayTask(model=model, gpu=gpus[cp.gpu], config=cp, replicas=reps[cp.key],
                                trace=sl, slo=slo, seed=seed, expert_imbalance=expert_imbalance,
                                engine=engine, decode=cd, decode_replicas=reps[cd.key],
                                decode_gpu=gpus[cd.gpu]))
        index.append((vi, w, cp.key, idx, "both"))
        att = math.prod(predicted_attainment(model, gpus[c.gpu], c, rate / reps[c.key], mix, slo,
                                             expert_imbalance, engine) for c in (cp, cd))
        predicted.append((att, sl.num_requests))
        pre, dec = [], []
    elif pre or dec:
        approximate = True
    if pre:
        groups.append((pre, "ttft"))
    if dec:
        groups.append((dec, "tpot"))
    for keys, kind in groups:
        wts = [by_key[k].goodput_rps * reps[k] for k in keys]
        part = _split(sl.num_requests, wts, seed + w)
        for j, k in enumerate(keys):
            rows = np.flatnonzero(part == j)
            if rows.size == 0:
                continue
            sub = RequestTrace(df=sl.df[rows.tolist()], meta=sl.meta)
            if kind == "ttft":
                one = pl.lit(1, dtype=pl.Int32).alias("output_tokens")
                sub = RequestTrace(df=sub.df.with_columns(one), meta=sub.meta)
            c = by_key[k]
            tasks.append(ReplayTask(model=model, gpu=gpus[c.gpu], config=c, replicas=reps[k],
                                    trace=sub, slo=slo, seed=seed, expert_imbalance=expert_imbalance,
                                    engine=engine))
            index.append((vi, w, k, idx[rows], kind))
            lam = rate * wts[j] / sum(wts) / reps[k]
            att = predicted_attainment(model, gpus[c.gpu], c, lam, mix, slo, expert_imbalance, engine)
            predicted.append((att, int(rows.size)))
    return approximate


def _by_class(lab: NDArray[np.str_], ttft: FloatArray, tpot: FloatArray, e2e: FloatArray,
              ok: NDArray[np.bool_], slo: SLO, classes: Sequence[SLOClass]) -> tuple[ClassCheck, ...]:
    """Each class's replayed outcome against its own targets (nothing without classes)."""
    if not classes:
        return ()
    out = []
    for name in [*(c.name for c in classes), OTHER]:
        sel = lab == name
        if not sel.any():
            continue
        target = slo_of(name, slo, classes)
        t, p = _stat(ttft[sel], target, "ttft"), _stat(tpot[sel], target, "tpot")
        e = _e2e_stat(e2e[sel], target)
        out.append(ClassCheck(name=name, requests=int(sel.sum()), ttft_target_s=target.ttft_s,
                              tpot_target_s=target.tpot_s, attainment=float(ok[sel].mean()),
                              ttft_at_slo_s=t, tpot_at_slo_s=p,
                              meets_slo=bool(t <= target.ttft_s and p <= target.tpot_s
                                             and (e is None or e <= target.limit("e2e"))),
                              e2e_target_s=target.e2e_s, e2e_at_slo_s=e))
    return tuple(out)


def _e2e(ttft: FloatArray, tpot: FloatArray, sl: RequestTrace) -> FloatArray:
    """Per request of a window: arrival to last token, ``TTFT + (out - 1) TPOT`` (the replay's TPOT is
    the mean gap after the first token; inf when not served)."""
    out1 = np.maximum(sl.df["output_tokens"].cast(pl.Float64).to_numpy() - 1.0, 0.0)
    return np.asarray(np.nan_to_num(ttft, nan=np.inf) + np.nan_to_num(tpot, nan=np.inf) * out1,
                      dtype=np.float64)


def _e2e_stat(x: FloatArray, slo: SLO) -> float | None:
    """End-to-end time at its target's statistic (None when the SLO sets no end-to-end target)."""
    return _stat(x, slo, "e2e") if slo.e2e_s is not None else None


def _met(ttft: FloatArray, tpot: FloatArray, ttft_target: FloatArray | float,
         tpot_target: FloatArray | float) -> NDArray[np.bool_]:
    """Per request: both its targets met (a request not served meets neither)."""
    return ((np.nan_to_num(ttft, nan=np.inf) <= ttft_target)
            & (np.nan_to_num(tpot, nan=np.inf) <= tpot_target))


def _stat(x: FloatArray, slo: SLO, kind: TargetKind) -> float:
    """``x`` at the statistic ``kind``'s target holds at: its mean or its percentile (a request not served
    counts as infinitely late, so it fails a mean as it fails a high percentile)."""
    if not slo.is_mean(kind):
        return _at(x, 100.0 * slo.quantile(kind))
    return float(np.mean(np.nan_to_num(x, nan=np.inf))) if x.size else float("nan")


def _at(x: FloatArray, q: float) -> float:
    """The ``q`` percentile, a request not served counting as infinitely late (nan when empty)."""
    return float(np.percentile(np.nan_to_num(x, nan=np.inf), q)) if x.size else float("nan")


def predicted_attainment(model: ModelSpec, gpu: GPUSpec, c: Config, rate_rps: float, mix: LengthMix,
                         slo: SLO, expert_imbalance: float = 1.0, engine: str = DEFAULT_ENGINE) -> float:
    """The queueing estimate's share of requests meeting the SLO at ``rate_rps`` per replica of ``c``."""
    pr = predict(_perf_of(model, gpu, c, expert_imbalance, engine), c.role, mix, slo, np.array([rate_rps]),
                 max_num_seqs=c.max_num_seqs, max_batched_tokens=c.max_batched_tokens)
    return float(pr.attainment[0])


def _perf_of(model: ModelSpec, gpu: GPUSpec, c: Config, expert_imbalance: float = 1.0,
             engine: str = DEFAULT_ENGINE) -> RooflinePerf:
    _prof, cal, gpu = engine_perf_inputs(engine, gpu)
    return build_replica_perf(model, gpu, _layout(c), calibration=cal,
                              max_batch_tokens=c.max_batched_tokens, expert_imbalance=expert_imbalance,
                              weight_dtype=c.weight_dtype, kv_dtype=c.kv_dtype)



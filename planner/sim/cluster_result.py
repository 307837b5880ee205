"""Assemble a cluster run's :class:`~planner.sim.result.SimResult`: requests, per-pool time
series, replica instances and power."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.cluster_power import server_base_w
from planner.sim.config import PowerConfig, SimConfig
from planner.sim.pool_run import PoolRun
from planner.sim.pools import F64, I64, ClusterConfig, Pool, PoolRole
from planner.sim.result import (
    DEFAULT_CLASS,
    CappingStats,
    PoolSummary,
    SimResult,
    handover_s,
    summarize,
    tier_summaries,
    tpot_s,
)
from traces.schema import POWER_POLARS_SCHEMA, RequestTrace


def instance_table(runs: Sequence[PoolRun], end: float) -> pl.DataFrame:
    rows = [it for r in runs for h in r.history for it in h]
    rows.sort(key=lambda i: i.inst)
    return pl.DataFrame({
        "replica": [i.inst for i in rows],
        "pool": [runs[i.pool].pool.name for i in rows],
        "slot": [i.slot for i in rows],
        "requested_s": [i.t_request for i in rows],
        "ready_s": [i.t_ready if math.isfinite(i.t_ready) else None for i in rows],
        "drain_s": [i.t_drain if math.isfinite(i.t_drain) else None for i in rows],
        "stopped_s": [min(i.t_stop, end) if math.isfinite(i.t_stop) else end for i in rows],
    }, schema={"replica": pl.Int64, "pool": pl.String, "slot": pl.Int64, "requested_s": pl.Float64,
               "ready_s": pl.Float64, "drain_s": pl.Float64, "stopped_s": pl.Float64})


def replica_of(r: PoolRun, slot: I64, t_route: F64) -> I64:
    """Global replica (instance) id of each request from its slot and routing time."""
    out = np.full(slot.size, -1, dtype=np.int64)
    for s in range(r.slots):
        h = r.history[s]
        if not h:
            continue
        sel = slot == s
        if not sel.any():
            continue
        starts = np.array([i.t_request for i in h])
        ids = np.array([i.inst for i in h], dtype=np.int64)
        k = np.clip(np.searchsorted(starts, t_route[sel], side="right") - 1, 0, len(h) - 1)
        out[sel] = ids[k]
    return out


def locked_mask(r: PoolRun, slot: I64, t0: F64, t1: F64, end: float) -> NDArray[np.bool_]:
    """Whether the request's replica slot was clock-locked at some time in ``[t0, t1]``."""
    res = np.zeros(slot.size, dtype=bool)
    for s in range(r.slots):
        iv = list(r.locks[s])
        if not np.isnan(r.lock_since[s]):
            iv.append((float(r.lock_since[s]), end))
        if not iv:
            continue
        sel = np.flatnonzero(slot == s)
        if sel.size == 0:
            continue
        starts = np.array([a for a, _ in iv])
        ends = np.array([b for _, b in iv])
        k = np.searchsorted(ends, t0[sel], side="right")
        ok = k < len(iv)
        hit = np.zeros(sel.size, dtype=bool)
        hit[ok] = starts[k[ok]] <= t1[sel][ok]
        res[sel] = hit
    return res


def build_result(trace: RequestTrace, pools: Sequence[Pool], runs: Sequence[PoolRun], config: ClusterConfig,
           applied: list[tuple[float, tuple[float | None, ...], bool]], calls: int) -> SimResult:
    df = trace.df
    n = df.height
    arrival = df["arrival_s"].to_numpy().astype(np.float64)
    inp = df["input_tokens"].to_numpy()
    out = df["output_tokens"].to_numpy()
    first = np.full(n, np.nan)
    first_step = np.full(n, np.nan)  # the first token's step end, before the hand-over (P/D transfer start)
    finish = np.full(n, np.nan)
    sched = np.full(n, np.nan)
    replica = np.full(n, -1, dtype=np.int64)
    dreplica = np.full(n, -1, dtype=np.int64)
    pool_col = np.full(n, "", dtype=object)
    dpool_col = np.full(n, None, dtype=object)
    preempt = np.zeros(n, dtype=np.int64)
    cached = np.zeros(n, dtype=np.int64)
    tier_tokens = np.zeros((n, E.N_LEVELS), dtype=np.int64)
    rejected = np.zeros(n, dtype=bool)
    xfer = np.full(n, np.nan)
    locked = np.zeros(n, dtype=bool)
    end_guess = 0.0
    for r in runs:
        rf = r.eng.rf
        if rf.size:
            end_guess = max(end_guess, float(np.nanmax(rf[:, E.F_FINISH])) if np.isfinite(
                rf[:, E.F_FINISH]).any() else 0.0)
    for r in runs:
        eng = r.eng
        m = eng.known
        rows = r.rows[:m]
        rq = eng.rq[:m]
        rf = eng.rf[:m]
        if r.faults is not None:  # a request lost to a fault has a row per attempt: its last one counts
            at = eng.arr[:m]
            order = np.lexsort((at, rows))
            last = np.ones(m, dtype=bool)
            last[order[:-1]] = rows[order[:-1]] != rows[order[1:]]
            rows, rq, rf = rows[last], rq[last], rf[last]
            rejected[rows] |= rq[:, E.R_PHASE] == E.PH_LOST  # lost more often than the retry budget
        slot = rq[:, E.R_REP]
        if r.pool.role is not PoolRole.DECODE:
            first_step[rows] = rf[:, E.F_FIRST]
        # the engine's hand-over latency shifts every token the client sees, in every pool
        rf = rf.copy()
        for f in (E.F_FIRST, E.F_FINISH):
            rf[:, f] += handover_s(rf[:, f], slot, eng.ts, r.pool.config.engine, eng.dt)
        if r.pool.role is PoolRole.DECODE:
            finish[rows] = rf[:, E.F_FINISH]
            xfer[rows] = eng.arr[:m] - first_step[rows]
            dreplica[rows] = replica_of(r, slot, eng.arr[:m])
            dpool_col[rows] = r.pool.name
            preempt[rows] += rq[:, E.R_PREEMPT]
            rejected[rows] |= rq[:, E.R_PHASE] == E.PH_REJECTED
            locked[rows] |= locked_mask(r, slot, eng.arr[:m], np.nan_to_num(rf[:, E.F_FINISH], nan=end_guess),
                                    end_guess)
            continue
        first[rows] = rf[:, E.F_FIRST]
        sched[rows] = rf[:, E.F_SCHED]
        if r.pool.role is PoolRole.BOTH:
            finish[rows] = rf[:, E.F_FINISH]
        else:
            one = out[rows] <= 1
            finish[rows[one]] = rf[one, E.F_FINISH]
        replica[rows] = replica_of(r, slot, arrival[rows])
        pool_col[rows] = r.pool.name
        preempt[rows] += rq[:, E.R_PREEMPT]
        cached[rows] = np.maximum(rq[:, E.R_CACHED], 0)
        tier_tokens[rows] = rq[:, E.R_T1:E.R_T3 + 1]
        rejected[rows] |= rq[:, E.R_PHASE] == E.PH_REJECTED
        locked[rows] |= locked_mask(r, slot, arrival[rows], np.nan_to_num(rf[:, E.F_FINISH], nan=end_guess),
                                end_guess)
    classes = (df["slo_class"].fill_null(DEFAULT_CLASS) if "slo_class" in df.columns
               else pl.Series("slo_class", [DEFAULT_CLASS] * n, dtype=pl.String))
    tpot = tpot_s(first, finish, out)
    requests = pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": arrival,
        "first_token_s": first,
        "finish_s": finish,
        "ttft_s": first - arrival,
        "tpot_s": tpot,
        "e2e_s": finish - arrival,
        "queueing_s": sched - arrival,
        "replica": replica.astype(np.int32),
        "preemptions": preempt.astype(np.int32),
        "cached_prefix_tokens": cached.astype(np.int32),
        "input_tokens": inp.astype(np.int32),
        "output_tokens": out.astype(np.int32),
        "slo_class": classes.to_numpy() if n else np.array([], dtype=object),
        "rejected": rejected,
        "pool": pool_col,
        "decode_pool": dpool_col,
        "decode_replica": dreplica.astype(np.int32),
        "kv_transfer_s": xfer,
        "clock_locked": locked,
    }, schema_overrides={"slo_class": pl.String, "pool": pl.String, "decode_pool": pl.String}
    ).with_columns(pl.col(pl.Float64).fill_nan(None))
    makespan = float(np.nanmax(finish)) if n and not np.all(np.isnan(finish)) else 0.0
    inst = instance_table(runs, makespan)
    held_s = (inst["stopped_s"] - inst["requested_s"]).clip(lower_bound=0.0)
    inst = inst.with_columns(held_s.alias("held_s"))
    dt = config.interval_s
    ts_frames: list[pl.DataFrame] = []
    pool_sums: list[PoolSummary] = []
    energy_total = 0.0
    cost_total = 0.0
    have_gpu = all(p.gpu is not None for p in pools)
    gpu_w_all: list[F64] = []
    for r in runs:
        p = r.pool
        sel_inst = inst.filter(pl.col("pool") == p.name)
        held = float(sel_inst["held_s"].sum())
        gpu_hours = held * r.gpus / 3600.0
        tsr, gpu_w, energy_j = pool_series(r, sel_inst, makespan, dt, config)
        ts_frames.append(tsr)
        gpu_w_all.append(gpu_w)
        energy = energy_j / 3.6e6 if p.gpu is not None else None
        cost = gpu_hours * p.gpu.price_per_hour if p.gpu is not None else None
        energy_total += energy or 0.0
        cost_total += cost or 0.0
        mine = requests.filter((pl.col("pool") == p.name) | (pl.col("decode_pool") == p.name))
        busy = float(r.eng.pf[:, E.Q_BUSY_TOTAL].sum())
        s = summarize(mine, config=p.config, replicas=p.config.replicas, gpus_per_replica=r.gpus,
                      makespan=makespan, gpu_hours=gpu_hours, energy_kwh=energy, cost_usd=cost, busy_s=busy,
                      replica_s=held, steps=int(r.eng.pi[:, E.P_STEPS].sum()),
                      violations=int(r.eng.ci[E.C_VIOL]))
        peak = peak_held(sel_inst)
        pool_sums.append(PoolSummary(name=p.name, role=p.role.value, summary=s, scale_ups=r.scale_ups,
                                     scale_downs=r.scale_downs, scale_ups_deferred=r.deferred,
                                     peak_replicas=peak))
    timeseries = pl.concat(ts_frames, how="diagonal_relaxed")
    capping: CappingStats | None = None
    power_df: pl.DataFrame | None = None
    if config.power is not None or have_gpu:
        power_df, row_w, period = power_table(runs, gpu_w_all, config, makespan)
        if config.power is not None:
            capping = capping_stats(config.power, applied, row_w, period, makespan, calls)
    cl = SimConfig(replicas=1, slo=config.slo, default_slo=config.default_slo)
    total_gpu_hours = float((inst["held_s"] * pl.Series([runs_gpus(runs, p) for p in inst["pool"]])).sum()
                            ) / 3600.0 if inst.height else 0.0
    busy_all = float(sum(r.eng.pf[:, E.Q_BUSY_TOTAL].sum() for r in runs))
    summary = summarize(requests, config=cl, replicas=sum(p.config.replicas for p in pools),
                        gpus_per_replica=int(runs[0].gpus), makespan=makespan, gpu_hours=total_gpu_hours,
                        energy_kwh=energy_total if have_gpu else None,
                        cost_usd=cost_total if have_gpu else None,
                        busy_s=busy_all, replica_s=float(inst["held_s"].sum()),
                        steps=int(sum(int(r.eng.pi[:, E.P_STEPS].sum()) for r in runs)),
                        violations=int(sum(int(r.eng.ci[E.C_VIOL]) for r in runs)))
    tiered = [r for r in runs if r.pool.config.kv_tiers is not None]
    if len(tiered) == 1:  # the tiers of the one pool that has any (per-pool tier rows: not yet)
        tr = tiered[0]
        tiers = tr.pool.config.kv_tiers
        assert tiers is not None
        summary = dataclasses.replace(summary, kv_tiers=tier_summaries(
            tiers, [tr.eng.tier_io], tier_tokens, tr.pool.perf,
            trace.meta.block_size or tr.pool.config.engine.block_size, summary.prompt_tokens, tr.pool.config))
    return SimResult(requests=requests, timeseries=timeseries, power=power_df, summary=summary,
                     pools=tuple(pool_sums), replicas=inst, capping=capping)


def runs_gpus(runs: Sequence[PoolRun], name: str) -> int:
    """GPUs per replica of the pool called ``name``."""
    return next(r.gpus for r in runs if r.pool.name == name)


def peak_held(inst: pl.DataFrame) -> int:
    if inst.height == 0:
        return 0
    ev = sorted([(float(a), 1) for a in inst["requested_s"]] + [(float(b), -1) for b in inst["stopped_s"]],
                key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def covered(a: F64, b: F64, t: F64) -> F64:
    """Total length of the intervals ``[a, b)`` before each ``t``: ``sum_i clip(t - a_i, 0, b_i - a_i)``.

    Why not a ``[len(t), len(a)]`` matrix: fourteen days of 15 s bins against the tens of thousands of
    replica lifetimes an eager policy creates is billions of cells (it ran out of memory). Sorted ends and
    prefix sums give ``t * #(a < t) - sum(a < t) - (t * #(b < t) - sum(b < t))`` in ``O((n + m) log n)``.
    """
    keep = b > a
    sa, sb = np.sort(a[keep]), np.sort(b[keep])
    ca = np.concatenate(([0.0], np.cumsum(sa)))
    cb = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(sb), sb, 0.0))))
    na = np.searchsorted(sa, t, side="right")
    nb = np.searchsorted(sb, t, side="right")
    out: F64 = t * na - ca[na] - (t * nb - cb[nb])
    return out


def overlap(a: F64, b: F64, t0: F64, t1: F64) -> F64:
    """Per bin ``[t0, t1)``, the summed overlap with the intervals ``[a, b)``."""
    out: F64 = np.maximum(covered(a, b, t1) - covered(a, b, t0), 0.0)
    return out


def held_per_bin(r: PoolRun, t0: F64, t1: F64) -> F64:
    """Seconds each slot was held (GPUs allocated) in each bin: ``[bins, slots]``."""
    out = np.zeros((t0.size, r.slots))
    for s in range(r.slots):
        if not r.history[s]:
            continue
        a = np.array([it.t_request for it in r.history[s]], dtype=np.float64)
        b = np.array([it.t_stop for it in r.history[s]], dtype=np.float64)
        out[:, s] = overlap(a, b, t0, t1)
    return out


def pool_series(r: PoolRun, inst: pl.DataFrame, makespan: float, dt: float,
                 config: ClusterConfig) -> tuple[pl.DataFrame, F64, float]:
    """The pool's time series at ``dt`` and its per-slot GPU watts at the engine's resolution."""
    eng = r.eng
    n_int = max(1, math.ceil(makespan / dt)) if makespan > 0 else 1
    edt = eng.dt
    m = max(1, round(dt / edt))
    n_fine = n_int * m
    ts = np.zeros((n_fine, r.slots, E.N_TS))
    k = min(n_fine, eng.ts.shape[0])
    ts[:k] = eng.ts[:k]
    f0: F64 = np.arange(n_fine, dtype=np.float64) * edt
    f1: F64 = np.minimum(f0 + edt, max(makespan, edt)).astype(np.float64)
    held_f = held_per_bin(r, f0, f1)
    gpu = r.pool.gpu
    idle_w = gpu.idle_w if gpu is not None else 0.0
    busy_f = np.minimum(ts[:, :, E.T_BUSY], held_f)
    if eng.power:
        energy = ts[:, :, E.T_ENERGY] + (held_f - busy_f) * idle_w
    elif gpu is not None:
        steps = ts[:, :, E.T_STEPS]
        safe = np.maximum(steps, 1e-12)
        p_busy = np.broadcast_to(np.asarray(r.pool.perf.step_power_w(
            ts[:, :, E.T_PREFILL] / safe, ts[:, :, E.T_PAIRS] / safe, ts[:, :, E.T_DECODE] / safe,
            ts[:, :, E.T_DKV] / safe), dtype=np.float64), steps.shape)
        energy = np.where(steps > 0, busy_f * p_busy, 0.0) + (held_f - busy_f) * idle_w
    else:
        energy = np.zeros_like(busy_f)
    span_f = np.maximum(f1 - f0, 1e-12)
    gpu_w = energy / span_f[:, None]
    # coarse series
    c = ts.reshape(n_int, m, r.slots, E.N_TS).sum(axis=1)
    t0: F64 = np.arange(n_int, dtype=np.float64) * dt
    t1: F64 = np.minimum(t0 + dt, max(makespan, dt)).astype(np.float64)
    span = np.maximum(t1 - t0, 1e-12)
    a = inst["requested_s"].to_numpy()
    ready = inst["ready_s"].fill_null(np.inf).to_numpy()
    drain = inst["drain_s"].fill_null(np.inf).to_numpy()
    stop = inst["stopped_s"].to_numpy()
    starting = overlap(a, np.minimum(ready, stop), t0, t1) / span
    serving = overlap(np.minimum(ready, stop), np.minimum(drain, stop), t0, t1) / span
    draining = overlap(np.minimum(drain, stop), stop, t0, t1) / span
    held = held_per_bin(r, t0, t1).sum(axis=1)
    blocks = max(1, int(eng.ci[E.C_BLOCKS]))
    cols: dict[str, object] = {
        "t_s": t0,
        "pool": [r.pool.name] * n_int,
        "replicas": starting + serving + draining,
        "replicas_serving": serving,
        "replicas_starting": starting,
        "replicas_draining": draining,
        "utilization": np.where(held > 0, c[:, :, E.T_BUSY].sum(axis=1) / np.maximum(held, 1e-12), 0.0),
        "running": c[:, :, E.T_RUNNING].sum(axis=1) / span,
        "waiting": c[:, :, E.T_WAITING].sum(axis=1) / span,
        "kv_usage": np.where(held > 0, c[:, :, E.T_KV].sum(axis=1) / (np.maximum(held, 1e-12) * blocks), 0.0),
        "prefill_tokens": c[:, :, E.T_PREFILL].sum(axis=1),
        "decode_tokens": c[:, :, E.T_DECODE].sum(axis=1),
        "steps": c[:, :, E.T_STEPS].sum(axis=1),
    }
    if gpu is not None:
        e_int = (gpu_w * span_f[:, None]).reshape(n_int, m, r.slots).sum(axis=(1, 2))
        cols["power_w"] = e_int * r.gpus / span
    energy_j = float((gpu_w * span_f[:, None]).sum() * r.gpus)
    return pl.DataFrame(cols), gpu_w, energy_j


def power_table(runs: Sequence[PoolRun], gpu_w: Sequence[F64], config: ClusterConfig,
                 makespan: float) -> tuple[pl.DataFrame, F64, float]:
    """Average watts per GPU, server (plus base power), rack and row at the engine's resolution."""
    period = runs[0].eng.dt
    n_f = min(*(w.shape[0] for w in gpu_w), max(1, math.ceil(makespan / period - 1e-9)))
    t0: F64 = np.arange(n_f, dtype=np.float64) * period
    t1: F64 = np.minimum(t0 + period, max(makespan, period)).astype(np.float64)
    span = np.maximum(t1 - t0, 1e-12)
    gpu_cols: list[F64] = []
    srv_cols: list[F64] = []
    power = config.power
    for r, w in zip(runs, gpu_w, strict=True):
        gpu = r.pool.gpu
        assert gpu is not None
        per_gpu = np.repeat(w[:n_f], r.gpus, axis=1)
        gpu_cols.append(per_gpu)
        server = np.arange(per_gpu.shape[1]) // gpu.gpus_per_node
        onehot = np.zeros((per_gpu.shape[1], r.n_servers))
        onehot[np.arange(per_gpu.shape[1]), server] = 1.0
        srv = per_gpu @ onehot
        base = 0.0
        if power is not None:
            base = server_base_w(gpu, power)
        held = held_per_bin(r, t0, t1)  # [bins, slots] seconds
        held_gpu = np.repeat(held, r.gpus, axis=1) @ onehot
        srv += base * np.minimum(held_gpu / span[:, None], 1.0) if base else 0.0
        srv_cols.append(srv)
    gw = np.concatenate(gpu_cols, axis=1)
    sw = np.concatenate(srv_cols, axis=1)
    n_srv = sw.shape[1]
    rack = np.arange(n_srv) // config.servers_per_rack
    row = rack // config.racks_per_row
    frames = []
    for scope, mat in (("gpu", gw), ("server", sw)):
        k = mat.shape[1]
        frames.append(pl.DataFrame({
            "t_s": np.repeat(t0, k), "scope": [scope] * (n_f * k),
            "id": np.tile(np.array([f"{scope}{i}" for i in range(k)], dtype=object), n_f),
            "power_w": mat.reshape(-1)}, schema=POWER_POLARS_SCHEMA))
    for scope, group in (("rack", rack), ("row", row)):
        k = int(group.max()) + 1 if n_srv else 0
        onehot = np.zeros((n_srv, k))
        onehot[np.arange(n_srv), group] = 1.0
        agg = sw @ onehot
        frames.append(pl.DataFrame({
            "t_s": np.repeat(t0, k), "scope": [scope] * (n_f * k),
            "id": np.tile(np.array([f"{scope}{i}" for i in range(k)], dtype=object), n_f),
            "power_w": agg.reshape(-1)}, schema=POWER_POLARS_SCHEMA))
    row_w: F64 = sw.sum(axis=1)
    return pl.concat(frames), row_w, period


def capping_stats(power: PowerConfig, applied: list[tuple[float, tuple[float | None, ...], bool]],
                   row_w: F64, period: float, makespan: float, calls: int) -> CappingStats:
    capped = capped_srv = brake_s = 0.0
    events = 0
    prev_brake = False
    for i, (t, clocks, brake) in enumerate(applied):
        t_next = applied[i + 1][0] if i + 1 < len(applied) else makespan
        d = max(0.0, min(t_next, makespan) - t)
        locked = sum(1 for c in clocks if c is not None)
        if locked:
            capped += d
            capped_srv += d * locked
        if brake:
            brake_s += d
            if not prev_brake:
                events += 1
        prev_brake = brake
    spans = np.full(row_w.size, period)
    if row_w.size and makespan > 0:
        spans[-1] = max(1e-12, makespan - period * (row_w.size - 1))
    return CappingStats(
        row_budget_w=power.row_budget_w, peak_row_w=float(row_w.max()) if row_w.size else 0.0,
        mean_row_w=float((row_w * spans).sum() / max(spans.sum(), 1e-12)) if row_w.size else 0.0,
        over_budget_s=float(spans[row_w > power.row_budget_w].sum()),
        capped_s=capped, capped_server_s=capped_srv, brake_events=events, brake_s=brake_s,
        policy_calls=calls)

"""The state of one pool while :func:`planner.sim.cluster.replay_cluster` runs: its engine, its
replica slots and their life cycle (:mod:`planner.sim.lifecycle`), its policy's state."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.sim.pools import F64, I64, ClusterConfig, Pool, PoolRole, assign_pools, sub_trace
from planner.sim.replay import ShardTask, engine_setup, make_shard_tasks, shard_engine
from planner.sim.state import ShardEngine
from traces.schema import RequestTrace

OFF, STARTING, SERVING, DRAINING = 0, 1, 2, 3
"""Replica slot states."""


@dataclass
class Instance:
    """One replica's life: requested (GPUs held), ready (routable), drain start, stopped."""

    inst: int
    pool: int
    slot: int
    t_request: float
    t_ready: float
    t_drain: float = math.inf
    t_stop: float = math.inf


@dataclass
class PoolRun:
    index: int
    pool: Pool
    eng: ShardEngine
    rows: I64  # engine row -> trace request id
    slots: int
    state: NDArray[np.int8]
    slot_inst: list[Instance | None]
    history: list[list[Instance]]  # per slot, instances in time order
    gpus: int
    server0: int
    n_servers: int
    rng: np.random.Generator
    policy_state: object | None = None  # the policy's own state, passed back to it each tick
    pending_ready: list[Instance] = field(default_factory=list)
    pend: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: rows not handed
    q_seen: int = 0
    decode_of: int = -1  # prefill pool -> index of its decode pool
    full_out: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: asked outputs
    scale_ups: int = 0
    scale_downs: int = 0
    deferred: int = 0
    faults: object | None = None  # its planner.sim.fault_loop.FaultRun while faults are in the loop
    lock_since: F64 = field(default_factory=lambda: np.zeros(0))
    locks: list[list[tuple[float, float]]] = field(default_factory=list)
    slot_mhz: list[float | None] = field(default_factory=list)

    def serving(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.state == SERVING)]


def _slots_of(pool: Pool) -> int:
    auto = pool.config.autoscale
    if auto is None:  # with a straggler detector, replacements start beside the replicas they replace
        faults = pool.config.faults
        return pool.config.replicas * (2 if faults is not None and faults.detector is not None else 1)
    # draining replicas keep their slots while new ones start: room for a full second set
    return 2 * auto.max_replicas


def build_runs(trace: RequestTrace, pools: Sequence[Pool], config: ClusterConfig) -> list[PoolRun]:
    """One run per pool: its engine over the pool's requests (a decode pool's fill in as prefill hands
    them over), ``config.replicas`` replicas serving from time 0, the rest of the slots free."""
    which = assign_pools(trace, pools)
    names = [p.name for p in pools]
    runs: list[PoolRun] = []
    server0 = 0
    dt_eng = config.power.telemetry_period_s if config.power is not None else config.interval_s
    inst = 0
    for i, p in enumerate(pools):
        cfg = dataclasses.replace(p.config, shards=1, autoscale=None, power=None)
        slots = _slots_of(p)
        auto = p.config.autoscale
        if p.role is PoolRole.DECODE:
            feeders = [j for j, q in enumerate(pools) if q.decode_pool == p.name]
            src = np.flatnonzero(np.isin(which, feeders))
            n = int((trace.df["output_tokens"].to_numpy()[src] >= 2).sum())
            task = _empty_task(n)
            setup = engine_setup(p.perf, sub_trace(trace, np.zeros(0, dtype=np.int64)), cfg)
            rows = np.full(n, -1, dtype=np.int64)
            known: int | None = 0
        else:
            rows = np.flatnonzero(which == i).astype(np.int64)
            sub = sub_trace(trace, rows)
            if p.role is PoolRole.PREFILL:
                sub = RequestTrace(sub.df.with_columns(pl.lit(1, dtype=pl.Int32).alias("output_tokens")),
                                   sub.meta)
            setup = engine_setup(p.perf, sub, cfg)
            task = make_shard_tasks(sub, cfg)[0]
            known = None
            if p.config.faults is not None and p.config.faults.retry_budget > 0:
                # rows for retries: each request may be sent again up to the budget
                n0 = int(task.arrival_s.size)
                task = _padded(task, n0 * p.config.faults.retry_budget)
                rows = np.concatenate([rows, np.full(n0 * p.config.faults.retry_budget, -1, dtype=np.int64)])
                known = n0
        init = p.config.replicas
        eng = shard_engine(task, setup, cfg, slots=slots, routable=list(range(init)), dt=dt_eng,
                           metrics=auto is not None, power=config.power is not None,
                           preload=p.role is PoolRole.DECODE,
                           ttft_buckets=auto.ttft_buckets_s if auto else (),
                           itl_buckets=auto.itl_buckets_s if auto else (), known=known)
        state = np.zeros(slots, dtype=np.int8)
        state[:init] = SERVING
        history: list[list[Instance]] = [[] for _ in range(slots)]
        slot_inst: list[Instance | None] = [None] * slots
        for s in range(init):
            it = Instance(inst=inst, pool=i, slot=s, t_request=0.0, t_ready=0.0)
            inst += 1
            history[s].append(it)
            slot_inst[s] = it
        g = int(p.perf.gpus)
        per_node = p.gpu.gpus_per_node if p.gpu is not None else 8
        n_servers = math.ceil(slots * g / per_node)
        run = PoolRun(index=i, pool=p, eng=eng, rows=rows, slots=slots, state=state, slot_inst=slot_inst,
                       history=history, gpus=g, server0=server0, n_servers=n_servers,
                       rng=np.random.default_rng([auto.seed if auto else 0, i]),
                       lock_since=np.full(slots, np.nan), locks=[[] for _ in range(slots)],
                       slot_mhz=[None] * slots)
        if p.role is PoolRole.PREFILL:
            run.decode_of = names.index(str(p.decode_pool))
            run.full_out = trace.df["output_tokens"].to_numpy().astype(np.int64)[rows]
        runs.append(run)
        server0 += n_servers
    return runs


def _padded(task: ShardTask, extra: int) -> ShardTask:
    """``task`` with ``extra`` empty rows after its requests (filled in later by the engine's extend)."""
    n = int(task.arrival_s.size)

    def pad(a: np.ndarray, fill: float) -> np.ndarray:
        return np.concatenate([a, np.full(extra, fill, dtype=a.dtype)])

    off = task.prefix_offsets
    return dataclasses.replace(
        task, arrival_s=pad(task.arrival_s, math.inf), input_tokens=pad(task.input_tokens, 1),
        output_tokens=pad(task.output_tokens, 1), route_key=pad(task.route_key, 0),
        affinity_key=pad(task.affinity_key, 0),
        prefix_offsets=np.concatenate([off, np.full(extra, off[n] if off.size > n else 0, dtype=off.dtype)]))


def _empty_task(n: int) -> ShardTask:
    z = np.zeros(0, dtype=np.int64)
    return ShardTask(index=0, replica_ids=z, request_ids=z,
                     arrival_s=np.zeros(n), input_tokens=np.zeros(n, dtype=np.int64),
                     output_tokens=np.ones(n, dtype=np.int64), prefix_hashes=np.zeros(0, dtype=np.uint64),
                     prefix_offsets=np.zeros(n + 1, dtype=np.int64), route_key=np.zeros(n, dtype=np.uint64),
                     affinity_key=np.zeros(n, dtype=np.uint64))

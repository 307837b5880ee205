"""``replay(trace, perf, config) -> SimResult``: the pure entry point of the simulator.

The trace is split into shards (groups of replicas behind their own router); each shard is simulated by
:func:`simulate_shard` (the numba loop of :mod:`planner.sim.engine`), sequentially here or as Ray tasks
(:mod:`planner.sim.ray_runner` passes its own ``map_shards``). The per-shard arrays are then joined into
the per-request table, the time series, the power table and the summary. Nothing here does I/O: see
:mod:`planner.sim.writer`.

>>> import polars as pl
>>> from traces.schema import RequestTrace, TraceMeta
>>> from planner.sim.testing import LinearPerf
>>> df = pl.DataFrame({"arrival_s": [0.0, 0.5], "input_tokens": [100, 200], "output_tokens": [10, 5]},
...                   schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
>>> res = replay(RequestTrace(df, TraceMeta("doc", "inline")), LinearPerf(), config=SimConfig(replicas=2))
>>> res.requests["finish_s"].is_not_null().all()
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec
from planner.perf.api import ReplicaPerf
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.affinity import affinity_blocks, hot_blocks
from planner.sim.config import RouterName, SimConfig
from planner.sim.result import SimResult, build_result
from planner.sim.state import ShardEngine, prefill_time_per_token
from traces.errors import InputError
from traces.schema import RequestTrace

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` in requests; called between chunks, from the process that simulates."""

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
U64 = NDArray[np.uint64]


def splitmix64_np(x: U64) -> U64:
    """Vectorised SplitMix64 finaliser, the same function as :func:`planner.sim.engine.splitmix64`.

    >>> int(splitmix64_np(np.array([1], dtype=np.uint64))[0]) == int(E.splitmix64(np.uint64(1)))
    True
    """
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class ShardTask:
    """One shard's share of the work: its requests (in arrival order) and its replicas.

    Attributes:
        index: shard number.
        replica_ids: global ids of the shard's replicas (local replica ``i`` is ``replica_ids[i]``).
        request_ids: row numbers of the shard's requests in the trace.
        arrival_s, input_tokens, output_tokens: the requests.
        prefix_hashes, prefix_offsets: flattened ``prefix_hashes`` (request ``i`` owns
            ``prefix_hashes[prefix_offsets[i]:prefix_offsets[i + 1]]``).
        route_key: per-request hash for power-of-two (or the forced local replica for ``hash``).
        affinity_key: per-request hash for prefix affinity and dualmap (its first prefix block that is not
            a hot spot, :mod:`planner.sim.affinity`; else its session or id); for ``precise-prefix`` and
            ``sglang-cache-aware``, the count of its leading hot-spot blocks (not a hash).
        prev: closed loop only: the shard-local index of the previous turn of each request's session
            (-1: a first turn or no session).
        think_s: closed loop only: seconds from the previous turn's finish to this turn's send.
    """

    index: int
    replica_ids: I64
    request_ids: I64
    arrival_s: F64
    input_tokens: I64
    output_tokens: I64
    prefix_hashes: U64
    prefix_offsets: I64
    route_key: U64
    affinity_key: U64
    prev: I64 | None = None
    think_s: F64 | None = None


@dataclass(frozen=True)
class ShardOutput:
    """What one shard's simulation returns (arrays only: cheap to ship back from a Ray worker)."""

    index: int
    replica_ids: I64
    request_ids: I64
    rq: I64
    rf: F64
    ts: F64
    busy_s: F64
    steps: I64
    kernel_steps: I64
    max_used_blocks: I64
    violations: int
    tier_io: I64 | None = None
    """Per KV-tier level (engine numbering): tokens loaded from it, blocks stored into it."""
    arrival_s: F64 | None = None
    """Closed loop: when each request was actually sent (None: at its trace arrival)."""


@dataclass(frozen=True)
class EngineSetup:
    """Per-replica constants derived once from the perf model (shipped with each shard task).

    Attributes:
        prefill_s_per_token: the ``dualmap`` router's prefill seconds per queued prompt token
            (``router_options.prefill_s_per_token``, else :func:`planner.sim.state.prefill_time_per_token`
            at the engine's token budget).
    """

    perf: ReplicaPerf
    blocks: int
    hash_block_tokens: int
    prefill_s_per_token: float = 0.0


MapShards = Callable[[Sequence[ShardTask], EngineSetup, SimConfig], list[ShardOutput]]
"""``map_shards(tasks, setup, config)`` runs :func:`simulate_shard` on every task, in any order/place."""


def engine_setup(perf: ReplicaPerf, trace: RequestTrace, config: SimConfig) -> EngineSetup:
    """KV blocks per replica and the prefix-hash granularity, checked against the engine's block size."""
    bs = config.engine.block_size
    blocks = int(perf.kv_capacity_tokens) // bs
    if blocks < 1:
        raise InputError(
            f"the replica has no room for KV cache ({perf.kv_capacity_tokens} tokens)",
            field="kv_capacity_tokens",
            expected="a model/GPU/parallelism layout that leaves memory for the KV cache",
        )
    hbt = trace.meta.block_size or bs
    if hbt % bs != 0:
        raise InputError(
            f"prefix-hash block of {hbt} tokens is not a multiple of the KV block size {bs}",
            path=trace.meta.source,
            field="block_size",
            expected=f"a block size that divides {hbt}",
        )
    tok = config.router_options.prefill_s_per_token or prefill_time_per_token(
        perf, config.engine.max_batched_tokens)
    return EngineSetup(perf=perf, blocks=blocks, hash_block_tokens=hbt, prefill_s_per_token=tok)


def make_shard_tasks(trace: RequestTrace, config: SimConfig) -> list[ShardTask]:
    """Split the trace into shards by a hash of the request id (sharding-independent keys)."""
    df = trace.df
    n = df.height
    rid = np.arange(n, dtype=np.int64)
    seed = np.uint64(config.seed & 0xFFFFFFFFFFFFFFFF)
    rkey = splitmix64_np(rid.astype(np.uint64) ^ splitmix64_np(np.array([seed], dtype=np.uint64))[0])
    if "prefix_hashes" in df.columns:
        lists = df["prefix_hashes"].fill_null([])
        lengths = lists.list.len().to_numpy().astype(np.int64)
        flat = lists.explode().drop_nulls().to_numpy().astype(np.uint64)
    else:
        lengths = np.zeros(n, dtype=np.int64)
        flat = np.zeros(0, dtype=np.uint64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    akey = rkey.copy()
    if "session_id" in df.columns:
        sess = df["session_id"]
        has = sess.is_not_null().to_numpy()
        akey[has] = splitmix64_np(sess.hash(seed=7).to_numpy().astype(np.uint64))[has]
    has_ph = lengths > 0
    if has_ph.any() and config.router in (RouterName.PREFIX_AFFINITY, RouterName.DUALMAP):
        # the shortest prefix that is not a hot spot (a prefix every request shares must not collapse
        # the fleet onto two replicas): planner.sim.affinity
        akey[has_ph] = splitmix64_np(affinity_blocks(flat, offsets, replicas=config.replicas)[has_ph])
    if config.router in (RouterName.PRECISE_PREFIX, RouterName.SGLANG_CACHE_AWARE):
        # its key is how many leading blocks are hot spots: left out of the cached share precise-prefix
        # scores; counted as matched everywhere by sglang-cache-aware
        akey = hot_blocks(flat, offsets, replicas=config.replicas).astype(np.uint64)
    arr = df["arrival_s"].to_numpy().astype(np.float64)
    inp = df["input_tokens"].to_numpy().astype(np.int64)
    out = df["output_tokens"].to_numpy().astype(np.int64)
    if n and (out < 1).any():
        row = int(np.argmax(out < 1)) + 1
        raise InputError("a request asks for no output token", path=trace.meta.source, row=row,
                         field="output_tokens", expected="an integer >= 1")
    if n and (inp < 1).any():
        row = int(np.argmax(inp < 1)) + 1
        raise InputError("a request has an empty prompt", path=trace.meta.source, row=row,
                         field="input_tokens", expected="an integer >= 1")
    S = config.shards
    R = config.replicas
    prev_all: I64 | None = None
    think_all: F64 | None = None
    if config.closed_loop:
        from planner.sim.session_loop import session_links

        if config.router is RouterName.HASH and S > 1:
            raise InputError("the hash router spreads a session's turns over shards", field="shards",
                             expected="shards = 1 (or another router) with the closed loop")
        prev_all, think_all = session_links(trace)
        # a session's turns wait for each other, so they must share a shard: shard by session
        ses = _session_keys(df, seed)
        rkey_shard = np.where(ses != 0, ses, rkey)
    else:
        rkey_shard = rkey
    if config.router is RouterName.HASH:
        replica = (rkey % np.uint64(R)).astype(np.int64)
        shard = replica % S
        local = (replica // S).astype(np.uint64)
    else:
        shard = (splitmix64_np(rkey_shard ^ np.uint64(0x5BD1E995)) % np.uint64(S)).astype(np.int64)
        local = rkey
    tasks = []
    for s in range(S):
        idx = np.flatnonzero(shard == s).astype(np.int64)
        lens = lengths[idx]
        sub_off = np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(lens, out=sub_off[1:])
        if flat.size:
            gather = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx[lens > 0]]
                                    or [np.zeros(0, dtype=np.int64)])
            sub_ph = flat[gather.astype(np.int64)]
        else:
            sub_ph = flat
        tasks.append(ShardTask(
            index=s,
            replica_ids=np.arange(s, R, S, dtype=np.int64),
            request_ids=idx,
            arrival_s=arr[idx],
            input_tokens=inp[idx],
            output_tokens=out[idx],
            prefix_hashes=sub_ph,
            prefix_offsets=sub_off,
            route_key=local[idx],
            affinity_key=akey[idx],
            prev=None if prev_all is None else _local_prev(prev_all, idx, n),
            think_s=None if think_all is None else think_all[idx],
        ))
    return tasks


def _session_keys(df: pl.DataFrame, seed: np.uint64) -> U64:
    """A nonzero hash of each request's session (0: no session)."""
    n = df.height
    out = np.zeros(n, dtype=np.uint64)
    if "session_id" in df.columns:
        sess = df["session_id"]
        has = sess.is_not_null().to_numpy()
        out[has] = splitmix64_np(sess.hash(seed=int(seed) & 0xFFFF).to_numpy().astype(np.uint64))[has] | 1
    return out


def _local_prev(prev: I64, idx: I64, n: int) -> I64:
    """``prev`` (trace rows) as indices into ``idx`` (a shard's rows); every session is in one shard."""
    local = np.full(n, -1, dtype=np.int64)
    local[idx] = np.arange(idx.size, dtype=np.int64)
    p = prev[idx]
    return np.where(p >= 0, local[np.maximum(p, 0)], -1)


def simulate_shard(task: ShardTask, setup: EngineSetup, config: SimConfig,
                   progress: ProgressFn | None = None) -> ShardOutput:
    """Run the numba loop over one shard (pure: a function of its arguments)."""
    if config.closed_loop and task.arrival_s.size:
        from planner.sim.session_loop import simulate_sessions

        return simulate_sessions(task, setup, config, progress)
    nrep = int(task.replica_ids.size)
    eng = shard_engine(task, setup, config, slots=nrep, routable=list(range(nrep)), dt=config.interval_s)
    if task.arrival_s.size:
        eng.drain(progress)
    return _shard_output(task, eng.rq, eng.rf, eng.ts, eng.pf, eng.pi, eng.ci, eng.tier_io)


def shard_engine(task: ShardTask, setup: EngineSetup, config: SimConfig, *, slots: int, routable: list[int],
                 dt: float, metrics: bool = False, power: bool = False, preload: bool = False,
                 ttft_buckets: tuple[float, ...] = (), itl_buckets: tuple[float, ...] = (),
                 known: int | None = None) -> ShardEngine:
    """The live engine state of one shard (see :class:`planner.sim.state.ShardEngine`)."""
    return ShardEngine(
        arrival_s=task.arrival_s, input_tokens=task.input_tokens, output_tokens=task.output_tokens,
        prefix_hashes=task.prefix_hashes, prefix_offsets=task.prefix_offsets, route_key=task.route_key,
        affinity_key=task.affinity_key, perf=setup.perf, blocks=setup.blocks,
        hash_block_tokens=setup.hash_block_tokens, config=config, slots=slots, routable=routable, dt=dt,
        metrics=metrics, power=power, preload=preload, ttft_buckets=ttft_buckets, itl_buckets=itl_buckets,
        known=known, prefill_s_per_token=setup.prefill_s_per_token or None)


def _shard_output(task: ShardTask, rq: I64, rf: F64, ts: F64, pf: F64, pi: I64,
                  ci: I64, tier_io: I64 | None = None) -> ShardOutput:
    return ShardOutput(
        index=task.index,
        replica_ids=task.replica_ids,
        request_ids=task.request_ids,
        rq=rq,
        rf=rf,
        ts=ts,
        busy_s=pf[:, E.Q_BUSY_TOTAL].copy(),
        steps=pi[:, E.P_STEPS].copy(),
        kernel_steps=pi[:, E.P_MIXED].copy(),
        max_used_blocks=pi[:, E.P_MAXUSED].copy(),
        violations=int(ci[E.C_VIOL]),
        tier_io=None if tier_io is None else tier_io.copy(),
    )


def replay(
    trace: RequestTrace,
    perf: ReplicaPerf,
    *,
    config: SimConfig,
    gpu: GPUSpec | None = None,
    progress: ProgressFn | None = None,
    map_shards: MapShards | None = None,
) -> SimResult:
    """Replay ``trace`` through ``config.replicas`` replicas described by ``perf``.

    Args:
        trace: canonical request trace (arrivals sorted, from 0).
        perf: one replica's performance (step time, KV capacity, power).
        config: cluster, router, scheduler, SLOs.
        gpu: the GPU type, for power (idle watts, GPUs per server) and cost; without it the result has
            no power table and no cost.
        progress: called with ``(done, total)`` requests between chunks (sequential runs only).
        map_shards: how shard tasks are run (default: sequentially here; Ray: see
            :func:`planner.sim.ray_runner.ray_map_shards`).

    Returns:
        The per-request table, the time series, the power table (when ``gpu`` is given) and a summary.
        With ``config.autoscale``, ``config.power`` or ``config.faults`` the replay runs through
        :func:`planner.sim.cluster.replay_cluster` as one pool named ``default`` (event-sliced loop,
        one shard), and the result also carries the replica lifecycle and the capping statistics.

    Raises:
        InputError: the trace cannot be replayed as configured (empty prompts, no KV room...).
    """
    if config.autoscale is not None or config.power is not None or config.faults is not None:
        from planner.sim.cluster import replay_cluster
        from planner.sim.pools import ClusterConfig, Pool

        cc = ClusterConfig(interval_s=config.interval_s, power=config.power,
                           servers_per_rack=config.servers_per_rack, racks_per_row=config.racks_per_row,
                           slo=config.slo, default_slo=config.default_slo)
        return replay_cluster(trace, [Pool("default", perf, config, gpu=gpu)], config=cc, progress=progress)
    setup = engine_setup(perf, trace, config)
    tasks = make_shard_tasks(trace, config)
    total = trace.num_requests
    done_before = [0]

    def run_one(task: ShardTask) -> ShardOutput:
        base = done_before[0]

        def report(done: int, _n: int) -> None:
            if progress is not None:
                progress(base + done, total)

        out = simulate_shard(task, setup, config, report if progress is not None else None)
        done_before[0] += int(task.arrival_s.size)
        return out

    outputs = [run_one(t) for t in tasks] if map_shards is None else map_shards(tasks, setup, config)
    return build_result(trace, outputs, perf=perf, config=config, gpu=gpu)

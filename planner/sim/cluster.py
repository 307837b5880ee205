"""A cluster of pools, with autoscaling, power capping and prefill/decode hand-off in the loop.

``replay_cluster(trace, pools, config) -> SimResult``. Each :class:`Pool` is a group of replicas of one
model on one GPU type behind one router (its own :class:`~planner.sim.config.SimConfig`); requests go to
a pool by their ``model`` column or their ``slo_class`` (POLCA's high/low-priority servers are two pools
of the same model). A ``prefill`` pool hands every request, once its first token is out, to its
``decode`` pool over a KV link (Splitwise / DistServe): the KV of the prompt (``kv bytes per token x
tokens``) takes ``latency + bytes / bandwidth``, then the request decodes there. TTFT ends at the
prefill pool's first token; TPOT and end-to-end include the transfer and the decode pool's queueing.

How time advances: the numba loop of each pool runs between *events* (control ticks of autoscaled
pools, telemetry ticks, cold starts completing, clock locks taking effect, and a base tick every
``interval_s``); Python runs only at events. Pools are independent between events (they share nothing
but the power budget and the P/D hand-off), so advancing them one after the other to the same event is
exact. Prefill pools advance first: by an event at ``T`` every first token before ``T`` is known, and
none of their decode arrivals can come before the decode pool's own clock.

Autoscaling (per pool, :class:`~planner.sim.config.AutoscaleConfig`): the policy sees, like a live
autoscaler scraping vLLM, per serving replica ``running``, ``waiting`` and ``kv_cache_usage_perc``, and
the pool's cumulative TTFT / inter-token-latency histograms (``le`` buckets, the last ``+Inf``) and
counters. Scale-up: the replica holds its GPUs (and counts GPU-hours) from the decision, and becomes
routable after a cold start drawn from the pool's seeded sampler. Scale-down: starting replicas are
cancelled first (newest first), then the serving replicas with the fewest requests stop receiving new
requests, finish what they hold (drain) and then release their GPUs.

Power (:class:`~planner.sim.config.PowerConfig`): every step's power per GPU comes from the perf model's
power kernel inside the loop; each telemetry period the capping policy sees every server's average power
(GPUs plus the server's base power while it holds a replica); the clocks it asks for apply after the
actuation latency, cutting decode runs in flight so the slower steps start at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec
from planner.perf.api import ReplicaPerf
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import PowerConfig, SimConfig, SLOTarget
from planner.sim.replay import ShardTask, engine_setup, make_shard_tasks, shard_engine, splitmix64_np
from planner.sim.result import DEFAULT_CLASS, CappingStats, PoolSummary, SimResult, summarize
from planner.sim.state import ShardEngine
from traces.errors import InputError
from traces.schema import POWER_POLARS_SCHEMA, RequestTrace

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

OFF, STARTING, SERVING, DRAINING = 0, 1, 2, 3
"""Replica slot states."""


class PoolRole(StrEnum):
    """What a pool does with its requests."""

    BOTH = "both"
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True)
class Pool:
    """A group of replicas of one model on one GPU type behind one router.

    Attributes:
        name: unique pool name.
        perf: one replica's performance.
        config: replicas (initial), router, scheduler, seed, SLOs of the pool, and its autoscaler.
            Its ``power`` and ``shards`` are not used here (power is cluster-wide; one router a pool).
        gpu: the GPU type (needed for power, cost and the default KV-link bandwidth).
        models: values of the trace's ``model`` column this pool serves.
        slo_classes: values of ``slo_class`` this pool serves (checked after ``models``).
        priority: ``hp`` or ``lp``: what the capping policy sees for the pool's servers.
        role: ``both`` (prefill and decode), ``prefill`` or ``decode``.
        decode_pool: for a prefill pool, the name of the pool its requests decode in.
    """

    name: str
    perf: ReplicaPerf
    config: SimConfig
    gpu: GPUSpec | None = None
    models: tuple[str, ...] = ()
    slo_classes: tuple[str, ...] = ()
    priority: str = "hp"
    role: PoolRole = PoolRole.BOTH
    decode_pool: str | None = None


@dataclass(frozen=True)
class KVLink:
    """The link prefill pools send KV over to their decode pool.

    Attributes:
        gbytes_per_s: bandwidth per transfer, GB/s; None: the prefill replica's NICs
            (``nic_gbit / 8`` per GPU times its GPUs).
        latency_s: fixed cost per transfer (connection set-up, first byte).
        kv_bytes_per_token: KV bytes of one token over all layers; None: from the prefill perf model
            (``memory.kv_bytes_per_token`` per GPU times its GPUs).
    """

    gbytes_per_s: float | None = None
    latency_s: float = 2e-4
    kv_bytes_per_token: float | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster-wide options.

    Attributes:
        interval_s: time-series resolution (and the base event period).
        power: power in the loop and the capping policy; None: no power in the loop.
        servers_per_rack, racks_per_row: power aggregation (pools start on a fresh server each).
        link: the P/D KV link.
        slo: SLO targets per class for the cluster summary; ``default_slo`` otherwise.
    """

    interval_s: float = 10.0
    power: PowerConfig | None = None
    servers_per_rack: int = 4
    racks_per_row: int = 8
    link: KVLink = field(default_factory=KVLink)
    slo: tuple[tuple[str, SLOTarget], ...] = ()
    default_slo: SLOTarget = field(default_factory=lambda: SLOTarget(ttft_s=2.0, tpot_s=0.1))

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise InputError("interval_s must be positive", field="interval_s", expected="a number > 0")
        if self.power is not None:
            ratio = self.interval_s / self.power.telemetry_period_s
            if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                raise InputError(f"interval_s {self.interval_s} is not a multiple of the telemetry period "
                                 f"{self.power.telemetry_period_s}", field="interval_s",
                                 expected="interval_s = k * power.telemetry_period_s")


# ------------------------------------------------------------------------------------------------
# per-pool run state
# ------------------------------------------------------------------------------------------------


@dataclass
class _Instance:
    """One replica's life: requested (GPUs held), ready (routable), drain start, stopped."""

    inst: int
    pool: int
    slot: int
    t_request: float
    t_ready: float
    t_drain: float = math.inf
    t_stop: float = math.inf


@dataclass
class _PoolRun:
    index: int
    pool: Pool
    eng: ShardEngine
    rows: I64  # engine row -> trace request id
    slots: int
    state: NDArray[np.int8]
    slot_inst: list[_Instance | None]
    history: list[list[_Instance]]  # per slot, instances in time order
    gpus: int
    server0: int
    n_servers: int
    rng: np.random.Generator
    policy_state: Any = None
    pending_ready: list[_Instance] = field(default_factory=list)
    pend: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: rows not handed
    q_seen: int = 0
    decode_of: int = -1  # prefill pool -> index of its decode pool
    full_out: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # prefill: asked outputs
    scale_ups: int = 0
    scale_downs: int = 0
    deferred: int = 0
    lock_since: F64 = field(default_factory=lambda: np.zeros(0))
    locks: list[list[tuple[float, float]]] = field(default_factory=list)
    slot_mhz: list[float | None] = field(default_factory=list)

    def serving(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.state == SERVING)]


def _kv_bytes_per_token(pool: Pool, link: KVLink) -> float:
    if link.kv_bytes_per_token is not None:
        return link.kv_bytes_per_token
    mem = getattr(pool.perf, "memory", None)
    per_gpu = getattr(mem, "kv_bytes_per_token", None)
    if per_gpu is None:
        raise InputError(f"pool {pool.name}: the perf model gives no KV bytes per token",
                         field="link.kv_bytes_per_token", expected="bytes of KV per token")
    return float(per_gpu) * int(pool.perf.gpus)


def _link_bytes_per_s(pool: Pool, link: KVLink) -> float:
    if link.gbytes_per_s is not None:
        if not link.gbytes_per_s > 0:
            raise InputError("KV link bandwidth must be positive", field="link.gbytes_per_s",
                             expected="GB/s > 0")
        return link.gbytes_per_s * 1e9
    if pool.gpu is None:
        raise InputError(f"prefill pool {pool.name} has no GPU spec for the default KV link",
                         field="link.gbytes_per_s", expected="a bandwidth or the pool's GPU")
    return pool.gpu.nic_gbit / 8.0 * 1e9 * int(pool.perf.gpus)


def assign_pools(trace: RequestTrace, pools: Sequence[Pool]) -> I64:
    """Pool index of every request: by ``model``, then ``slo_class``, else the pool that lists neither.

    Raises:
        InputError: a request matches no pool (the message names its row and value).
    """
    df = trace.df
    n = df.height
    entry = [i for i, p in enumerate(pools) if p.role is not PoolRole.DECODE]
    out = np.full(n, -1, dtype=np.int64)
    default = [i for i in entry if not pools[i].models and not pools[i].slo_classes]
    for col, attr in (("model", "models"), ("slo_class", "slo_classes")):
        if col not in df.columns:
            continue
        vals = df[col].fill_null("").to_numpy()
        for i in entry:
            names = getattr(pools[i], attr)
            if names:
                hit = np.isin(vals, list(names)) & (out < 0)
                out[hit] = i
    if default:
        out[out < 0] = default[0]
    if n and (out < 0).any():
        row = int(np.argmax(out < 0))
        val = {c: df[c][row] for c in ("model", "slo_class") if c in df.columns}
        raise InputError(f"request matches no pool ({val})", path=trace.meta.source, row=row + 1,
                         field="model", expected="a model or slo_class some pool lists, or a default pool")
    return out


def _sub_trace(trace: RequestTrace, ids: I64) -> RequestTrace:
    return RequestTrace(trace.df[ids.tolist()] if ids.size else trace.df.head(0), trace.meta)


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------


def replay_cluster(trace: RequestTrace, pools: Sequence[Pool], *, config: ClusterConfig,
                   progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Replay ``trace`` through ``pools`` with autoscaling, power capping and P/D hand-off in the loop.

    Args:
        trace: canonical request trace.
        pools: the cluster's pools (names unique; prefill pools name an existing decode pool).
        config: time-series resolution, power, layout, KV link, cluster SLOs.
        progress: ``(requests taken, total)`` after every event slice.

    Returns:
        A :class:`~planner.sim.result.SimResult` whose ``pools`` hold per-pool summaries,
        ``replicas`` the replica lifecycle table, ``capping`` the capping statistics.

    Raises:
        InputError: inconsistent pools (duplicate names, a prefill pool without decode pool, power
            without a GPU spec or power kernel) or requests that match no pool.

    >>> from planner.sim.testing import LinearPerf, poisson_trace
    >>> tr = poisson_trace(50, 5.0, 1)
    >>> res = replay_cluster(tr, [Pool("a", LinearPerf(), SimConfig(replicas=2))], config=ClusterConfig())
    >>> res.summary.completed, res.pools[0].name
    (50, 'a')
    """
    _check_pools(pools, config)
    runs = _build_runs(trace, pools, config)
    total = trace.num_requests
    power = config.power
    dt = config.interval_s
    tel = power.telemetry_period_s if power is not None else math.inf
    n_servers = sum(r.n_servers for r in runs)
    server_clock: list[float | None] = [None] * n_servers
    server_pool = np.concatenate([np.full(r.n_servers, r.index) for r in runs]) if runs else np.zeros(0)
    priorities = tuple(pools[int(i)].priority for i in server_pool)
    actuations: list[tuple[float, tuple[float | None, ...], bool]] = []
    applied: list[tuple[float, tuple[float | None, ...], bool]] = [(0.0, tuple(server_clock), False)]
    cap_state: object | None = None
    brake = False
    calls = 0
    inst_counter = [sum(int(r.pool.config.replicas) for r in runs)]
    next_ctrl = {r.index: r.pool.config.autoscale.interval_s for r in runs if r.pool.config.autoscale}
    k_base = 1
    k_tel = 1
    order = [r for r in runs if r.pool.role is not PoolRole.DECODE] + [
        r for r in runs if r.pool.role is PoolRole.DECODE]
    while True:
        if all(r.eng.all_idle() and r.pend.size == 0 for r in runs) and not any(
                r.pending_ready for r in runs) and all(r.eng.q_next >= r.eng.n for r in runs
                                                       if r.pool.role is not PoolRole.DECODE):
            break
        cand = [k_base * dt]
        if power is not None:
            cand.append(k_tel * tel)
        cand.extend(next_ctrl.values())
        cand.extend(i.t_ready for r in runs for i in r.pending_ready)
        cand.extend(a[0] for a in actuations)
        t = min(cand)
        for r in order:
            r.eng.run_until(t)
            if r.pool.role is PoolRole.PREFILL:
                _hand_off(r, runs[r.decode_of], config.link, t)
        if progress is not None:
            progress(sum(r.eng.q_next for r in runs if r.pool.role is not PoolRole.DECODE), total)
        for r in runs:
            _finish_drains(r)
            _become_ready(r, t)
        due = [a for a in actuations if a[0] <= t]
        if due:
            actuations = [a for a in actuations if a[0] > t]
            for a in due:
                server_clock = list(a[1])
                applied.append((t, a[1], a[2]))
                for r in runs:
                    _apply_clocks(r, server_clock, t)
        if power is not None and t >= k_tel * tel - 1e-12:
            ctx_cls, _ = _power_types()
            watts = _server_power(runs, power, t, tel, n_servers)
            ctx = ctx_cls(now_s=t, server_power_w=tuple(float(w) for w in watts), server_priority=priorities,
                          server_clock_mhz=tuple(server_clock), row_budget_w=power.row_budget_w,
                          state=cap_state)
            if power.policy is not None:
                dec = power.policy(ctx)
                calls += 1
                cap_state = dec.state
                clocks = tuple(dec.server_clock_mhz)
                if len(clocks) != n_servers:
                    raise InputError(f"capping policy returned {len(clocks)} clocks for {n_servers} servers",
                                     field="server_clock_mhz", expected=f"{n_servers} entries")
                if dec.brake:  # the hard cap holds every server: at the policy's clock or the brake clock
                    hold = _brake_clock(runs, power)
                    clocks = tuple(hold if c is None else c for c in clocks)
                brake = bool(dec.brake)
                # the brake is an out-of-band power cap (BMC/Redfish: seconds), clock locks in-band (~0.1 s)
                lat = power.brake_latency_s if brake and power.brake_latency_s is not None \
                    else power.actuation_latency_s
                actuations.append((t + lat, clocks, brake))
            k_tel += 1
        for idx in list(next_ctrl):
            if next_ctrl[idx] <= t + 1e-12:
                _autoscale_tick(runs[idx], t, inst_counter)
                auto = runs[idx].pool.config.autoscale
                assert auto is not None
                next_ctrl[idx] += auto.interval_s
        if t >= k_base * dt - 1e-12:
            k_base += 1
    for r in order:
        r.eng.drain()
        if r.pool.role is PoolRole.PREFILL:
            _hand_off(r, runs[r.decode_of], config.link, math.inf)
            runs[r.decode_of].eng.drain()
    for r in runs:
        _finish_drains(r)
    return _build(trace, pools, runs, config, applied, calls)


def _power_types() -> tuple[Any, Any]:
    from planner.contracts.power import CapDecision, PowerContext

    return PowerContext, CapDecision


def _check_pools(pools: Sequence[Pool], config: ClusterConfig) -> None:
    names = [p.name for p in pools]
    if not pools or len(set(names)) != len(names):
        raise InputError(f"pool names must be unique and non-empty: {names}", field="pools",
                         expected="at least one pool, unique names")
    for p in pools:
        if p.role is PoolRole.PREFILL and (p.decode_pool not in names or pools[
                names.index(str(p.decode_pool))].role is not PoolRole.DECODE):
            raise InputError(f"prefill pool {p.name} names no decode pool ({p.decode_pool!r})",
                             field="decode_pool", expected="the name of a pool with role 'decode'")
        if p.priority not in ("hp", "lp"):
            raise InputError(f"pool {p.name}: priority {p.priority!r}", field="priority", expected="hp or lp")
        if config.power is not None:
            if p.gpu is None:
                raise InputError(f"pool {p.name} has no GPU spec (power in the loop)", field="gpu",
                                 expected="the pool's GPU type")
            if getattr(p.perf, "power_kernel", None) is None:
                raise InputError(f"pool {p.name}: the perf model has no power_kernel()", field="perf",
                                 expected="a perf model with a numba power kernel")


def _slots_of(pool: Pool) -> int:
    auto = pool.config.autoscale
    if auto is None:
        return pool.config.replicas
    # draining replicas keep their slots while new ones start: room for a full second set
    return 2 * auto.max_replicas


def _build_runs(trace: RequestTrace, pools: Sequence[Pool], config: ClusterConfig) -> list[_PoolRun]:
    which = assign_pools(trace, pools)
    names = [p.name for p in pools]
    runs: list[_PoolRun] = []
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
            setup = engine_setup(p.perf, _sub_trace(trace, np.zeros(0, dtype=np.int64)), cfg)
            rows = np.full(n, -1, dtype=np.int64)
            known: int | None = 0
        else:
            rows = np.flatnonzero(which == i).astype(np.int64)
            sub = _sub_trace(trace, rows)
            if p.role is PoolRole.PREFILL:
                sub = RequestTrace(sub.df.with_columns(pl.lit(1, dtype=pl.Int32).alias("output_tokens")),
                                   sub.meta)
            setup = engine_setup(p.perf, sub, cfg)
            task = make_shard_tasks(sub, cfg)[0]
            known = None
        init = p.config.replicas
        eng = shard_engine(task, setup, cfg, slots=slots, routable=list(range(init)), dt=dt_eng,
                           metrics=auto is not None, power=config.power is not None,
                           preload=p.role is PoolRole.DECODE,
                           ttft_buckets=auto.ttft_buckets_s if auto else (),
                           itl_buckets=auto.itl_buckets_s if auto else (), known=known)
        state = np.zeros(slots, dtype=np.int8)
        state[:init] = SERVING
        history: list[list[_Instance]] = [[] for _ in range(slots)]
        slot_inst: list[_Instance | None] = [None] * slots
        for s in range(init):
            it = _Instance(inst=inst, pool=i, slot=s, t_request=0.0, t_ready=0.0)
            inst += 1
            history[s].append(it)
            slot_inst[s] = it
        g = int(p.perf.gpus)
        per_node = p.gpu.gpus_per_node if p.gpu is not None else 8
        n_servers = math.ceil(slots * g / per_node)
        run = _PoolRun(index=i, pool=p, eng=eng, rows=rows, slots=slots, state=state, slot_inst=slot_inst,
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


def _empty_task(n: int) -> ShardTask:
    z = np.zeros(0, dtype=np.int64)
    return ShardTask(index=0, replica_ids=z, request_ids=z,
                     arrival_s=np.zeros(n), input_tokens=np.zeros(n, dtype=np.int64),
                     output_tokens=np.ones(n, dtype=np.int64), prefix_hashes=np.zeros(0, dtype=np.uint64),
                     prefix_offsets=np.zeros(n + 1, dtype=np.int64), route_key=np.zeros(n, dtype=np.uint64),
                     affinity_key=np.zeros(n, dtype=np.uint64))


# ------------------------------------------------------------------------------------------------
# events
# ------------------------------------------------------------------------------------------------


def _hand_off(pre: _PoolRun, dec: _PoolRun, link: KVLink, t: float) -> None:
    """Send requests whose first token is out (before ``t``) to the decode pool."""
    eng = pre.eng
    new = np.arange(pre.q_seen, eng.q_next, dtype=np.int64)
    pre.q_seen = eng.q_next
    pend = np.concatenate([pre.pend, new])
    first = eng.rf[pend, E.F_FIRST]
    rejected = eng.rq[pend, E.R_PHASE] == E.PH_REJECTED
    ready = ~np.isnan(first)
    go = pend[ready]
    pre.pend = pend[~ready & ~rejected]
    if go.size == 0:
        return
    req = pre.rows[go]
    inp = eng.inp[go]
    outs = pre.full_out[go]
    keep = outs >= 2
    go, req, inp, outs = go[keep], req[keep], inp[keep], outs[keep]
    if go.size == 0:
        return
    xfer = link.latency_s + _kv_bytes_per_token(pre.pool, link) * inp / _link_bytes_per_s(pre.pool, link)
    arrival = eng.rf[go, E.F_FIRST] + xfer
    lo, hi = dec.eng.q_next, dec.eng.known
    keys = splitmix64_np(req.astype(np.uint64))
    perm = dec.eng.extend(arrival, inp + 1, outs - 1, keys)
    dec.rows[lo:hi + go.size] = np.concatenate([dec.rows[lo:hi], req])[perm]


def _finish_drains(r: _PoolRun) -> None:
    for s in (int(v) for v in np.flatnonzero(r.state == DRAINING)):
        if r.eng.idle(s):
            it = r.slot_inst[s]
            assert it is not None
            it.t_stop = max(it.t_drain, float(r.eng.pf[s, E.Q_NOW]))
            r.state[s] = OFF
            r.slot_inst[s] = None


def _become_ready(r: _PoolRun, t: float) -> None:
    if not r.pending_ready:
        return
    now = [i for i in r.pending_ready if i.t_ready <= t]
    if not now:
        return
    r.pending_ready = [i for i in r.pending_ready if i.t_ready > t]
    for it in now:
        r.state[it.slot] = SERVING
    r.eng.set_routable(r.serving())


def _apply_clocks(r: _PoolRun, server_clock: list[float | None], t: float) -> None:
    per_node = r.pool.gpu.gpus_per_node if r.pool.gpu is not None else 8
    for s in range(r.slots):
        g0 = s * r.gpus
        servers = range(r.server0 + g0 // per_node, r.server0 + (g0 + r.gpus - 1) // per_node + 1)
        locks = [server_clock[v] for v in servers if server_clock[v] is not None]
        mhz: float | None = None
        if locks:
            lo = min(float(x) for x in locks if x is not None)
            if r.pool.gpu is not None:
                lo = min(max(lo, r.pool.gpu.min_sm_clock_mhz), r.pool.gpu.max_sm_clock_mhz)
                mhz = None if lo >= r.pool.gpu.max_sm_clock_mhz else lo
            else:
                mhz = lo
        prev = r.slot_mhz[s]
        if mhz == prev:
            continue
        r.slot_mhz[s] = mhz
        r.eng.set_level(s, r.eng.level_for(mhz), t)
        if prev is None:
            r.lock_since[s] = t
        elif mhz is None:
            r.locks[s].append((float(r.lock_since[s]), t))
            r.lock_since[s] = np.nan


def _brake_clock(runs: Sequence[_PoolRun], power: PowerConfig) -> float:
    if power.brake_clock_mhz is not None:
        return power.brake_clock_mhz
    return max(r.pool.gpu.min_sm_clock_mhz for r in runs if r.pool.gpu is not None)


def _server_base_w(gpu: GPUSpec, power: PowerConfig) -> float:
    """Non-GPU power of a server holding a replica (see :attr:`PowerConfig.server_base_w`)."""
    if power.server_base_w is not None:
        return power.server_base_w
    if gpu.node_max_w is None:
        return 0.0
    return max(0.0, float(gpu.node_max_w) - gpu.gpus_per_node * gpu.tdp_w)


def _server_power(runs: Sequence[_PoolRun], power: PowerConfig, t: float, period: float,
                  n_servers: int) -> F64:
    """Average power of every server over ``[t - period, t)``: GPUs (steps from the loop, idle power
    for the rest of the time a replica holds them) plus the server's base power."""
    watts = np.zeros(n_servers)
    for r in runs:
        gpu = r.pool.gpu
        assert gpu is not None
        k = round(t / period) - 1
        ts = r.eng.ts
        if 0 <= k < ts.shape[0]:
            busy = ts[k, :, E.T_BUSY].copy()
            energy = ts[k, :, E.T_ENERGY].copy()
        else:
            busy = np.zeros(r.slots)
            energy = np.zeros(r.slots)
        ov, oj = r.eng.inflight_overlap(t - period, t)
        busy = np.minimum(busy + ov, period)
        energy += oj
        held = r.state != OFF
        per_gpu = np.where(held, (energy + (period - busy) * gpu.idle_w) / period, 0.0)
        base = _server_base_w(gpu, power)
        gpu_w = np.repeat(per_gpu, r.gpus)
        gpu_held = np.repeat(held, r.gpus)
        server = np.arange(gpu_w.size) // gpu.gpus_per_node
        srv_w = np.bincount(server, weights=gpu_w, minlength=r.n_servers)
        srv_held = np.bincount(server, weights=gpu_held.astype(float), minlength=r.n_servers) > 0
        watts[r.server0:r.server0 + r.n_servers] = srv_w + np.where(srv_held, base, 0.0)
    return watts


def _autoscale_tick(r: _PoolRun, t: float, inst_counter: list[int]) -> None:
    from planner.contracts.scaling import ScalingContext

    auto = r.pool.config.autoscale
    assert auto is not None
    eng = r.eng
    serving = r.serving()
    starting = [int(s) for s in np.flatnonzero(r.state == STARTING)]
    listed = serving + starting  # pods that exist: serving, or loading weights (not ready)
    kv = eng.kv_usage()
    mh = eng.mh
    ntb = len(auto.ttft_buckets_s)
    nib = len(auto.itl_buckets_s)
    itl0 = E.M_HIST + ntb + 1
    values: dict[str, object] = {
        "now_s": t,
        "replicas": len(listed),
        "running": tuple(int(eng.pi[s, E.P_NRUN]) for s in listed),
        "waiting": tuple(int(eng.pi[s, E.P_NWAIT]) for s in listed),
        "kv_cache_usage_perc": tuple(float(kv[s]) for s in listed),
        "ready": tuple([True] * len(serving) + [False] * len(starting)),
        "ttft_buckets_s": tuple(auto.ttft_buckets_s),
        "ttft_counts": tuple(int(x) for x in mh[E.M_HIST:E.M_HIST + ntb]),
        "ttft_count": int(mh[E.M_HIST + ntb]),
        "ttft_sum_s": float(mh[E.M_TTFT_SUM_US]) / 1e6,
        "itl_buckets_s": tuple(auto.itl_buckets_s),
        "itl_counts": tuple(int(x) for x in mh[itl0:itl0 + nib]),
        "itl_count": int(mh[itl0 + nib]),
        "itl_sum_s": float(mh[E.M_ITL_SUM_US]) / 1e6,
        "requests_total": int(mh[E.M_ARRIVED]),
        "request_success_total": int(mh[E.M_SUCCESS]),
        "prompt_tokens_total": int(mh[E.M_PROMPT]),
        "generation_tokens_total": int(mh[E.M_GEN]),
        "state": r.policy_state,
    }
    names = {f.name for f in dataclasses.fields(ScalingContext)}
    ctx = ScalingContext(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]
    dec = auto.policy(ctx)
    r.policy_state = dec.state
    desired = max(auto.min_replicas, min(auto.max_replicas, int(dec.desired_replicas)))
    current = len(serving) + len(starting)
    if desired > current:
        for _ in range(desired - current):
            free = np.flatnonzero(r.state == OFF)
            if free.size == 0:
                r.deferred += 1
                break
            s = int(free[0])
            if r.history[s]:
                eng.flush(s)
            cold = float(auto.cold_start.sample(r.rng, 1)[0])
            it = _Instance(inst=inst_counter[0], pool=r.index, slot=s, t_request=t,
                           t_ready=t + max(cold, 0.0))
            inst_counter[0] += 1
            r.history[s].append(it)
            r.slot_inst[s] = it
            r.state[s] = STARTING
            r.pending_ready.append(it)
            r.scale_ups += 1
    elif desired < current:
        k = current - desired
        for it in sorted(r.pending_ready, key=lambda i: -i.t_request)[:k]:
            it.t_stop = t
            it.t_ready = math.inf
            r.state[it.slot] = OFF
            r.slot_inst[it.slot] = None
            r.pending_ready.remove(it)
            r.scale_downs += 1
            k -= 1
        if k > 0:
            load = [(int(eng.pi[s, E.P_NRUN] + eng.pi[s, E.P_NWAIT]), -s, s) for s in serving]
            for _, _, s in sorted(load)[:k]:
                r.state[s] = DRAINING
                held = r.slot_inst[s]
                assert held is not None
                held.t_drain = t
                r.scale_downs += 1
            eng.set_routable(r.serving())
            _finish_drains(r)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


def _instance_table(runs: Sequence[_PoolRun], end: float) -> pl.DataFrame:
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


def _replica_of(r: _PoolRun, slot: I64, t_route: F64) -> I64:
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


def _locked(r: _PoolRun, slot: I64, t0: F64, t1: F64, end: float) -> NDArray[np.bool_]:
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


def _build(trace: RequestTrace, pools: Sequence[Pool], runs: Sequence[_PoolRun], config: ClusterConfig,
           applied: list[tuple[float, tuple[float | None, ...], bool]], calls: int) -> SimResult:
    df = trace.df
    n = df.height
    arrival = df["arrival_s"].to_numpy().astype(np.float64)
    inp = df["input_tokens"].to_numpy()
    out = df["output_tokens"].to_numpy()
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    sched = np.full(n, np.nan)
    replica = np.full(n, -1, dtype=np.int64)
    dreplica = np.full(n, -1, dtype=np.int64)
    pool_col = np.full(n, "", dtype=object)
    dpool_col = np.full(n, None, dtype=object)
    preempt = np.zeros(n, dtype=np.int64)
    cached = np.zeros(n, dtype=np.int64)
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
        m = eng.known if r.pool.role is PoolRole.DECODE else eng.n
        rows = r.rows[:m]
        rq = eng.rq[:m]
        rf = eng.rf[:m]
        slot = rq[:, E.R_REP]
        if r.pool.role is PoolRole.DECODE:
            finish[rows] = rf[:, E.F_FINISH]
            xfer[rows] = eng.arr[:m] - first[rows]
            dreplica[rows] = _replica_of(r, slot, eng.arr[:m])
            dpool_col[rows] = r.pool.name
            preempt[rows] += rq[:, E.R_PREEMPT]
            rejected[rows] |= rq[:, E.R_PHASE] == E.PH_REJECTED
            locked[rows] |= _locked(r, slot, eng.arr[:m], np.nan_to_num(rf[:, E.F_FINISH], nan=end_guess),
                                    end_guess)
            continue
        first[rows] = rf[:, E.F_FIRST]
        sched[rows] = rf[:, E.F_SCHED]
        if r.pool.role is PoolRole.BOTH:
            finish[rows] = rf[:, E.F_FINISH]
        else:
            one = out[rows] <= 1
            finish[rows[one]] = rf[one, E.F_FINISH]
        replica[rows] = _replica_of(r, slot, arrival[rows])
        pool_col[rows] = r.pool.name
        preempt[rows] += rq[:, E.R_PREEMPT]
        cached[rows] = np.maximum(rq[:, E.R_CACHED], 0)
        rejected[rows] |= rq[:, E.R_PHASE] == E.PH_REJECTED
        locked[rows] |= _locked(r, slot, arrival[rows], np.nan_to_num(rf[:, E.F_FINISH], nan=end_guess),
                                end_guess)
    classes = (df["slo_class"].fill_null(DEFAULT_CLASS) if "slo_class" in df.columns
               else pl.Series("slo_class", [DEFAULT_CLASS] * n, dtype=pl.String))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), np.nan)
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
    inst = _instance_table(runs, makespan)
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
        tsr, gpu_w, energy_j = _pool_series(r, sel_inst, makespan, dt, config)
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
        peak = _peak_held(sel_inst)
        pool_sums.append(PoolSummary(name=p.name, role=p.role.value, summary=s, scale_ups=r.scale_ups,
                                     scale_downs=r.scale_downs, scale_ups_deferred=r.deferred,
                                     peak_replicas=peak))
    timeseries = pl.concat(ts_frames, how="diagonal_relaxed")
    capping: CappingStats | None = None
    power_df: pl.DataFrame | None = None
    if config.power is not None or have_gpu:
        power_df, row_w, period = _power_table(runs, gpu_w_all, config, makespan)
        if config.power is not None:
            capping = _capping_stats(config.power, applied, row_w, period, makespan, calls)
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
    return SimResult(requests=requests, timeseries=timeseries, power=power_df, summary=summary,
                     pools=tuple(pool_sums), replicas=inst, capping=capping)


def runs_gpus(runs: Sequence[_PoolRun], name: str) -> int:
    """GPUs per replica of the pool called ``name``."""
    return next(r.gpus for r in runs if r.pool.name == name)


def _peak_held(inst: pl.DataFrame) -> int:
    if inst.height == 0:
        return 0
    ev = sorted([(float(a), 1) for a in inst["requested_s"]] + [(float(b), -1) for b in inst["stopped_s"]],
                key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def _covered(a: F64, b: F64, t: F64) -> F64:
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


def _overlap(a: F64, b: F64, t0: F64, t1: F64) -> F64:
    """Per bin ``[t0, t1)``, the summed overlap with the intervals ``[a, b)``."""
    out: F64 = np.maximum(_covered(a, b, t1) - _covered(a, b, t0), 0.0)
    return out


def _held_per_bin(r: _PoolRun, t0: F64, t1: F64) -> F64:
    """Seconds each slot was held (GPUs allocated) in each bin: ``[bins, slots]``."""
    out = np.zeros((t0.size, r.slots))
    for s in range(r.slots):
        if not r.history[s]:
            continue
        a = np.array([it.t_request for it in r.history[s]], dtype=np.float64)
        b = np.array([it.t_stop for it in r.history[s]], dtype=np.float64)
        out[:, s] = _overlap(a, b, t0, t1)
    return out


def _pool_series(r: _PoolRun, inst: pl.DataFrame, makespan: float, dt: float,
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
    held_f = _held_per_bin(r, f0, f1)
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
    starting = _overlap(a, np.minimum(ready, stop), t0, t1) / span
    serving = _overlap(np.minimum(ready, stop), np.minimum(drain, stop), t0, t1) / span
    draining = _overlap(np.minimum(drain, stop), stop, t0, t1) / span
    held = _held_per_bin(r, t0, t1).sum(axis=1)
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


def _power_table(runs: Sequence[_PoolRun], gpu_w: Sequence[F64], config: ClusterConfig,
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
            base = _server_base_w(gpu, power)
        held = _held_per_bin(r, t0, t1)  # [bins, slots] seconds
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


def _capping_stats(power: PowerConfig, applied: list[tuple[float, tuple[float | None, ...], bool]],
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

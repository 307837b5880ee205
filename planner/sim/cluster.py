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

import numpy as np

from planner.contracts.power import PowerContext
from planner.contracts.scaling import ScalingContext
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.cluster_power import (
    apply_clocks,
    brake_clock,
    server_power,
)
from planner.sim.cluster_result import (
    build_result,
)
from planner.sim.coldstart import FITTED_COLD_START
from planner.sim.fault_loop import apply_faults, fault_stats, start_faults
from planner.sim.lifecycle import become_ready, finish_drains, scale_to
from planner.sim.pool_run import STARTING, PoolRun, build_runs
from planner.sim.pools import ClusterConfig, KVLink, Pool, PoolRole
from planner.sim.replay import splitmix64_np
from planner.sim.result import SimResult
from traces.errors import InputError
from traces.schema import RequestTrace


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

    >>> from planner.sim import SimConfig
    >>> from planner.sim.pools import ClusterConfig, Pool
    >>> from planner.sim.testing import LinearPerf, poisson_trace
    >>> tr = poisson_trace(50, 5.0, 1)
    >>> res = replay_cluster(tr, [Pool("a", LinearPerf(), SimConfig(replicas=2))], config=ClusterConfig())
    >>> res.summary.completed, res.pools[0].name
    (50, 'a')
    """
    _check_pools(pools, config)
    runs = build_runs(trace, pools, config)
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
    faulted = []
    for r in runs:
        fc = r.pool.config.faults
        if fc is not None:
            auto = r.pool.config.autoscale
            r.faults = start_faults(r, fc, servers_per_rack=config.servers_per_rack, requests=total,
                                    cold_start=auto.cold_start if auto is not None else FITTED_COLD_START)
            faulted.append((r, r.faults))
    while True:
        if all(r.eng.all_idle() and r.pend.size == 0 for r in runs) and not any(
                r.pending_ready for r in runs) and all(r.eng.q_next >= r.eng.known for r in runs
                                                       if r.pool.role is not PoolRole.DECODE):
            break
        cand = [k_base * dt]
        if power is not None:
            cand.append(k_tel * tel)
        cand.extend(next_ctrl.values())
        cand.extend(i.t_ready for r in runs for i in r.pending_ready)
        cand.extend(a[0] for a in actuations)
        cand.extend(fr.next_time() for _, fr in faulted)
        t = min(cand)
        for r in order:
            r.eng.run_until(t)
            if r.pool.role is PoolRole.PREFILL:
                _hand_off(r, runs[r.decode_of], config.link, t)
        if progress is not None:
            progress(sum(r.eng.q_next for r in runs if r.pool.role is not PoolRole.DECODE), total)
        for r, fr in faulted:
            apply_faults(r, fr, t, inst_counter)
        for r in runs:
            finish_drains(r)
            become_ready(r, t)
        due = [a for a in actuations if a[0] <= t]
        if due:
            actuations = [a for a in actuations if a[0] > t]
            for a in due:
                server_clock = list(a[1])
                applied.append((t, a[1], a[2]))
                for r in runs:
                    apply_clocks(r, server_clock, t)
        if power is not None and t >= k_tel * tel - 1e-12:
            watts = server_power(runs, power, t, tel, n_servers)
            ctx = PowerContext(now_s=t, server_power_w=tuple(float(w) for w in watts),
                               server_priority=priorities, server_clock_mhz=tuple(server_clock),
                               row_budget_w=power.row_budget_w, state=cap_state)
            if power.policy is not None:
                dec = power.policy(ctx)
                calls += 1
                cap_state = dec.state
                clocks = tuple(dec.server_clock_mhz)
                if len(clocks) != n_servers:
                    raise InputError(f"capping policy returned {len(clocks)} clocks for {n_servers} servers",
                                     field="server_clock_mhz", expected=f"{n_servers} entries")
                if dec.brake:  # the hard cap holds every server: at the policy's clock or the brake clock
                    hold = brake_clock(runs, power)
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
        finish_drains(r)
    result = build_result(trace, pools, runs, config, applied, calls)
    if faulted:
        result = dataclasses.replace(result, faults=fault_stats(faulted))
    return result


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
        if p.config.faults is not None and p.role is not PoolRole.BOTH:
            raise InputError(f"pool {p.name}: faults are replayed in pools that prefill and decode",
                             field="faults", expected="faults on a pool with role 'both' (no P/D split)")
        if config.power is not None:
            if p.gpu is None:
                raise InputError(f"pool {p.name} has no GPU spec (power in the loop)", field="gpu",
                                 expected="the pool's GPU type")
            if getattr(p.perf, "power_kernel", None) is None:
                raise InputError(f"pool {p.name}: the perf model has no power_kernel()", field="perf",
                                 expected="a perf model with a numba power kernel")


def _hand_off(pre: PoolRun, dec: PoolRun, link: KVLink, t: float) -> None:
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


def _autoscale_tick(r: PoolRun, t: float, inst_counter: list[int]) -> None:
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
    ctx = ScalingContext(
        now_s=t,
        replicas=len(listed),
        running=tuple(int(eng.pi[s, E.P_NRUN]) for s in listed),
        waiting=tuple(int(eng.pi[s, E.P_NWAIT]) for s in listed),
        kv_cache_usage_perc=tuple(float(kv[s]) for s in listed),
        ready=tuple([True] * len(serving) + [False] * len(starting)),
        ttft_buckets_s=tuple(auto.ttft_buckets_s),
        ttft_counts=tuple(int(x) for x in mh[E.M_HIST:E.M_HIST + ntb]),
        ttft_count=int(mh[E.M_HIST + ntb]),
        ttft_sum_s=float(mh[E.M_TTFT_SUM_US]) / 1e6,
        itl_buckets_s=tuple(auto.itl_buckets_s),
        itl_counts=tuple(int(x) for x in mh[itl0:itl0 + nib]),
        itl_count=int(mh[itl0 + nib]),
        itl_sum_s=float(mh[E.M_ITL_SUM_US]) / 1e6,
        requests_total=int(mh[E.M_ARRIVED]),
        prompt_tokens_total=int(mh[E.M_PROMPT]),
        generation_tokens_total=int(mh[E.M_GEN]),
        state=r.policy_state,
    )
    dec = auto.policy(ctx)
    r.policy_state = dec.state
    desired = max(auto.min_replicas, min(auto.max_replicas, int(dec.desired_replicas)))
    scale_to(r, desired, t, cold_start=auto.cold_start, next_instance=inst_counter)

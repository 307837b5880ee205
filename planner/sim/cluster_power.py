"""Power in the cluster loop: clock locks applied to a pool and server power per telemetry period (the
row's power table and capping statistics are assembled in :mod:`planner.sim.cluster_result`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.catalog.schema import GPUSpec
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.config import PowerConfig
from planner.sim.pool_run import OFF, PoolRun
from planner.sim.pools import F64


def apply_clocks(r: PoolRun, server_clock: list[float | None], t: float) -> None:
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


def brake_clock(runs: Sequence[PoolRun], power: PowerConfig) -> float:
    if power.brake_clock_mhz is not None:
        return power.brake_clock_mhz
    return max(r.pool.gpu.min_sm_clock_mhz for r in runs if r.pool.gpu is not None)


def server_base_w(gpu: GPUSpec, power: PowerConfig) -> float:
    """Non-GPU power of a server holding a replica (see :attr:`PowerConfig.server_base_w`)."""
    if power.server_base_w is not None:
        return power.server_base_w
    if gpu.node_max_w is None:
        return 0.0
    return max(0.0, float(gpu.node_max_w) - gpu.gpus_per_node * gpu.tdp_w)


def server_power(runs: Sequence[PoolRun], power: PowerConfig, t: float, period: float,
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
        base = server_base_w(gpu, power)
        gpu_w = np.repeat(per_gpu, r.gpus)
        gpu_held = np.repeat(held, r.gpus)
        server = np.arange(gpu_w.size) // gpu.gpus_per_node
        srv_w = np.bincount(server, weights=gpu_w, minlength=r.n_servers)
        srv_held = np.bincount(server, weights=gpu_held.astype(float), minlength=r.n_servers) > 0
        watts[r.server0:r.server0 + r.n_servers] = srv_w + np.where(srv_held, base, 0.0)
    return watts



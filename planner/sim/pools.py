"""Pools of a cluster and how requests are assigned to them (the configuration of
:func:`planner.sim.cluster.replay_cluster`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec
from planner.perf.api import ReplicaPerf
from planner.sim.config import PowerConfig, SimConfig, SLOTarget
from traces.errors import InputError
from traces.schema import RequestTrace

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


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


def sub_trace(trace: RequestTrace, ids: I64) -> RequestTrace:
    return RequestTrace(trace.df[ids.tolist()] if ids.size else trace.df.head(0), trace.meta)

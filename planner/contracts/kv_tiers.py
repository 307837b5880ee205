"""KV-cache tiers below GPU memory, as a replay sees them: what each holds and how fast it loads.

Why tiers: multi-turn traffic comes back to a conversation after a think time of tens of seconds, by
which point the engine has evicted its prefix from HBM; a host-DRAM tier (vLLM's CPU offloading,
LMCache), a local NVMe tier and a shared pool (Mooncake store, LMCache remote) keep those blocks so the
next turn loads them instead of recomputing them.

The model (one home for it: the engine in :mod:`planner.sim.engine` and its reference follow it):

* blocks evicted from HBM go to the first tier with room, a tier's least recently used block goes to
  the next tier down when it needs room, and the last tier drops it (a victim hierarchy: HBM, then
  the local tiers in order, then the shared pool);
* an admitted request's prefix is looked up in HBM, then block by block in the tiers (the first tier
  holding a block serves it; a block held nowhere ends the prefix); served blocks stay in their tier
  (a later eviction from HBM finds them there and only refreshes them);
* a load takes ``latency + tokens x kv_bytes_per_token / read bandwidth`` per tier used, per GPU
  (each GPU moves its own share over its own link). With ``overlap`` the engine loads layer by layer
  while it computes (LMCache's layer-wise pipeline, vLLM's asynchronous connector loads), so a step
  takes ``max(compute, load)``; without it the load runs before the step's compute (``compute +
  load``);
* ``cost_aware``: a tier serves blocks only where loading a token from it is faster than computing it
  again (the perf model's prefill seconds per token); plain LRU serves every hit.

Preemption is by recompute (vLLM V1's only mode) unless ``swap_gb`` reserves swap space in host memory
(vLLM V0's ``--swap-space``, GB per GPU): then a preempted request whose KV fits in what is free is
copied out over the first local tier's link before the step being planned, and back when it is admitted
again (its blocks its own, not the prefix cache's); copies never overlap compute. Without swap space (or
when it is full) a preempted request's prompt blocks go back to the prefix cache like a finished one's, so
with tiers its re-admission loads what was demoted.

>>> t = KVTiers((KVTierLevel("dram", capacity_gb=200, read_gbps=50, latency_s=2e-5),))
>>> t.local_levels, t.shared_level is None
(1, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from traces.errors import InputError

if TYPE_CHECKING:
    from planner.catalog.schema import KVTierSpec

MAX_LOCAL_LEVELS = 2
"""Per-replica tiers the engine keeps (DRAM and NVMe in practice), above at most one shared pool."""
SHARED_SLOT = MAX_LOCAL_LEVELS + 1
"""The engine's level number of the shared pool (local tiers are levels 1 .. MAX_LOCAL_LEVELS)."""


@dataclass(frozen=True)
class KVTierLevel:
    """One tier: capacity per GPU (the whole pool's when ``shared``), read GB/s per GPU, seconds per load,
    and USD per GB-hour of its capacity (0 when unknown)."""

    name: str
    capacity_gb: float
    read_gbps: float
    latency_s: float
    shared: bool = False
    price_per_gb_hour: float = 0.0

    def __post_init__(self) -> None:
        if not (self.capacity_gb > 0 and self.read_gbps > 0 and self.latency_s >= 0):
            raise InputError(f"KV tier {self.name!r}: capacity and bandwidth must be positive, latency >= 0",
                             field=f"kv_tiers.{self.name}",
                             expected="capacity_gb > 0, read_gbps > 0, latency_us >= 0")

    def capacity_tokens(self, kv_bytes_per_token: float, gpus: int) -> int:
        """Tokens of KV the tier holds for one replica of ``gpus`` GPUs (for the whole fleet when
        shared): each GPU keeps its own share of every token."""
        per_gpu_bytes = kv_bytes_per_token if kv_bytes_per_token > 0 else 1.0
        total_gb = self.capacity_gb if self.shared else self.capacity_gb * gpus
        return int(total_gb * 1e9 / (per_gpu_bytes * gpus))

    def seconds_per_token(self, kv_bytes_per_token: float) -> float:
        """Load time of one token's KV (every GPU loads its share in parallel)."""
        return kv_bytes_per_token / (self.read_gbps * 1e9)


@dataclass(frozen=True)
class KVTiers:
    """The tiers of a replay, top down: local ones (at most two) first, then at most one shared pool."""

    levels: tuple[KVTierLevel, ...]
    overlap: bool = True
    cost_aware: bool = False
    swap_gb: float = 0.0

    def __post_init__(self) -> None:
        local = [lv for lv in self.levels if not lv.shared]
        shared = [lv for lv in self.levels if lv.shared]
        if not self.levels:
            raise InputError("no KV tier given", field="kv_tiers",
                             expected="one or more of dram, ssd, remote")
        if len(local) > MAX_LOCAL_LEVELS or len(shared) > 1 or (shared and not self.levels[-1].shared):
            raise InputError(
                "KV tiers: " + ", ".join(lv.name for lv in self.levels), field="kv_tiers",
                expected=f"at most {MAX_LOCAL_LEVELS} per-replica tiers, then at most one shared pool")
        if self.swap_gb < 0 or (self.swap_gb > 0 and not local):
            raise InputError(f"swap space {self.swap_gb} GB needs a host tier to swap over", field="swap_gb",
                             expected="swap_gb >= 0, and a local tier (dram) when > 0")
        if len({lv.name for lv in self.levels}) != len(self.levels):
            raise InputError("a KV tier is named twice", field="kv_tiers", expected="distinct tiers")

    @property
    def local_levels(self) -> int:
        return sum(1 for lv in self.levels if not lv.shared)

    @property
    def shared_level(self) -> KVTierLevel | None:
        return self.levels[-1] if self.levels[-1].shared else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def slots(self) -> tuple[tuple[int, KVTierLevel], ...]:
        """Each tier with its engine level: the local ones 1, 2 in order, the shared pool
        :data:`SHARED_SLOT`."""
        local = [lv for lv in self.levels if not lv.shared]
        out = [(k + 1, lv) for k, lv in enumerate(local)]
        if self.shared_level is not None:
            out.append((SHARED_SLOT, self.shared_level))
        return tuple(out)

    def capacity_tokens(self, kv_bytes_per_token: float, gpus: int, replicas: int) -> int:
        """KV tokens all tiers hold for a fleet of ``replicas`` (for the ideal-cache bound)."""
        return sum(lv.capacity_tokens(kv_bytes_per_token, gpus) * (1 if lv.shared else replicas)
                   for lv in self.levels)

    def price_per_hour(self, gpus_total: int) -> float:
        """What the tiers cost per hour for a fleet of ``gpus_total`` GPUs (a shared pool once)."""
        return sum(lv.price_per_gb_hour * lv.capacity_gb * (1 if lv.shared else gpus_total)
                   for lv in self.levels)


def tiers_from_names(available: Mapping[str, KVTierSpec], names: Sequence[str], *, overlap: bool = True,
                     cost_aware: bool = False, swap_gb: float = 0.0) -> KVTiers | None:
    """The tiers a user named (``dram``, ``ssd:1000``: a catalog tier, optionally with its capacity in GB
    per GPU, the pool's GB for a shared tier); None when none is named.

    >>> from planner.catalog import load_catalog
    >>> t = tiers_from_names(load_catalog().kv_tiers, ["remote:20000", "dram"])
    >>> t.names, t.levels[-1].capacity_gb
    (('dram', 'remote'), 20000.0)
    """
    if not names:
        return None
    specs = []
    for text in names:
        name, _, size = text.partition(":")
        spec = next((s for key, s in available.items() if key.lower() == name.strip().lower()), None)
        if spec is None:
            raise InputError(f"unknown KV tier {name!r}", field="--kv-tier",
                             expected="one of " + ", ".join(sorted(available)) + " (optionally :GB)")
        if size:
            try:
                gb = float(size)
            except ValueError:
                gb = -1.0
            if not gb > 0:
                raise InputError(f"KV tier capacity {size!r} is not a positive number of GB",
                                 field="--kv-tier", expected="NAME:GB, e.g. dram:256")
            spec = replace(spec, capacity_gb=gb)
        specs.append(spec)
    return tiers_from_catalog(specs, overlap=overlap, cost_aware=cost_aware, swap_gb=swap_gb)


def tiers_from_catalog(specs: Iterable[KVTierSpec], *, overlap: bool = True,
                       cost_aware: bool = False, swap_gb: float = 0.0) -> KVTiers:
    """The replay's tiers from catalog entries (in the order given; a shared one goes last)."""
    specs = sorted(specs, key=lambda s: s.shared)
    return KVTiers(tuple(KVTierLevel(s.name, s.capacity_gb, s.read_gbps, s.latency_us * 1e-6, s.shared,
                                     s.price_per_gb_hour) for s in specs),
                   overlap=overlap, cost_aware=cost_aware, swap_gb=swap_gb)

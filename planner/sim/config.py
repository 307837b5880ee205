"""Simulator options as frozen dataclasses (the core's view; the CLI validates at its edge).

>>> EngineConfig().max_batched_tokens
8192
>>> RouterName("least-outstanding").code
1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from traces.errors import InputError


class RouterName(StrEnum):
    """Routers across the replicas of one shard.

    ``round-robin``, ``least-outstanding`` (running + waiting), ``least-kv`` (KV blocks in use plus queued
    prompt tokens), ``power-of-two`` (two seeded hash candidates, the less outstanding one),
    ``prefix-affinity`` (two candidates hashed from the first prefix block or session, the less loaded
    one, as DualMap does: keeps cache locality without hot spots), ``hash`` (stateless: the replica is a
    hash of the request id; the one router whose decisions do not depend on how the cluster is sharded).
    """

    ROUND_ROBIN = "round-robin"
    LEAST_OUTSTANDING = "least-outstanding"
    LEAST_KV = "least-kv"
    POWER_OF_TWO = "power-of-two"
    PREFIX_AFFINITY = "prefix-affinity"
    HASH = "hash"

    @property
    def code(self) -> int:
        """The integer the numba loop switches on (see ``planner.sim.engine.ROUTER_*``)."""
        return _ROUTER_CODES[self]

    @property
    def sharding_independent(self) -> bool:
        """Whether a request's replica is a function of the request alone (not of replica state)."""
        return self is RouterName.HASH


_ROUTER_CODES: dict[RouterName, int] = {
    RouterName.ROUND_ROBIN: 0,
    RouterName.LEAST_OUTSTANDING: 1,
    RouterName.LEAST_KV: 2,
    RouterName.POWER_OF_TWO: 3,
    RouterName.PREFIX_AFFINITY: 4,
    RouterName.HASH: 5,
}


@dataclass(frozen=True)
class EngineConfig:
    """One replica's scheduler, after vLLM's engine arguments of the same names.

    Attributes:
        max_batched_tokens: token budget of one step (``--max-num-batched-tokens``).
        max_num_seqs: running sequences at most (``--max-num-seqs``).
        block_size: tokens per KV block (``--block-size``).
        enable_prefix_caching: reuse cached prompt blocks named by the trace's ``prefix_hashes``.
    """

    max_batched_tokens: int = 8192
    max_num_seqs: int = 256
    block_size: int = 16
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batched_tokens", "max_num_seqs", "block_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be positive", field=name, expected="an integer >= 1")
        if self.max_batched_tokens < self.max_num_seqs:
            # every running sequence must be able to decode in every step (vLLM enforces the same)
            raise InputError(
                f"max_batched_tokens {self.max_batched_tokens} < max_num_seqs {self.max_num_seqs}",
                field="max_batched_tokens",
                expected="max_batched_tokens >= max_num_seqs",
            )


@dataclass(frozen=True)
class SLOTarget:
    """Latency targets of one SLO class (seconds): a request meets its SLO when both hold."""

    ttft_s: float
    tpot_s: float


@dataclass(frozen=True)
class SimConfig:
    """Everything a replay needs besides the trace and the perf model.

    Attributes:
        replicas: replicas of the model in the cluster.
        router: how requests are spread over the replicas of a shard.
        engine: per-replica scheduler options.
        seed: seeds every random choice (power-of-two, shard assignment).
        shards: groups of replicas, each behind its own router (replica ``r`` is in shard ``r % shards``).
            Requests go to shards by a hash of their id, so for :attr:`RouterName.HASH` the result
            does not depend on ``shards``.
        interval_s: time-series resolution.
        slo: targets per SLO class; ``default_slo`` for classes not listed (and traces without classes).
        servers_per_rack: power aggregation (servers hold ``gpu.gpus_per_node`` GPUs).
        racks_per_row: power aggregation.
    """

    replicas: int
    router: RouterName = RouterName.LEAST_OUTSTANDING
    engine: EngineConfig = field(default_factory=EngineConfig)
    seed: int = 0
    shards: int = 1
    interval_s: float = 10.0
    slo: tuple[tuple[str, SLOTarget], ...] = ()
    default_slo: SLOTarget = field(default_factory=lambda: SLOTarget(ttft_s=2.0, tpot_s=0.1))
    servers_per_rack: int = 4
    racks_per_row: int = 8

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise InputError("replicas must be positive", field="replicas", expected="an integer >= 1")
        if not 1 <= self.shards <= self.replicas:
            raise InputError(
                f"shards {self.shards} must be between 1 and replicas {self.replicas}",
                field="shards",
                expected="1 <= shards <= replicas",
            )
        if not self.interval_s > 0:
            raise InputError("interval_s must be positive", field="interval_s", expected="a number > 0")

    def slo_for(self, slo_class: str | None) -> SLOTarget:
        """The targets of ``slo_class`` (the default ones when it is unknown or missing)."""
        for name, target in self.slo:
            if name == slo_class:
                return target
        return self.default_slo

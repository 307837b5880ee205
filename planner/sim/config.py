"""Simulator options as frozen dataclasses (the core's view; the CLI validates at its edge).

>>> EngineConfig().max_batched_tokens
8192
>>> RouterName("least-outstanding").code
1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from planner.contracts.kv_tiers import KVTiers
from planner.contracts.scaling import PolicyFn
from planner.contracts.serving import EngineConfig, SLOTarget
from planner.sim.coldstart import FITTED_COLD_START, ColdStart
from planner.sim.faults import FaultConfig
from traces.errors import InputError

if TYPE_CHECKING:
    from planner.contracts.power import CappingPolicy


class RouterName(StrEnum):
    """Routers across the replicas of one shard.

    ``round-robin``, ``least-outstanding`` (running + waiting), ``least-kv`` (KV blocks in use plus queued
    prompt tokens), ``power-of-two`` (two seeded hash candidates, the less outstanding one),
    ``prefix-affinity`` (two candidates hashed from the first prefix block that is not a hot spot, or the
    session, the less loaded one, as DualMap does: keeps cache locality without hot spots), ``hash``
    (stateless: the replica is a hash of the request id; the one router whose decisions do not depend on
    how the cluster is sharded), ``precise-prefix`` (llm-d's endpoint picker in its default profile: each
    replica scored by the share of the prompt's blocks its own KV cache holds, weight 3, plus the queue
    scorer, weight 2, the highest wins; blocks every replica will hold anyway, a prefix most requests
    share, are left out of the share so that it cannot collapse the fleet: :mod:`planner.sim.affinity`),
    ``session-affinity`` (a session's turns go to its home replica on a hash ring, spilling to the next
    replica on the ring while the home holds more than 1.25 x the mean outstanding requests: consistent
    hashing with bounded loads, Mirrokni et al. 2018, as HAProxy's ``hash-balance-factor 125`` runs it;
    requests without a session hash by their id), ``sglang-cache-aware`` (SGLang's router, ``cache_aware``
    policy: while the outstanding requests are imbalanced, the least loaded replica; otherwise the replica
    whose record of the prefixes it was sent matches the most of the prompt when that is more than
    ``cache_threshold`` of it, else the replica with the smallest record; the record is the router's own,
    not the replica's cache: :class:`RouterOptions`), ``dualmap`` (DualMap, Yuan et al. 2026: the two
    prefix-affinity candidates, the one with fewer queued prompt tokens unless it is a hot spot, and the
    least loaded replica when the chosen one's queue alone would break the TTFT target:
    :class:`RouterOptions`).
    """

    ROUND_ROBIN = "round-robin"
    LEAST_OUTSTANDING = "least-outstanding"
    LEAST_KV = "least-kv"
    POWER_OF_TWO = "power-of-two"
    PREFIX_AFFINITY = "prefix-affinity"
    HASH = "hash"
    PRECISE_PREFIX = "precise-prefix"
    SESSION_AFFINITY = "session-affinity"
    SGLANG_CACHE_AWARE = "sglang-cache-aware"
    DUALMAP = "dualmap"

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
    RouterName.PRECISE_PREFIX: 6,
    RouterName.SESSION_AFFINITY: 7,
    RouterName.SGLANG_CACHE_AWARE: 8,
    RouterName.DUALMAP: 9,
}

PRECISE_PREFIX_WEIGHT = 3.0
"""llm-d's default scheduling profile: the prefix-cache scorer's weight (OpenShift AI llm-d docs, 2026)."""
QUEUE_WEIGHT = 2.0
"""llm-d's default scheduling profile: the queue scorer's weight (waiting requests, min-max normalised)."""
TIER_BLOCK_WEIGHT = 0.8
"""With KV tiers, the precise-prefix scorer counts a prefix block held in the replica's own tiers (not
in HBM) as 0.8 of one in HBM: llm-d's KV-cache indexer tracks offloaded blocks by medium and weighs the
media (its example configuration: gpu 1.0, cpu 0.8; recalled from the llm-d kv-cache documentation,
not re-checked)."""
BALANCE_FACTOR = (5, 4)
"""Bounded-load consistent hashing: a replica takes a request while its outstanding requests stay within
``ceil(5/4 x (all outstanding + 1) / replicas)`` (HAProxy's ``hash-balance-factor 125``)."""

SGLANG_CACHE_THRESHOLD = 0.3
"""SGLang router's ``--cache-threshold``: the prefix match ratio above which the best-matching worker is
taken (sgl-model-gateway ``bindings/python/src/sglang_router/router_args.py``, ``RouterArgs``; the
older sgl-router ``sglang_router`` Python binding defaulted to 0.5)."""
SGLANG_BALANCE_ABS_THRESHOLD = 64
"""SGLang router's ``--balance-abs-threshold``: load is imbalanced only when ``max - min`` exceeds it
(sgl-model-gateway ``RouterArgs``; 32 in the older sgl-router)."""
SGLANG_BALANCE_REL_THRESHOLD = 1.5
"""SGLang router's ``--balance-rel-threshold``: ... and when ``max > rel * min`` (sgl-model-gateway
``RouterArgs``; 1.0001 in the older sgl-router)."""
DUALMAP_HOTSPOT_FACTOR = 2.0
"""DualMap's hot spot, as this replay draws it: a candidate whose outstanding requests, with the new one,
would exceed ``ceil(2 x (all outstanding + 1) / replicas)``, twice its fair share. The paper's abstract
says only that requests move from overloaded to underloaded instances; 2 x leaves the ordinary
fluctuation of a few requests to the two-choice rule and the TTFT switch (session-affinity's 1.25 x would
spill most turns of a lightly loaded fleet)."""


@dataclass(frozen=True)
class RouterOptions:
    """Knobs of the routers that have any (the other routers ignore them).

    Attributes:
        cache_threshold: ``sglang-cache-aware``: prefix match ratio (matched prompt blocks over prompt
            blocks) above which the best-matching replica is taken.
        balance_abs_threshold, balance_rel_threshold: ``sglang-cache-aware``: outstanding requests are
            imbalanced when ``max - min > abs`` and ``max > rel * min``; then the least loaded replica wins.
        tree_blocks: ``sglang-cache-aware``: prefix blocks (trace hash blocks) the router remembers per
            replica, least recently used first out. None: the replica's KV capacity in hash blocks, what
            its cache could hold at most. SGLang's own bound (``--max-tree-size``, 2**26 characters per
            worker, about 16 M tokens) is far beyond any replica's KV, so its tree soon claims prefixes the
            worker has evicted; bounding the record by the cache keeps that error to what LRU order
            differences make.
        ttft_slo_s: ``dualmap``: the TTFT target its SLO-aware switch protects. None: the replay's
            ``default_slo.ttft_s``.
        prefill_s_per_token: ``dualmap``: seconds of prefill per queued prompt token, to turn a queue into a
            TTFT estimate. None: from the perf model, a full ``max_batched_tokens`` prefill chunk's step
            time over its tokens (:func:`planner.sim.replay.engine_setup`).
        hotspot_factor: ``dualmap``: see :data:`DUALMAP_HOTSPOT_FACTOR`.
    """

    cache_threshold: float = SGLANG_CACHE_THRESHOLD
    balance_abs_threshold: int = SGLANG_BALANCE_ABS_THRESHOLD
    balance_rel_threshold: float = SGLANG_BALANCE_REL_THRESHOLD
    tree_blocks: int | None = None
    ttft_slo_s: float | None = None
    prefill_s_per_token: float | None = None
    hotspot_factor: float = DUALMAP_HOTSPOT_FACTOR

    def __post_init__(self) -> None:
        if not 0.0 <= self.cache_threshold <= 1.0:
            raise InputError(f"cache threshold {self.cache_threshold}",
                             field="router_options.cache_threshold", expected="0 <= cache_threshold <= 1")
        if self.balance_abs_threshold < 0 or not self.balance_rel_threshold >= 1.0:
            raise InputError("balance thresholds out of range", field="router_options.balance_abs_threshold",
                             expected="balance_abs_threshold >= 0 and balance_rel_threshold >= 1")
        if self.tree_blocks is not None and self.tree_blocks < 1:
            raise InputError(f"tree_blocks {self.tree_blocks}", field="router_options.tree_blocks",
                             expected="an integer >= 1 (or None: the replica's KV capacity)")
        for name in ("ttft_slo_s", "prefill_s_per_token"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"{name} {v}", field=f"router_options.{name}",
                                 expected="a number > 0 or None")
        if not self.hotspot_factor >= 1.0:
            raise InputError(f"hotspot factor {self.hotspot_factor}", field="router_options.hotspot_factor",
                             expected="a number >= 1")


VLLM_TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0)
"""Upper bounds of ``vllm:time_to_first_token_seconds`` (vLLM v0.8+ ``metrics.py``)."""
VLLM_ITL_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
"""Upper bounds of ``vllm:inter_token_latency_seconds`` (formerly ``time_per_output_token_seconds``)."""
VLLM_E2E_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0)
"""vLLM V1's request-latency buckets (``vllm:e2e_request_latency_seconds``)."""


def vllm_length_buckets(max_model_len: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 buckets up to ``max_model_len`` (its request length histograms).

    >>> vllm_length_buckets(1000)
    (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
    """
    out: list[float] = []
    m = 1
    while True:
        for x in (1, 2, 5):
            if x * m > max_model_len:
                return tuple(out)
            out.append(float(x * m))
        m *= 10


@dataclass(frozen=True)
class AutoscaleConfig:
    """Autoscaling in the loop: a policy called every ``interval_s`` of simulated time.

    Attributes:
        policy: ``decide(ctx: ScalingContext) -> ScalingDecision`` (e.g. from
            ``planner.autoscale.context.POLICIES``); its state travels in the context.
        interval_s: control interval.
        min_replicas, max_replicas: bounds the simulator enforces on the policy's wish.
        cold_start: time from a scale-up decision to the replica serving (seconds; the GPU is held,
            and counted, from the decision). Default: the Alibaba GenAI fit
            (:data:`planner.sim.coldstart.FITTED_COLD_START`).
        seed: seeds the cold-start draws.
        ttft_buckets_s, itl_buckets_s: histogram bounds the policy sees (vLLM's by default).
    """

    policy: PolicyFn
    interval_s: float = 15.0
    min_replicas: int = 1
    max_replicas: int = 64
    cold_start: ColdStart = FITTED_COLD_START
    seed: int = 0
    ttft_buckets_s: tuple[float, ...] = VLLM_TTFT_BUCKETS_S
    itl_buckets_s: tuple[float, ...] = VLLM_ITL_BUCKETS_S

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise InputError("control interval must be positive", field="autoscale.interval_s",
                             expected="seconds > 0")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InputError(f"replica bounds {self.min_replicas}..{self.max_replicas}",
                             field="autoscale.min_replicas", expected="1 <= min_replicas <= max_replicas")


@dataclass(frozen=True)
class PowerConfig:
    """Power in the loop: per-step GPU power, telemetry per server/rack/row and a capping policy.

    Attributes:
        row_budget_w: the row's power budget (what the capping policy defends).
        policy: ``decide(ctx: PowerContext) -> CapDecision`` called every ``telemetry_period_s``;
            None never locks clocks.
        telemetry_period_s: power measurement and policy period (the power table's resolution).
        actuation_latency_s: from a decision to the clock lock taking effect (in-band lock ~0.1 s).
        server_base_w: non-GPU power of a server (CPUs, fans, NICs) while it holds any replica;
            None: the GPU spec's ``node_max_w - gpus_per_node * tdp_w`` (the non-GPU share of the
            node's maximum: conservative, what a budget must allow for).
        brake_clock_mhz: clock every server is held at while the policy's out-of-band brake is engaged;
            None: the GPU's lowest clock.
        brake_latency_s: from a decision that engages the brake to the cap holding (out-of-band caps
            take seconds, POLCA); None: ``actuation_latency_s``.
    """

    row_budget_w: float
    policy: CappingPolicy | None = None
    telemetry_period_s: float = 1.0
    actuation_latency_s: float = 0.1
    server_base_w: float | None = None
    brake_clock_mhz: float | None = None
    brake_latency_s: float | None = None

    def __post_init__(self) -> None:
        if self.brake_latency_s is not None and not self.brake_latency_s >= 0:
            raise InputError("brake latency must not be negative", field="power.brake_latency_s",
                             expected="seconds >= 0")
        if not self.row_budget_w > 0:
            raise InputError("row budget must be positive", field="power.row_budget_w", expected="watts > 0")
        if not self.telemetry_period_s > 0:
            raise InputError("telemetry period must be positive", field="power.telemetry_period_s",
                             expected="seconds > 0")
        if not self.actuation_latency_s >= 0:
            raise InputError("actuation latency must not be negative", field="power.actuation_latency_s",
                             expected="seconds >= 0")
        if self.server_base_w is not None and not self.server_base_w >= 0:
            raise InputError("server base power must not be negative", field="power.server_base_w",
                             expected="watts >= 0")


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
        kv_tiers: KV-cache tiers below HBM (DRAM, NVMe, a shared pool) that keep evicted prefix
            blocks for later loads (:mod:`planner.contracts.kv_tiers`); None: HBM only.
        router_options: thresholds and targets of the routers that have them (``sglang-cache-aware``,
            ``dualmap``).
        faults: fail-stop faults, stragglers and the straggler detector in the loop
            (:mod:`planner.sim.faults`); None: every GPU always works.
        closed_loop: release each later turn of a session (``session_id`` with ``think_s``) only when
            the session's previous turn has finished, plus its ``think_s`` (:mod:`planner.sim.session_loop`);
            a session's first turn keeps its trace arrival. False: every request at its trace arrival.
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
    autoscale: AutoscaleConfig | None = None
    power: PowerConfig | None = None
    kv_tiers: KVTiers | None = None
    router_options: RouterOptions = field(default_factory=RouterOptions)
    faults: FaultConfig | None = None
    closed_loop: bool = False

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
        if self.autoscale is not None and self.shards != 1:
            raise InputError("autoscaling runs one router per pool", field="shards",
                             expected="shards = 1 with autoscale")
        if self.autoscale is not None and not (
                self.autoscale.min_replicas <= self.replicas <= self.autoscale.max_replicas):
            raise InputError(f"replicas {self.replicas} outside the autoscaler's bounds", field="replicas",
                             expected=f"{self.autoscale.min_replicas}..{self.autoscale.max_replicas}")
        if self.power is not None:
            ratio = self.interval_s / self.power.telemetry_period_s
            if self.shards != 1 or abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                raise InputError(
                    f"interval_s {self.interval_s} is not a multiple of the telemetry period "
                    f"{self.power.telemetry_period_s} (or shards > 1)", field="interval_s",
                    expected="shards = 1 and interval_s = k * power.telemetry_period_s")
        if self.closed_loop and (self.autoscale is not None or self.power is not None
                                 or self.faults is not None):
            raise InputError("the closed loop does not run with autoscaling, power capping or faults yet",
                             field="closed_loop", expected="closed_loop without autoscale, power and faults")
        for name in ("servers_per_rack", "racks_per_row"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be positive", field=name, expected="an integer >= 1")

    def slo_for(self, slo_class: str | None) -> SLOTarget:
        """The targets of ``slo_class`` (the default ones when it is unknown or missing)."""
        for name, target in self.slo:
            if name == slo_class:
                return target
        return self.default_slo


__all__ = [  # EngineConfig and SLOTarget live in planner.contracts (the solvers share them); re-exported
    "VLLM_E2E_BUCKETS_S", "VLLM_ITL_BUCKETS_S", "VLLM_TTFT_BUCKETS_S", "AutoscaleConfig", "EngineConfig",
    "PowerConfig", "RouterName", "RouterOptions", "SLOTarget", "SimConfig", "vllm_length_buckets",
]

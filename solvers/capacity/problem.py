"""The sizing request and reply: frozen dataclasses, status as data.

A :class:`CapacityProblem` says which scored configurations may be deployed (one row each, with the
goodput per replica that :mod:`solvers.capacity.scoring` predicted under the SLO), what the demand is in
each time window, and what limits the fleet (GPU inventory per type, a power budget, how many distinct
configurations may run, whether prefill/decode disaggregation is allowed). :func:`solvers.capacity.solve`
answers with a :class:`CapacityPlan`: replica counts per configuration per window, cost, the solver's
status, objective, bound and wall time, and which constraints bind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from solvers.status import SolveStatus
from traces.errors import InputError


class PowerBasis(StrEnum):
    """Replica power for the budget: perf-model power at the planned operating point, or nameplate TDP."""

    PERF = "perf"
    TDP = "tdp"


class Role(StrEnum):
    """What a replica does: whole requests, or one phase of a disaggregated (P/D) deployment."""

    AGGREGATED = "aggregated"
    PREFILL = "prefill"
    DECODE = "decode"


class Disaggregation(StrEnum):
    """Whether the plan may (``auto``), must (``on``) or must not (``off``) split prefill and decode."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


TargetKind = Literal["ttft", "tpot", "e2e"]
"""The latencies a plan can promise: time to first token, time per output token, end to end (arrival to
the last token)."""

TARGET_KINDS: tuple[TargetKind, ...] = ("ttft", "tpot", "e2e")


def parse_statistic(text: str) -> tuple[bool, float]:
    """``(mean, quantile)`` of a statistic as users write it: ``mean``, ``p50``, ``p90``, ``p99.9``...
    (the quantile is 0.99 for the mean, where only goodput-style shares use it).

    Raises:
        InputError: a statistic that is neither ``mean`` nor a percentile from 50 to 99.9.

    >>> parse_statistic("p95"), parse_statistic("Mean")
    ((False, 0.95), (True, 0.99))
    """
    t = text.strip().lower()
    if t in ("mean", "avg", "average"):
        return True, 0.99
    try:
        pct = float(t.removeprefix("p"))
    except ValueError:
        pct = math.nan
    if not (math.isfinite(pct) and 50.0 <= pct <= 99.9):
        raise InputError(f"SLO statistic {text!r}", field="slo.statistic",
                         expected="mean, or a percentile p50 to p99.9")
    return False, pct / 100.0


def _stat_name(mean: bool, q: float) -> str:
    return "mean" if mean else f"p{q * 100:g}"


@dataclass(frozen=True)
class SLO:
    """Latency targets, each at a statistic: by default every target holds at the ``target`` quantile
    (0.99: p99), or at the mean when ``mean``; ``ttft_statistic``/``tpot_statistic``/``e2e_statistic``
    state one target's own statistic (``"mean"``, ``"p90"``...; empty: the default).

    Why the mean too: peers' planners (AIConfigurator, Dynamo's) state their SLOs as mean TTFT and TPOT;
    comparing a p99 plan with theirs compares different promises. Why per target: users promise a tail
    on the first token and an average pace after it ("TTFT p99 under 2 s, TPOT 50 ms on average"). Why
    an end-to-end target: batch and agent callers wait for the whole answer, so what they feel is the
    arrival-to-last-token time, which neither TTFT nor TPOT bounds alone. ``target`` stays the share of
    requests a goodput-style attainment counts either way.
    """

    ttft_s: float = 2.0
    tpot_s: float = 0.1
    target: float = 0.99
    mean: bool = False
    e2e_s: float | None = None
    """End-to-end target, seconds (None: no end-to-end promise)."""
    ttft_statistic: str = ""
    tpot_statistic: str = ""
    e2e_statistic: str = ""

    def __post_init__(self) -> None:
        if not (self.ttft_s > 0 and self.tpot_s > 0):
            raise InputError("SLO targets must be positive", field="slo", expected="seconds > 0")
        if self.e2e_s is not None and not (math.isfinite(self.e2e_s) and self.e2e_s > 0):
            raise InputError(f"end-to-end SLO target {self.e2e_s}", field="slo.e2e", expected="seconds > 0")
        if not 0.5 <= self.target < 1.0:
            raise InputError(f"SLO quantile {self.target}", field="slo.target", expected="in [0.5, 1)")
        for kind in TARGET_KINDS:
            text = getattr(self, f"{kind}_statistic")
            if text:  # canonical spelling, so equal promises compare (and hash) equal
                object.__setattr__(self, f"{kind}_statistic", _stat_name(*parse_statistic(text)))

    def is_mean(self, kind: TargetKind) -> bool:
        """Whether ``kind``'s target holds at the mean."""
        text = getattr(self, f"{kind}_statistic")
        return parse_statistic(text)[0] if text else self.mean

    def quantile(self, kind: TargetKind) -> float:
        """The quantile ``kind``'s target holds at (the default quantile where it holds at the mean)."""
        text = getattr(self, f"{kind}_statistic")
        return parse_statistic(text)[1] if text and not self.is_mean(kind) else self.target

    def stat(self, kind: TargetKind) -> str:
        """``mean`` or ``pNN``: what ``kind``'s target holds at.

        >>> s = SLO(tpot_statistic="mean")
        >>> s.stat("ttft"), s.stat("tpot"), s.statistic
        ('p99', 'mean', 'TTFT p99, TPOT mean')
        """
        return _stat_name(self.is_mean(kind), self.quantile(kind))

    @property
    def kinds(self) -> tuple[TargetKind, ...]:
        """The targets this SLO sets (TTFT and TPOT always; E2E when given)."""
        return TARGET_KINDS if self.e2e_s is not None else TARGET_KINDS[:2]

    def limit(self, kind: TargetKind) -> float:
        """``kind``'s target in seconds (inf for an end-to-end target not set)."""
        value = {"ttft": self.ttft_s, "tpot": self.tpot_s, "e2e": self.e2e_s}[kind]
        return math.inf if value is None else float(value)

    @property
    def statistic(self) -> str:
        """``mean`` or ``pNN`` when every target holds at one statistic, else each target's in words.

        >>> SLO().statistic, SLO(target=0.9).statistic, SLO(mean=True).statistic
        ('p99', 'p90', 'mean')
        """
        stats = [self.stat(k) for k in self.kinds]
        if len(set(stats)) == 1:
            return stats[0]
        return ", ".join(f"{k.upper()} {s}" for k, s in zip(self.kinds, stats, strict=True))

    @staticmethod
    def at(ttft_s: float, tpot_s: float, statistic: str, *, e2e_s: float | None = None) -> SLO:
        """Targets at statistics named as users write them: one for all (``mean``, ``p50``, ``p99.9``...)
        or per target, ``ttft=p99,tpot=mean,e2e=p90`` (a bare item sets the default for the rest).

        Raises:
            InputError: a statistic that is neither ``mean`` nor a percentile from 50 to 99.9, or a
                target other than ttft, tpot and e2e.

        >>> SLO.at(0.3, 0.02, "p95").target, SLO.at(0.3, 0.02, "mean").mean
        (0.95, True)
        >>> SLO.at(2.0, 0.05, "ttft=p99, tpot=mean").statistic
        'TTFT p99, TPOT mean'
        """
        default, own = "p99", {}
        for item in (i.strip() for i in statistic.split(",")):
            if not item:
                continue
            kind, sep, value = item.partition("=")
            if not sep:
                default = item
                continue
            name = kind.strip().lower()
            if name not in TARGET_KINDS:
                raise InputError(f"SLO statistic {statistic!r}: no target {kind.strip()!r}",
                                 field="slo.statistic",
                                 expected="ttft=, tpot= or e2e= followed by a statistic")
            own[name] = value
        mean, q = parse_statistic(default)
        return SLO(ttft_s=ttft_s, tpot_s=tpot_s, target=q, mean=mean, e2e_s=e2e_s,
                   ttft_statistic=own.get("ttft", ""), tpot_statistic=own.get("tpot", ""),
                   e2e_statistic=own.get("e2e", ""))


@dataclass(frozen=True)
class Config:
    """One deployable configuration (a row of the scored candidate table).

    Attributes:
        key: unique name, e.g. ``H100-SXM tp2 pp1 ep1 seqs256 tok8192 aggregated``.
        gpu: catalog GPU name.
        role: aggregated, prefill or decode.
        gpus: GPUs per replica (``tp * pp``).
        goodput_rps: requests per second one replica serves within the SLO (for a prefill or decode
            replica: requests whose phase it serves).
        price_per_gpu_hour: the catalog price used, USD.
        power_w: power of one replica at its planned operating point, watts.
        tp: tensor-parallel degree.
        pp: pipeline-parallel degree.
        ep: expert-parallel degree.
        max_num_seqs: the engine's running-sequence cap.
        max_batched_tokens: the engine's per-step token budget.
        weight_dtype: dtype of its weights (``bf16``, ``fp8``).
        kv_dtype: dtype of its KV cache.
        start_s: seconds a new replica is paid for before it serves (its cold start): each replica a
            window adds over the one before costs this much of its GPUs' time.
        slo_class: the SLO class whose requests its replicas serve alone (a dedicated pool); empty: any
            request (the fleet's shared pools).
    """

    key: str
    gpu: str
    role: Role
    gpus: int
    goodput_rps: float
    price_per_gpu_hour: float
    power_w: float
    tp: int = 1
    pp: int = 1
    ep: int = 1
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    start_s: float = 0.0
    slo_class: str = ""
    dp_attention: bool = False
    """Its ``tp`` GPUs run attention data-parallel and share the experts (:class:`planner.perf.api.
    Parallelism`)."""

    @property
    def price_per_hour(self) -> float:
        """USD per replica-hour."""
        return self.gpus * self.price_per_gpu_hour

    @property
    def cost_per_goodput(self) -> float:
        """USD per hour per request/s of goodput: the figure a cost-only choice minimises."""
        return self.price_per_hour / self.goodput_rps


def started(replicas: Sequence[int]) -> list[int]:
    """Replicas started in each window of a cycle: what a window adds over the one before it (the first
    window's from the last, since a plan repeats).

    >>> started([1, 3, 2, 1])
    [0, 2, 0, 0]
    """
    return [max(0, n - replicas[w - 1]) for w, n in enumerate(replicas)]


@dataclass(frozen=True)
class Window:
    """A time window: its demand and how long it lasts.

    Attributes:
        start_s: start, seconds from the trace start.
        duration_s: length (the last window may be shorter).
        demand_rps: the request rate the fleet must carry within the SLO during the window.
    """

    start_s: float
    duration_s: float
    demand_rps: float


@dataclass(frozen=True)
class CapacityProblem:
    """What to size.

    Attributes:
        configs: the deployable configurations (goodput > 0).
        windows: demand per window.
        inventory: GPUs available per GPU type; types not listed are unlimited.
        power_budget_w: the fleet's power cap in watts (None: no cap).
        disaggregation: whether P/D split plans are allowed, required or excluded.
        max_configs_per_role: distinct configurations per role a plan may use (operability: each one
            is a separate deployment to run).
        max_pd_ratio: prefill/decode replica ratio bounds ``[1/r, r]`` in every window of a
            disaggregated plan (xPyD deployments are built with small x, y).
        min_dwell_windows: a replica started in a window keeps running for at least this many windows
            (1: no constraint), so that the plan does not churn replicas window by window.
        max_split_configs: prefill (and decode) configurations a disaggregated plan may use, within
            ``max_configs_per_role``: one each by default, the xPyD pair deployments run and the replay
            checks exactly.

    The windows are taken as a cycle (the plan repeats: the exporter replays it over its span), so the
    replicas of the first window are started from those of the last.
    """

    configs: tuple[Config, ...]
    windows: tuple[Window, ...]
    inventory: tuple[tuple[str, int], ...] = ()
    power_budget_w: float | None = None
    disaggregation: Disaggregation = Disaggregation.AUTO
    max_configs_per_role: int = 2
    max_pd_ratio: float = 8.0
    min_dwell_windows: int = 1
    max_split_configs: int = 1

    def __post_init__(self) -> None:
        if not self.windows:
            raise InputError("no demand windows", field="windows", expected="at least one window")
        for w in self.windows:
            if not (w.duration_s > 0 and w.demand_rps >= 0):
                raise InputError(f"bad window {w}", field="windows",
                                 expected="duration_s > 0 and demand_rps >= 0")
        keys = [c.key for c in self.configs]
        if len(set(keys)) != len(keys):
            raise InputError("duplicate configuration keys", field="configs", expected="unique keys")
        for c in self.configs:
            if not (c.goodput_rps > 0 and c.gpus >= 1 and c.price_per_gpu_hour >= 0 and c.power_w >= 0
                    and c.start_s >= 0):
                raise InputError(f"configuration {c.key} is not deployable", field="configs",
                                 expected="goodput > 0, gpus >= 1, price >= 0, power >= 0, start >= 0")
        for name, n in self.inventory:
            if n < 0:
                raise InputError(f"negative inventory for {name}", field="inventory",
                                 expected="GPU counts >= 0")
        if self.power_budget_w is not None and not self.power_budget_w > 0:
            raise InputError("power budget must be positive", field="power_budget_w", expected="watts > 0")
        if self.max_configs_per_role < 1:
            raise InputError("max_configs_per_role must be >= 1", field="max_configs_per_role",
                             expected="an integer >= 1")
        if not self.max_pd_ratio >= 1:
            raise InputError("max_pd_ratio must be >= 1", field="max_pd_ratio", expected="a number >= 1")
        if self.max_split_configs < 1:
            raise InputError("max_split_configs must be >= 1", field="max_split_configs",
                             expected="an integer >= 1")
        if self.min_dwell_windows < 1:
            raise InputError("min_dwell_windows must be >= 1", field="min_dwell_windows",
                             expected="an integer >= 1")

    def config_cap(self, role: Role) -> int:
        """Distinct configurations of ``role`` a plan may use."""
        if role is Role.AGGREGATED:
            return self.max_configs_per_role
        return min(self.max_configs_per_role, self.max_split_configs)

    def inventory_of(self, gpu: str) -> int | None:
        """GPUs of this type available (None: unlimited)."""
        for name, n in self.inventory:
            if name == gpu:
                return n
        return None

    @property
    def hours(self) -> float:
        """Total planned time, hours."""
        return sum(w.duration_s for w in self.windows) / 3600.0


@dataclass(frozen=True)
class SolveParams:
    """Solver knobs, always set (a plan must be reproducible).

    Attributes:
        max_time_in_seconds: CP-SAT's deterministic-time limit (work units, about a second each; the
            wall-clock limit is a safety net: :func:`solvers.budget.set_budget`), so the same inputs give
            the same plan on any machine load.
        num_workers: CP-SAT search workers (interleaved, so deterministic). One by default: on the
            fleet-day problem one worker proved the optimum where two interleaved ones stopped 18 % above
            it at the same deterministic limit.
        random_seed: CP-SAT seed.
        use_cpsat: False runs only the greedy baseline.
    """

    max_time_in_seconds: float = 10.0
    num_workers: int = 1
    random_seed: int = 0
    use_cpsat: bool = True


@dataclass(frozen=True)
class Allocation:
    """Replicas of one configuration in one window."""

    window: int
    config: str
    replicas: int


@dataclass(frozen=True)
class Binding:
    """A constraint and how close the plan is to it (``used / limit``; tight when no replica more fits).

    Attributes:
        name: ``inventory H100-SXM``, ``power budget``, ``configs per role``, ``P/D ratio``.
        window: the window where it is tightest (-1 for plan-wide constraints).
        used: amount used there (GPUs, watts, configurations).
        limit: its limit.
        tight: True when the constraint is at its limit (it shapes the plan).
    """

    name: str
    window: int
    used: float
    limit: float
    tight: bool


@dataclass(frozen=True)
class CapacityPlan:
    """The solver's answer.

    Attributes:
        status: CP-SAT status, or ``GREEDY`` when the baseline is the answer (CP-SAT off or failed).
        solver: ``cp-sat`` or ``greedy``.
        objective_usd: total cost of the plan (None when no plan was found).
        bound_usd: proven lower bound on the optimal cost (the LP/CP bound; equal to the objective when
            optimal; None when unknown).
        greedy_usd: cost of the greedy baseline (None when it found nothing).
        wall_s: solve wall time.
        allocations: replicas per configuration per window (zero entries left out).
        configs: the configurations the plan uses.
        bindings: constraints ordered tightest first.
        note: a line on what happened (fallback reasons, infeasibility).
    """

    status: SolveStatus
    solver: str
    objective_usd: float | None
    bound_usd: float | None
    greedy_usd: float | None
    wall_s: float
    allocations: tuple[Allocation, ...]
    configs: tuple[Config, ...]
    bindings: tuple[Binding, ...] = ()
    note: str = ""
    windows: tuple[Window, ...] = field(default=(), compare=False)

    @property
    def feasible(self) -> bool:
        """Whether there is a plan at all."""
        return self.objective_usd is not None

    @property
    def gap(self) -> float | None:
        """Relative optimality gap ``(objective - bound) / objective`` (None when unknown)."""
        if self.objective_usd is None or self.bound_usd is None or self.objective_usd <= 0:
            return None
        return max(0.0, (self.objective_usd - self.bound_usd) / self.objective_usd)

    @property
    def disaggregated(self) -> bool:
        """Whether the plan splits prefill and decode."""
        return any(c.role is not Role.AGGREGATED for c in self.configs)

    def replicas(self, window: int) -> dict[str, int]:
        """Replicas per configuration key in one window."""
        return {a.config: a.replicas for a in self.allocations if a.window == window}

"""Autoscaling seam: pure policies over the metrics a live autoscaler sees, and cold-start times.

Designed so the same policy code runs in the simulator and, later, against live Prometheus data: a
policy is ``decide(ctx: ScalingContext) -> ScalingDecision``, a pure function of a frozen context that
carries vLLM's metric names (``running``, ``waiting``, ``kv_cache_usage_perc``, TTFT/ITL histograms) and
the policy's own typed state. The replay loop does not call policies yet (fixed replica count); the
interface, the default policy and the cold-start distribution are here for that step.

>>> ctx = ScalingContext(now_s=60.0, replicas=2, running=(200, 180), waiting=(40, 10),
...                      kv_cache_usage_perc=(0.7, 0.6), state=TargetState())
>>> target_tracking(ctx, params=TargetParams(target_running_per_replica=100)).desired_replicas
5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np


@dataclass(frozen=True)
class ColdStartDistribution:
    """Lognormal time from "scale up" to "replica serving", seconds.

    Attributes:
        mu, sigma: parameters of ``log(seconds)``.
        source: where the numbers come from.
    """

    mu: float
    sigma: float
    source: str = ""

    @property
    def median_s(self) -> float:
        return math.exp(self.mu)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` cold-start times (the caller owns the seeded generator)."""
        out: np.ndarray = rng.lognormal(self.mu, self.sigma, n)
        return out


DEFAULT_COLD_START = ColdStartDistribution(
    mu=2.5928,
    sigma=1.1722,
    source=("maximum-likelihood lognormal fitted on the 7,531 model-load latencies of "
            "alibaba/clusterdata cluster-trace-v2026-GenAI basemodel_update_latency_anon.csv (value in ms): "
            "median 13.4 s; the data are bimodal (about 2.6 s and 23 s), so p10/p90 are approximate"),
)
"""Default cold start: fitted once (see ``tests/planner/sim/test_autoscale.py``), only the parameters ship."""


@dataclass(frozen=True)
class TargetState:
    """State of :func:`target_tracking`: when the current scale-down wish started (None: no wish)."""

    below_since_s: float | None = None


@dataclass(frozen=True)
class ScalingContext:
    """What a policy sees at a control tick (one entry per serving replica, vLLM metric names)."""

    now_s: float
    replicas: int
    running: tuple[int, ...]
    waiting: tuple[int, ...]
    kv_cache_usage_perc: tuple[float, ...]
    ttft_buckets_s: tuple[float, ...] = ()
    ttft_counts: tuple[int, ...] = ()
    itl_buckets_s: tuple[float, ...] = ()
    itl_counts: tuple[int, ...] = ()
    state: TargetState = field(default_factory=TargetState)


@dataclass(frozen=True)
class ScalingDecision:
    """The desired replica count and the policy's next state."""

    desired_replicas: int
    state: TargetState


@dataclass(frozen=True)
class TargetParams:
    """Target tracking on requests in the system per replica (like KEDA/HPA on ``num_requests_running``).

    Attributes:
        target_running_per_replica: desired (running + waiting) per replica.
        min_replicas, max_replicas: bounds.
        scale_down_delay_s: a lower count must be wanted this long before it is applied.
    """

    target_running_per_replica: float = 64.0
    min_replicas: int = 1
    max_replicas: int = 1_000
    scale_down_delay_s: float = 300.0


def apply_scaling_factors(ctx: ScalingContext, params: TargetParams) -> int:
    """Replicas needed for the load now: ceil(total in system / target per replica)."""
    load = sum(ctx.running) + sum(ctx.waiting)
    return math.ceil(load / params.target_running_per_replica) if load else 0


def apply_bounds(n: int, params: TargetParams) -> int:
    """Clamp into ``[min_replicas, max_replicas]``."""
    return max(params.min_replicas, min(params.max_replicas, n))


def apply_delay(n: int, ctx: ScalingContext, params: TargetParams) -> ScalingDecision:
    """Scale up at once; scale down only after the wish has lasted ``scale_down_delay_s``."""
    if n >= ctx.replicas:
        return ScalingDecision(n, replace(ctx.state, below_since_s=None))
    since = ctx.state.below_since_s if ctx.state.below_since_s is not None else ctx.now_s
    if ctx.now_s - since >= params.scale_down_delay_s:
        return ScalingDecision(n, TargetState(below_since_s=None))
    return ScalingDecision(ctx.replicas, TargetState(below_since_s=since))


def target_tracking(ctx: ScalingContext, *, params: TargetParams | None = None) -> ScalingDecision:
    """The default policy: :func:`apply_scaling_factors` -> :func:`apply_bounds` -> :func:`apply_delay`."""
    p = params or TargetParams()
    return apply_delay(apply_bounds(apply_scaling_factors(ctx, p), p), ctx, p)


class PolicyName(StrEnum):
    """Autoscaling policies by name (CLI/YAML)."""

    TARGET_TRACKING = "target-tracking"


PolicyFn = Callable[[ScalingContext], ScalingDecision]

POLICIES: dict[PolicyName, PolicyFn] = {
    PolicyName.TARGET_TRACKING: target_tracking,
}
"""Explicit registry (no import-time self-registration)."""

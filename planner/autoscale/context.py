"""Autoscaling seam: pure policies over the metrics a live autoscaler sees, and their registry.

Designed so the same policy code runs in the simulator and, later, against live Prometheus data: a
policy is ``decide(ctx: ScalingContext) -> ScalingDecision``, a pure function of a frozen context that
carries vLLM's metric names (``running``, ``waiting``, ``kv_cache_usage_perc``, TTFT/ITL histograms,
counters) and the policy's own typed state (each policy has its own frozen state type).

The policies, each in its module: ``target-tracking`` (here), ``hpa`` (:mod:`planner.autoscale.hpa`),
``keda`` (:mod:`planner.autoscale.keda`), ``llm-d-keda``
(:mod:`planner.autoscale.llm_d`), ``ray-serve`` (:mod:`planner.autoscale.ray_serve`),
``dynamo-sla`` (:mod:`planner.autoscale.dynamo`), ``wva`` (:mod:`planner.autoscale.wva`) and ``mpc``, the
forecast-driven model-predictive controller (:mod:`solvers.scaling.policy`). :data:`POLICIES` holds them
with default parameters; tuned ones are bound with ``functools.partial(fn, params=...)``.

>>> ctx = ScalingContext(now_s=60.0, replicas=2, running=(200, 180), waiting=(40, 10),
...                      kv_cache_usage_perc=(0.7, 0.6), state=TargetState())
>>> target_tracking(ctx, params=TargetParams(target_running_per_replica=100)).desired_replicas
5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.autoscale.dynamo import dynamo_sla
from planner.autoscale.hpa import hpa
from planner.autoscale.keda import keda
from planner.autoscale.llm_d import llm_d_keda
from planner.autoscale.names import PolicyName
from planner.autoscale.ray_serve import ray_serve
from planner.autoscale.wva import wva
from planner.contracts.scaling import PolicyFn, ScalingContext, ScalingDecision, own_state
from solvers.scaling.policy import mpc


@dataclass(frozen=True)
class TargetState:
    """State of :func:`target_tracking`: when the current scale-down wish started (None: no wish)."""

    below_since_s: float | None = None


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
    load = sum(ctx.running) + sum(ctx.waiting) + ctx.pending_at_router
    return math.ceil(load / params.target_running_per_replica) if load else 0


def apply_bounds(n: int, params: TargetParams) -> int:
    """Clamp into ``[min_replicas, max_replicas]``."""
    return max(params.min_replicas, min(params.max_replicas, n))


def apply_delay(n: int, ctx: ScalingContext, state: TargetState,
                params: TargetParams) -> ScalingDecision[TargetState]:
    """Scale up at once; scale down only after the wish to be lower has lasted ``scale_down_delay_s``.

    The wish's start is kept while it lasts, also after a step down: a ramp limit that removes one
    replica per tick then sheds the rest one tick after another, instead of waiting the delay again at
    every step (as a stabilization window does: HPA's looks back over the window, it does not re-arm).
    """
    if n >= ctx.replicas:
        return ScalingDecision(n, TargetState(below_since_s=None))
    since = state.below_since_s if state.below_since_s is not None else ctx.now_s
    if ctx.now_s - since >= params.scale_down_delay_s:
        return ScalingDecision(n, TargetState(below_since_s=since))
    return ScalingDecision(ctx.replicas, TargetState(below_since_s=since))


def target_tracking(ctx: ScalingContext, *,
                    params: TargetParams | None = None) -> ScalingDecision[TargetState]:
    """The default policy: :func:`apply_scaling_factors` -> :func:`apply_bounds` -> :func:`apply_delay`."""
    p = params or TargetParams()
    state = own_state(ctx, TargetState, TargetState)
    return apply_delay(apply_bounds(apply_scaling_factors(ctx, p), p), ctx, state, p)


POLICIES: dict[PolicyName, PolicyFn] = {
    PolicyName.TARGET_TRACKING: target_tracking,
    PolicyName.HPA: hpa,
    PolicyName.KEDA: keda,
    PolicyName.LLM_D_KEDA: llm_d_keda,
    PolicyName.RAY_SERVE: ray_serve,
    PolicyName.DYNAMO_SLA: dynamo_sla,
    PolicyName.WVA: wva,
    PolicyName.MPC: mpc,
}
"""Explicit registry (no import-time self-registration), default parameters."""

__all__ = [
    "POLICIES", "PolicyFn", "PolicyName", "ScalingContext",
    "ScalingDecision", "TargetParams", "TargetState", "apply_bounds", "apply_delay", "apply_scaling_factors",
    "target_tracking",
]

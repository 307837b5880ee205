"""KEDA ScaledObject with one Prometheus trigger: activation (0 <-> 1) by KEDA, 1 <-> N by the HPA it owns.

Source: ``kedacore/keda-docs`` ScaledObject spec (``reference/scaledobject-spec.md``) and the Prometheus
scaler page:

* every ``pollingInterval`` (30 s) KEDA runs the query; the trigger is *active* when the value is above
  ``activationThreshold``. Active at 0 replicas: scale to ``max(minReplicaCount, 1)``. Inactive for longer
  than ``cooldownPeriod`` (300 s) since the last active poll, with ``minReplicaCount == 0``: scale to 0;
* above zero, the HPA KEDA creates (``minReplicas = max(minReplicaCount, 1)``) reads the query's value as
  an ``External`` metric with an ``AverageValue`` target of ``threshold``: ``desired = ceil(value /
  threshold)`` outside the 10 % tolerance, with the HPA's windows and behavior policies
  (:mod:`planner.autoscale.hpa`).

The PromQL query becomes one of :class:`PromQuery` over the context's vLLM gauges; the gateway queue
(``pending_at_router``) is included so that the trigger sees demand while the deployment is at zero.

>>> p = KEDAParams(threshold=10.0, activation_threshold=0.0, min_replica_count=0, max_replica_count=8)
>>> ctx = ScalingContext(now_s=0.0, replicas=0, running=(), waiting=(), kv_cache_usage_perc=(),
...                      pending_at_router=3)
>>> keda(ctx, params=p).desired_replicas
1
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from planner.autoscale.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPAParams,
    HPAState,
    MetricSource,
    MetricTarget,
    ScalingRules,
    VllmMetric,
    reconcile,
    sync_due,
)
from planner.contracts.scaling import ScalingContext, ScalingDecision, is_scraped, own_state


class PromQuery(StrEnum):
    """The trigger's query: ``sum(vllm:num_requests_running + vllm:num_requests_waiting)`` or
    ``sum(vllm:num_requests_waiting)`` over the deployment (plus requests held at the gateway)."""

    SUM_IN_SYSTEM = "sum_in_system"
    SUM_WAITING = "sum_waiting"

    @property
    def metric(self) -> VllmMetric:
        return VllmMetric.IN_SYSTEM if self is PromQuery.SUM_IN_SYSTEM else VllmMetric.WAITING


@dataclass(frozen=True)
class KEDAParams:
    """ScaledObject fields (defaults as documented) and the Prometheus trigger's metadata.

    Attributes:
        query: the trigger's query.
        threshold: ``metadata.threshold`` (AverageValue target of the HPA's external metric).
        activation_threshold: ``metadata.activationThreshold`` (active when the value is above it).
        polling_interval_s: ``pollingInterval``.
        cooldown_period_s: ``cooldownPeriod`` (only for N -> 0).
        initial_cooldown_period_s: ``initialCooldownPeriod`` (no scale to zero before this time).
        min_replica_count, max_replica_count: ``minReplicaCount`` / ``maxReplicaCount``.
        hpa_sync_period_s: the HPA controller's sync period.
        scale_up, scale_down: ``advanced.horizontalPodAutoscalerConfig.behavior``.
    """

    query: PromQuery = PromQuery.SUM_IN_SYSTEM
    threshold: float = 64.0
    activation_threshold: float = 0.0
    polling_interval_s: float = 30.0
    cooldown_period_s: float = 300.0
    initial_cooldown_period_s: float = 0.0
    min_replica_count: int = 0
    max_replica_count: int = 100
    hpa_sync_period_s: float = 15.0
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN

    def hpa_params(self) -> HPAParams:
        """The HPA KEDA creates for this ScaledObject."""
        return HPAParams(
            metrics=(MetricTarget(self.query.metric, self.threshold, MetricSource.EXTERNAL),),
            min_replicas=max(self.min_replica_count, 1),
            max_replicas=self.max_replica_count,
            sync_period_s=self.hpa_sync_period_s,
            scale_up=self.scale_up,
            scale_down=self.scale_down,
        )


@dataclass(frozen=True)
class KEDAState:
    """KEDA's memory (last poll, last active time) and its HPA's."""

    hpa: HPAState = field(default_factory=HPAState)
    last_poll_s: float | None = None
    last_active_s: float | None = None


def query_value(ctx: ScalingContext, query: PromQuery) -> float:
    """The trigger query's value on this tick."""
    total = sum(
        (ctx.running[i] + ctx.waiting[i]) if query is PromQuery.SUM_IN_SYSTEM else ctx.waiting[i]
        for i in range(len(ctx.running)) if is_scraped(ctx, i)
    )
    return float(total + ctx.pending_at_router)


def activation_step(ctx: ScalingContext, state: KEDAState, params: KEDAParams) -> tuple[int, KEDAState]:
    """KEDA's own poll: 0 -> 1 when active, N -> 0 after the cooldown, lift to ``minReplicaCount``."""
    if not sync_due(HPAState(last_sync_s=state.last_poll_s), ctx.now_s, params.polling_interval_s):
        return ctx.replicas, state
    active = query_value(ctx, params.query) > params.activation_threshold
    state = replace(state, last_poll_s=ctx.now_s, last_active_s=ctx.now_s if active else state.last_active_s)
    current = ctx.replicas
    if active and current == 0:
        return max(params.min_replica_count, 1), state
    if not active and current > 0 and params.min_replica_count == 0:
        since = state.last_active_s if state.last_active_s is not None else 0.0
        if (ctx.now_s - since >= params.cooldown_period_s
                and ctx.now_s >= params.initial_cooldown_period_s):
            return 0, state
    if current < params.min_replica_count:
        return params.min_replica_count, state
    return current, state


def keda(ctx: ScalingContext, *, params: KEDAParams | None = None) -> ScalingDecision[KEDAState]:
    """KEDA activation, then (above zero) its HPA on the external metric."""
    p = params or KEDAParams()
    state = own_state(ctx, KEDAState, KEDAState)
    n, state = activation_step(ctx, state, p)
    if n == 0 or n != ctx.replicas:
        return ScalingDecision(n, state)
    hp = p.hpa_params()
    if not sync_due(state.hpa, ctx.now_s, hp.sync_period_s):
        return ScalingDecision(n, state)
    desired, h = reconcile(ctx, state.hpa, hp)
    return ScalingDecision(desired, replace(state, hpa=replace(h, last_sync_s=ctx.now_s)))

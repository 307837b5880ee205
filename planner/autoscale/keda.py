"""KEDA ScaledObject with Prometheus triggers: activation (0 <-> 1) by KEDA, 1 <-> N by the HPA it owns.

Source: ``kedacore/keda-docs`` ScaledObject spec (``reference/scaledobject-spec.md``) and the Prometheus
scaler page:

* every ``pollingInterval`` (30 s) KEDA runs each trigger's query; the ScaledObject is *active* when any
  trigger's value is above its ``activationThreshold``. Active at 0 replicas: scale to
  ``max(minReplicaCount, 1)``. Inactive for longer than ``cooldownPeriod`` (300 s) since the last active
  poll, with ``minReplicaCount == 0``: scale to 0;
* above zero, the HPA KEDA creates (``minReplicas = max(minReplicaCount, 1)``) reads each trigger's value as
  an ``External`` metric with an ``AverageValue`` target of its ``threshold``: ``desired = ceil(value /
  threshold)`` outside the 10 % tolerance, the largest over triggers, with the HPA's windows and behavior
  policies (:mod:`planner.autoscale.hpa`).

Each PromQL query becomes one of :class:`PromQuery` over the context: vLLM's gauges (the gateway queue
``pending_at_router`` included, so that the trigger sees demand while the deployment is at zero), or the
gauges llm-d's endpoint picker serves, computed from the pool as the EPP computes them
(:mod:`planner.autoscale.epp`).

>>> p = KEDAParams(triggers=(Trigger(threshold=10.0),), min_replica_count=0, max_replica_count=8)
>>> ctx = ScalingContext(now_s=0.0, replicas=0, running=(), waiting=(), kv_cache_usage_perc=(),
...                      pending_at_router=3)
>>> keda(ctx, params=p).desired_replicas
1
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from planner.autoscale.epp import EndpointPicker, gauges
from planner.autoscale.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPAParams,
    HPAState,
    MetricResult,
    ScalingRules,
    external_metric_replicas,
    reconcile,
    sync_due,
)
from planner.contracts.scaling import ScalingContext, ScalingDecision, is_scraped, own_state


class PromQuery(StrEnum):
    """A trigger's query, by what it reads.

    * ``sum_in_system``: ``sum(vllm:num_requests_running + vllm:num_requests_waiting)`` plus requests held at
      the gateway; ``sum_waiting``: ``sum(vllm:num_requests_waiting)`` plus the gateway's;
    * ``epp_pool_saturation``: ``max(llm_d_epp_flow_control_pool_saturation)``;
      ``epp_request_running``: ``sum(llm_d_epp_request_running)``;
      ``epp_queue_size``: ``sum(llm_d_epp_flow_control_queue_size)`` (:mod:`planner.autoscale.epp`).
    """

    SUM_IN_SYSTEM = "sum_in_system"
    SUM_WAITING = "sum_waiting"
    EPP_POOL_SATURATION = "epp_pool_saturation"
    EPP_REQUEST_RUNNING = "epp_request_running"
    EPP_QUEUE_SIZE = "epp_queue_size"


@dataclass(frozen=True)
class Trigger:
    """One ``spec.triggers[]`` entry of type ``prometheus`` with ``metricType: AverageValue``.

    Attributes:
        query: what ``metadata.query`` reads.
        threshold: ``metadata.threshold`` (AverageValue target of the HPA's external metric).
        activation_threshold: ``metadata.activationThreshold`` (active when the value is above it).
    """

    query: PromQuery = PromQuery.SUM_IN_SYSTEM
    threshold: float = 64.0
    activation_threshold: float = 0.0

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"trigger threshold {self.threshold} must be > 0")


@dataclass(frozen=True)
class KEDAParams:
    """ScaledObject fields (defaults as documented) and its Prometheus triggers.

    Attributes:
        triggers: ``spec.triggers`` (at least one).
        polling_interval_s: ``pollingInterval``.
        cooldown_period_s: ``cooldownPeriod`` (only for N -> 0).
        initial_cooldown_period_s: ``initialCooldownPeriod`` (no scale to zero before this time).
        min_replica_count, max_replica_count: ``minReplicaCount`` / ``maxReplicaCount``.
        hpa_sync_period_s: the HPA controller's sync period.
        scale_up, scale_down: ``advanced.horizontalPodAutoscalerConfig.behavior``.
        epp: the endpoint picker's settings its gauges depend on (for ``epp_*`` triggers; flow control and
            the saturation detector's thresholds are the EPP's configuration, not the ScaledObject's).
    """

    triggers: tuple[Trigger, ...] = (Trigger(),)
    polling_interval_s: float = 30.0
    cooldown_period_s: float = 300.0
    initial_cooldown_period_s: float = 0.0
    min_replica_count: int = 0
    max_replica_count: int = 100
    hpa_sync_period_s: float = 15.0
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    epp: EndpointPicker = field(default_factory=EndpointPicker)

    def __post_init__(self) -> None:
        if not self.triggers:
            raise ValueError("a ScaledObject needs at least one trigger")

    def hpa_params(self) -> HPAParams:
        """The HPA KEDA creates for this ScaledObject (its metrics are the triggers, evaluated by
        :func:`trigger_results`)."""
        return HPAParams(
            metrics=(),
            min_replicas=max(self.min_replica_count, 1),
            max_replicas=self.max_replica_count,
            sync_period_s=self.hpa_sync_period_s,
            scale_up=self.scale_up,
            scale_down=self.scale_down,
        )


TRIGGER_FIELDS: tuple[str, ...] = ("query", "threshold", "activation_threshold")
"""The fields of :class:`Trigger`."""


def one_trigger_shorthand(raw: dict[str, object]) -> dict[str, object]:
    """Parameters written with one trigger's fields at the top (``{threshold: 20}``, as ``pools.yaml`` had
    them before ScaledObjects took several triggers) turned into ``triggers: [...]``; anything else as it is.

    >>> one_trigger_shorthand({"threshold": 20, "polling_interval_s": 15})
    {'polling_interval_s': 15, 'triggers': [{'threshold': 20}]}
    """
    top = {k: v for k, v in raw.items() if k in TRIGGER_FIELDS}
    if not top or "triggers" in raw:
        return raw
    return {**{k: v for k, v in raw.items() if k not in TRIGGER_FIELDS}, "triggers": [top]}


@dataclass(frozen=True)
class KEDAState:
    """KEDA's memory (last poll, last active time) and its HPA's."""

    hpa: HPAState = field(default_factory=HPAState)
    last_poll_s: float | None = None
    last_active_s: float | None = None


def query_value(ctx: ScalingContext, query: PromQuery, epp: EndpointPicker | None = None) -> float:
    """The trigger query's value on this tick."""
    if query is PromQuery.EPP_POOL_SATURATION:
        return gauges(ctx, epp or EndpointPicker()).pool_saturation
    if query is PromQuery.EPP_REQUEST_RUNNING:
        return gauges(ctx, epp or EndpointPicker()).request_running
    if query is PromQuery.EPP_QUEUE_SIZE:
        return gauges(ctx, epp or EndpointPicker()).queue_size
    total = sum(
        (ctx.running[i] + ctx.waiting[i]) if query is PromQuery.SUM_IN_SYSTEM else ctx.waiting[i]
        for i in range(len(ctx.running)) if is_scraped(ctx, i)
    )
    return float(total + ctx.pending_at_router)


def is_active(ctx: ScalingContext, params: KEDAParams) -> bool:
    """Whether any trigger's value is above its activation threshold."""
    return any(query_value(ctx, t.query, params.epp) > t.activation_threshold for t in params.triggers)


def activation_step(ctx: ScalingContext, state: KEDAState, params: KEDAParams) -> tuple[int, KEDAState]:
    """KEDA's own poll: 0 -> 1 when active, N -> 0 after the cooldown, lift to ``minReplicaCount``."""
    if not sync_due(HPAState(last_sync_s=state.last_poll_s), ctx.now_s, params.polling_interval_s):
        return ctx.replicas, state
    active = is_active(ctx, params)
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


def trigger_results(ctx: ScalingContext, params: KEDAParams) -> tuple[MetricResult, ...]:
    """Each trigger's proposal as the HPA computes it for an External ``AverageValue`` metric.

    Why a pool-level ratio such as the EPP's saturation still goes through ``ceil(value / threshold)``: that
    is what ``AverageValue`` does with any external value, so a saturation trigger alone asks for
    ``ceil(saturation / threshold)`` replicas whatever the pool's size (llm-d pairs it with a
    running-requests trigger, and the HPA takes the larger).
    """
    return tuple(
        external_metric_replicas(query_value(ctx, t.query, params.epp), target_average=t.threshold,
                                 current=ctx.replicas, up=params.scale_up, down=params.scale_down)
        for t in params.triggers)


def keda(ctx: ScalingContext, *, params: KEDAParams | None = None) -> ScalingDecision[KEDAState]:
    """KEDA activation, then (above zero) its HPA on the triggers' external metrics."""
    p = params or KEDAParams()
    state = own_state(ctx, KEDAState, KEDAState)
    n, state = activation_step(ctx, state, p)
    if n == 0 or n != ctx.replicas:
        return ScalingDecision(n, state)
    hp = p.hpa_params()
    if not sync_due(state.hpa, ctx.now_s, hp.sync_period_s):
        return ScalingDecision(n, state)
    desired, h = reconcile(ctx, state.hpa, hp, results=lambda: trigger_results(ctx, p))
    return ScalingDecision(desired, replace(state, hpa=replace(h, last_sync_s=ctx.now_s)))

"""Kubernetes HorizontalPodAutoscaler (autoscaling/v2), step by step as the controller computes it.

Source: ``kubernetes/kubernetes`` ``pkg/controller/podautoscaler/{horizontal.go,replica_calculator.go}`` and
the HPA concept page (``kubernetes/website``
``content/en/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale.md``). The steps:

1. every ``sync_period_s`` (15 s) the controller computes, per metric, a replica count
   (:func:`pods_metric_replicas` for per-pod ``AverageValue`` metrics with the unready/missing-pod rules,
   :func:`external_metric_replicas` for external ``AverageValue`` metrics such as KEDA's);
2. the largest over metrics wins (:func:`replicas_for_metrics`; if a metric failed and the rest say scale
   down, nothing changes);
3. :func:`stabilize`: every raw recommendation is recorded; the output is the current count clamped between
   the *minimum* recommendation of the scale-up window (0 s) and the *maximum* of the scale-down window
   (300 s);
4. :func:`rate_limit`: ``behavior`` policies (Pods / Percent per ``periodSeconds``, ``selectPolicy``
   Max/Min/Disabled) measured from the replica count at the start of each period, then
   ``[minReplicas, maxReplicas]``;
5. a change is recorded as a scale event (for later periods' limits).

Where the controller keeps per-HPA maps (recommendations, scale events) in memory, :class:`HPAState` carries
them; time is the context's ``now_s``.

>>> p = HPAParams(metrics=(MetricTarget(VllmMetric.IN_SYSTEM, 10.0),), max_replicas=20)
>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(30, 30), waiting=(0, 0),
...                      kv_cache_usage_perc=(0.5, 0.5))
>>> hpa(ctx, params=p).desired_replicas
6
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from planner.contracts.scaling import ScalingContext, ScalingDecision, is_ready, is_scraped, own_state

MAX_PERIOD_S = 1800.0
"""``periodSeconds`` may not exceed 30 minutes (API validation)."""


class VllmMetric(StrEnum):
    """Per-replica vLLM gauges an HPA/KEDA metric can be built from."""

    IN_SYSTEM = "running+waiting"
    RUNNING = "num_requests_running"
    WAITING = "num_requests_waiting"
    KV_CACHE = "kv_cache_usage_perc"


class MetricSource(StrEnum):
    """``Pods`` (per-pod average, unready/missing rules apply) or ``External`` (one cluster-wide value)."""

    PODS = "Pods"
    EXTERNAL = "External"


@dataclass(frozen=True)
class MetricTarget:
    """One entry of ``spec.metrics`` with an ``AverageValue`` target."""

    metric: VllmMetric
    average_value: float
    source: MetricSource = MetricSource.PODS


class PolicyType(StrEnum):
    """``behavior.scaleUp/scaleDown.policies[].type``."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """``behavior.*.selectPolicy``: Max (default, the largest change), Min, or Disabled."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True)
class RatePolicy:
    """``{type, value, periodSeconds}``."""

    type: PolicyType
    value: int
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown`` (tolerance per direction: KEP-4951)."""

    stabilization_window_s: float
    policies: tuple[RatePolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX
    tolerance: float = 0.1


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0.0,
    policies=(RatePolicy(PolicyType.PODS, 4, 15.0), RatePolicy(PolicyType.PERCENT, 100, 15.0)),
)
"""Kubernetes' default scale-up behavior: max(100 %, 4 pods) per 15 s, no window."""

DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=300.0,
    policies=(RatePolicy(PolicyType.PERCENT, 100, 15.0),),
)
"""Kubernetes' default scale-down behavior: 100 % per 15 s after a 300 s window."""


@dataclass(frozen=True)
class HPAParams:
    """An HPA spec plus the controller flags that matter.

    Attributes:
        metrics: ``spec.metrics`` (AverageValue targets).
        min_replicas, max_replicas: ``spec.minReplicas`` / ``spec.maxReplicas``.
        sync_period_s: ``--horizontal-pod-autoscaler-sync-period``.
        scale_up, scale_down: ``spec.behavior``.
    """

    metrics: tuple[MetricTarget, ...] = (MetricTarget(VllmMetric.IN_SYSTEM, 64.0),)
    min_replicas: int = 1
    max_replicas: int = 100
    sync_period_s: float = 15.0
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


Stamped = tuple[float, int]
"""``(time_s, value)``: a recommendation or a scale event's replica change."""


@dataclass(frozen=True)
class HPAState:
    """The controller's memory for one HPA.

    Attributes:
        recommendations: raw recommendations with their times (for the stabilization windows).
        scale_up_events, scale_down_events: replica changes with their times (for the rate policies).
        last_sync_s: when the controller last reconciled (None: never).
    """

    recommendations: tuple[Stamped, ...] = ()
    scale_up_events: tuple[Stamped, ...] = ()
    scale_down_events: tuple[Stamped, ...] = ()
    last_sync_s: float | None = None


@dataclass(frozen=True)
class MetricResult:
    """One metric's proposal; ``replicas`` None when the metric could not be computed."""

    replicas: int | None
    usage_ratio: float = float("nan")


def within_tolerance(ratio: float, up: ScalingRules, down: ScalingRules) -> bool:
    """``1 - tol_down <= ratio <= 1 + tol_up`` (with 0.1 both ways this is ``|1 - ratio| <= 0.1``)."""
    return (1.0 - down.tolerance) <= ratio <= (1.0 + up.tolerance)


def pod_value(ctx: ScalingContext, i: int, metric: VllmMetric) -> float:
    """Listed replica ``i``'s value of ``metric``."""
    if metric is VllmMetric.IN_SYSTEM:
        return float(ctx.running[i] + ctx.waiting[i])
    if metric is VllmMetric.RUNNING:
        return float(ctx.running[i])
    if metric is VllmMetric.WAITING:
        return float(ctx.waiting[i])
    return float(ctx.kv_cache_usage_perc[i])


def pods_metric_replicas(
    ready_values: tuple[float, ...],
    *,
    unready: int,
    missing: int,
    target: float,
    current: int,
    up: ScalingRules = DEFAULT_SCALE_UP,
    down: ScalingRules = DEFAULT_SCALE_DOWN,
) -> MetricResult:
    """``calcPlainMetricReplicas``: replicas for a per-pod AverageValue metric.

    Args:
        ready_values: the metric of each pod that has a sample and is not unready.
        unready: pods set aside as unready (pending / not yet ready).
        missing: pods with no sample.
        target: the AverageValue target.
        current: ``spec.replicas``.

    >>> pods_metric_replicas((20.0, 20.0), unready=0, missing=0, target=10.0, current=2).replicas
    4
    >>> pods_metric_replicas((20.0, 20.0), unready=2, missing=0, target=10.0, current=4).replicas
    4
    """
    if not ready_values:
        return MetricResult(None)  # "did not receive metrics for targeted pods (pods might be unready)"
    ratio = sum(ready_values) / len(ready_values) / target
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if within_tolerance(ratio, up, down):
            return MetricResult(current, ratio)
        return MetricResult(math.ceil(ratio * len(ready_values)), ratio)
    values = list(ready_values)
    if missing > 0:
        # scale-down: missing pods at the target; scale-up: at 0
        values += [target if ratio < 1.0 else 0.0] * missing
    if scale_up_with_unready:
        values += [0.0] * unready  # unready pods count as 0 on a scale-up
    new_ratio = sum(values) / len(values) / target
    if within_tolerance(new_ratio, up, down) or (ratio > 1.0 > new_ratio) or (ratio < 1.0 < new_ratio):
        return MetricResult(current, ratio)  # too small, or the direction flipped
    n = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and n > current) or (new_ratio > 1.0 and n < current):
        return MetricResult(current, ratio)  # the pod count itself would flip the direction
    return MetricResult(n, ratio)


def external_metric_replicas(
    total: float,
    *,
    target_average: float,
    current: int,
    up: ScalingRules = DEFAULT_SCALE_UP,
    down: ScalingRules = DEFAULT_SCALE_DOWN,
) -> MetricResult:
    """``GetExternalPerPodMetricReplicas``: ``ratio = total / (target * current)``; outside tolerance
    ``ceil(total / target)``. With ``current == 0`` (scale to zero) the answer is ``ceil(total / target)``.

    >>> external_metric_replicas(95.0, target_average=10.0, current=10).replicas
    10
    >>> external_metric_replicas(150.0, target_average=10.0, current=10).replicas
    15
    """
    if current == 0:
        return MetricResult(math.ceil(total / target_average), float("inf"))
    ratio = total / (target_average * current)
    if within_tolerance(ratio, up, down):
        return MetricResult(current, ratio)
    return MetricResult(math.ceil(total / target_average), ratio)


def metric_result(ctx: ScalingContext, m: MetricTarget, params: HPAParams) -> MetricResult:
    """One metric's proposal from the context (pods grouped into ready, unready and missing)."""
    if m.source is MetricSource.EXTERNAL:
        total = sum(pod_value(ctx, i, m.metric) for i in range(len(ctx.running)) if is_scraped(ctx, i))
        if m.metric in (VllmMetric.IN_SYSTEM, VllmMetric.WAITING):
            total += ctx.pending_at_router
        return external_metric_replicas(total, target_average=m.average_value, current=ctx.replicas,
                                        up=params.scale_up, down=params.scale_down)
    ready_vals: list[float] = []
    unready = ctx.starting
    missing = 0
    for i in range(len(ctx.running)):
        if not is_ready(ctx, i):
            unready += 1
        elif not is_scraped(ctx, i):
            missing += 1
        else:
            ready_vals.append(pod_value(ctx, i, m.metric))
    return pods_metric_replicas(tuple(ready_vals), unready=unready, missing=missing, target=m.average_value,
                                current=ctx.replicas, up=params.scale_up, down=params.scale_down)


def replicas_for_metrics(results: tuple[MetricResult, ...], current: int) -> int:
    """``computeReplicasForMetrics``: the max over metrics; if any failed and the rest say scale down,
    or all failed, keep ``current``."""
    valid = [r.replicas for r in results if r.replicas is not None]
    if not valid:
        return current
    best = max(valid)
    if len(valid) < len(results) and best < current:
        return current
    return best


def stabilize(desired: int, current: int, now_s: float, state: HPAState,
              params: HPAParams) -> tuple[int, HPAState]:
    """``stabilizeRecommendationWithBehaviors``: clamp ``current`` to [min of the up window, max of the
    down window] over recorded recommendations (the new one included), then record ``desired``.

    Records older than both windows are overwritten (the controller reuses one old slot), so the history
    stays bounded.
    """
    up_cut = now_s - params.scale_up.stabilization_window_s
    down_cut = now_s - params.scale_down.stabilization_window_s
    up_rec = desired
    down_rec = desired
    old_index: int | None = None
    for i, (t, rec) in enumerate(state.recommendations):
        if t > up_cut:
            up_rec = min(up_rec, rec)
        if t > down_cut:
            down_rec = max(down_rec, rec)
        if t < up_cut and t < down_cut:
            old_index = i
    out = max(current, up_rec)
    out = min(out, down_rec)
    recs = list(state.recommendations)
    if old_index is not None:
        recs[old_index] = (now_s, desired)
    else:
        recs.append((now_s, desired))
    return out, HPAState(tuple(recs), state.scale_up_events, state.scale_down_events, state.last_sync_s)


def change_in_period(period_s: float, events: tuple[Stamped, ...], now_s: float) -> int:
    """``getReplicasChangePerPeriod``: replicas changed by events after ``now - period``."""
    cut = now_s - period_s
    return sum(ch for t, ch in events if t > cut)


def scale_up_limit(current: int, state: HPAState, rules: ScalingRules, now_s: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = min if rules.select_policy is SelectPolicy.MIN else max
    result: int | None = None
    for p in rules.policies:
        start = (current - change_in_period(p.period_s, state.scale_up_events, now_s)
                 + change_in_period(p.period_s, state.scale_down_events, now_s))
        proposed = (start + p.value if p.type is PolicyType.PODS
                    else math.ceil(start * (1.0 + p.value / 100.0)))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, state: HPAState, rules: ScalingRules, now_s: float) -> int:
    """``calculateScaleDownLimitWithBehaviors`` (``Percent`` truncates toward zero, as ``int32()`` does)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = max if rules.select_policy is SelectPolicy.MIN else min
    result: int | None = None
    for p in rules.policies:
        start = (current - change_in_period(p.period_s, state.scale_up_events, now_s)
                 + change_in_period(p.period_s, state.scale_down_events, now_s))
        proposed = (start - p.value if p.type is PolicyType.PODS
                    else int(start * (1.0 - p.value / 100.0)))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def rate_limit(desired: int, current: int, state: HPAState, params: HPAParams, now_s: float) -> int:
    """``convertDesiredReplicasWithBehaviorRate``: behavior limits, then ``[min, max]``."""
    if desired > current:
        limit = max(scale_up_limit(current, state, params.scale_up, now_s), current)
        return min(desired, params.max_replicas, limit)
    if desired < current:
        limit = min(scale_down_limit(current, state, params.scale_down, now_s), current)
        return max(desired, params.min_replicas, limit)
    return desired


def record_scale_event(state: HPAState, current: int, new: int, now_s: float,
                       params: HPAParams) -> HPAState:
    """``storeScaleEvent``: remember the change; drop events older than the longest period."""
    longest_up = max((p.period_s for p in params.scale_up.policies), default=0.0)
    longest_down = max((p.period_s for p in params.scale_down.policies), default=0.0)
    ups = tuple(e for e in state.scale_up_events if e[0] > now_s - longest_up)
    downs = tuple(e for e in state.scale_down_events if e[0] > now_s - longest_down)
    if new > current:
        ups += ((now_s, new - current),)
    elif new < current:
        downs += ((now_s, current - new),)
    return HPAState(state.recommendations, ups, downs, state.last_sync_s)


def sync_due(state: HPAState, now_s: float, period_s: float) -> bool:
    """Whether a reconcile is due (a small epsilon absorbs float steps such as 0.1 * 150)."""
    return state.last_sync_s is None or now_s - state.last_sync_s >= period_s - 1e-9


def reconcile(ctx: ScalingContext, state: HPAState, params: HPAParams, *,
              results: Callable[[], tuple[MetricResult, ...]] | None = None) -> tuple[int, HPAState]:
    """One ``reconcileAutoscaler`` pass: the new ``spec.replicas`` and the updated controller memory.

    ``results`` gives the per-metric proposals when the caller evaluates the metrics itself (KEDA serves
    each trigger's query value as an External metric); by default they come from ``params.metrics``. It
    is called only when the metrics are consulted (not when ``spec.replicas`` is outside the bounds).
    """
    current = ctx.replicas
    if current == 0 and params.min_replicas != 0:
        return 0, state  # scaling disabled on a target scaled to zero by hand
    if current > params.max_replicas:
        desired = params.max_replicas
    elif current < params.min_replicas:
        desired = params.min_replicas
    else:
        found = (results() if results is not None
                 else tuple(metric_result(ctx, m, params) for m in params.metrics))
        proposal = replicas_for_metrics(found, current)
        stabilized, state = stabilize(proposal, current, ctx.now_s, state, params)
        desired = rate_limit(stabilized, current, state, params, ctx.now_s)
    if desired != current:
        state = record_scale_event(state, current, desired, ctx.now_s, params)
    return desired, state


def hpa(ctx: ScalingContext, *, params: HPAParams | None = None) -> ScalingDecision[HPAState]:
    """The HPA as a policy: reconcile every ``sync_period_s``, hold ``spec.replicas`` in between."""
    p = params or HPAParams()
    state = own_state(ctx, HPAState, HPAState)
    if not sync_due(state, ctx.now_s, p.sync_period_s):
        return ScalingDecision(ctx.replicas, state)
    desired, state = reconcile(ctx, state, p)
    return ScalingDecision(desired, HPAState(state.recommendations, state.scale_up_events,
                                             state.scale_down_events, ctx.now_s))


__all__ = [
    "DEFAULT_SCALE_DOWN", "DEFAULT_SCALE_UP", "HPAParams", "HPAState", "MetricResult", "MetricSource",
    "MetricTarget", "PolicyType", "RatePolicy", "ScalingRules", "SelectPolicy", "VllmMetric",
    "external_metric_replicas", "hpa", "pods_metric_replicas", "rate_limit", "reconcile",
    "replicas_for_metrics", "stabilize",
]

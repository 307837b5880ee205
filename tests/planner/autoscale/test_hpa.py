"""HPA tick by tick: tolerance, unready/missing pods, stabilization windows, behavior policies, sync."""

from __future__ import annotations

from dataclasses import replace

from planner.autoscale.hpa import (
    HPAParams,
    HPAState,
    MetricResult,
    MetricSource,
    MetricTarget,
    PolicyType,
    RatePolicy,
    ScalingRules,
    SelectPolicy,
    VllmMetric,
    external_metric_replicas,
    hpa,
    pods_metric_replicas,
    replicas_for_metrics,
)
from planner.contracts.scaling import ScalingContext

P = HPAParams(metrics=(MetricTarget(VllmMetric.IN_SYSTEM, 10.0),), min_replicas=1, max_replicas=50)


def ctx(t: float, loads: list[int], state: object | None, *, replicas: int | None = None,
        ready: tuple[bool, ...] = (), scraped: tuple[bool, ...] = (), starting: int = 0) -> ScalingContext:
    n = len(loads)
    return ScalingContext(now_s=t, replicas=replicas if replicas is not None else n + starting,
                          running=tuple(loads), waiting=(0,) * n, kv_cache_usage_perc=(0.5,) * n, state=state,
                          ready=ready, scraped=scraped, starting=starting)


def test_tolerance_keeps_count_within_ten_percent() -> None:
    assert pods_metric_replicas((10.9, 10.9), unready=0, missing=0, target=10.0, current=2).replicas == 2
    assert pods_metric_replicas((9.0, 9.0), unready=0, missing=0, target=10.0, current=2).replicas == 2
    assert pods_metric_replicas((11.5, 11.5), unready=0, missing=0, target=10.0, current=2).replicas == 3
    # per-direction tolerance (KEP-4951): a 5 % scale-up tolerance acts on 1.08
    tight = ScalingRules(0.0, (RatePolicy(PolicyType.PERCENT, 100, 15.0),), tolerance=0.05)
    r = pods_metric_replicas((10.8, 10.8), unready=0, missing=0, target=10.0, current=2, up=tight)
    assert r.replicas == 3


def test_missing_pods_count_at_target_on_scale_down_and_zero_on_scale_up() -> None:
    # scale-down: 2 ready at 5 (ratio 0.5), 2 missing treated at target 10 -> ratio 0.75 -> ceil(0.75*4)=3
    assert pods_metric_replicas((5.0, 5.0), unready=0, missing=2, target=10.0, current=4).replicas == 3
    # scale-up: 2 ready at 30 (ratio 3), 2 missing at 0 -> ratio 1.5 -> ceil(1.5*4)=6
    assert pods_metric_replicas((30.0, 30.0), unready=0, missing=2, target=10.0, current=4).replicas == 6
    # scale-up whose recomputed ratio falls within tolerance: no change
    assert pods_metric_replicas((20.0,), unready=0, missing=1, target=10.0, current=2).replicas == 2


def test_unready_pods_count_zero_on_scale_up_only() -> None:
    # scale-up with 3 unready: [40, 0, 0, 0] -> ratio 1.0 -> within tolerance -> keep current
    assert pods_metric_replicas((40.0,), unready=3, missing=0, target=10.0, current=4).replicas == 4
    # scale-down ignores unready pods entirely: ceil(0.5 * 1) = 1
    assert pods_metric_replicas((5.0,), unready=3, missing=0, target=10.0, current=4).replicas == 1
    # no metrics at all: the metric fails
    assert pods_metric_replicas((), unready=2, missing=0, target=10.0, current=2).replicas is None


def test_context_grouping_unready_and_missing() -> None:
    # replica 1 not ready, replica 2 scrape failed: ready values (30,)
    # -> scale-up: [30, 0 (missing), 0 (unready)]
    c = ctx(0.0, [30, 99, 99], None, ready=(True, False, True), scraped=(True, True, False))
    assert hpa(c, params=P).desired_replicas == 3  # ratio 1.0 after padding -> keep


def test_external_metric_and_scale_to_zero_formula() -> None:
    assert external_metric_replicas(0.0, target_average=10.0, current=0).replicas == 0
    assert external_metric_replicas(31.0, target_average=10.0, current=0).replicas == 4
    assert external_metric_replicas(31.0, target_average=10.0, current=3).replicas == 3  # 1.033: tolerance


def test_multiple_metrics_take_max_and_failed_metric_blocks_scale_down() -> None:
    assert replicas_for_metrics((MetricResult(3), MetricResult(5)), 4) == 5
    assert replicas_for_metrics((MetricResult(None), MetricResult(2)), 4) == 4
    assert replicas_for_metrics((MetricResult(None), MetricResult(6)), 4) == 6
    assert replicas_for_metrics((MetricResult(None),), 4) == 4


def test_default_scale_up_limit_max_of_4_pods_and_100_percent_per_15s() -> None:
    d = hpa(ctx(0.0, [1000], None), params=P)  # wants 100, limit max(1+4, 2) = 5
    assert d.desired_replicas == 5
    # 15 s later (the event is no longer inside the period): start from 5 -> max(9, 10) = 10
    d2 = hpa(ctx(15.0, [200] * 5, d.state), params=P)
    assert d2.desired_replicas == 10
    # between syncs nothing happens
    d3 = hpa(ctx(20.0, [200] * 10, d2.state), params=P)
    assert d3.desired_replicas == 10


def test_events_inside_the_period_lower_the_start_point() -> None:
    rules = ScalingRules(0.0, (RatePolicy(PolicyType.PODS, 2, 60.0),))
    p = replace(P, scale_up=rules, sync_period_s=15.0)
    d = hpa(ctx(0.0, [100, 100], None), params=p)
    assert d.desired_replicas == 4  # 2 + 2
    d = hpa(ctx(15.0, [100] * 4, d.state), params=p)
    assert d.desired_replicas == 4  # period start = 4 - 2 = 2 -> limit 4: no further scale-up yet
    d = hpa(ctx(61.0, [100] * 4, d.state), params=p)
    assert d.desired_replicas == 6  # the event left the 60 s period


def test_select_policy_min_and_disabled() -> None:
    both = (RatePolicy(PolicyType.PODS, 1, 15.0), RatePolicy(PolicyType.PERCENT, 100, 15.0))
    p_min = replace(P, scale_up=ScalingRules(0.0, both, SelectPolicy.MIN))
    assert hpa(ctx(0.0, [100] * 4, None), params=p_min).desired_replicas == 5  # min(4+1, 8)
    p_max = replace(P, scale_up=ScalingRules(0.0, both, SelectPolicy.MAX))
    assert hpa(ctx(0.0, [100] * 4, None), params=p_max).desired_replicas == 8
    p_off = replace(P, scale_up=ScalingRules(0.0, both, SelectPolicy.DISABLED))
    assert hpa(ctx(0.0, [100] * 4, None), params=p_off).desired_replicas == 4


def test_scale_down_waits_for_the_300s_window_and_takes_its_max() -> None:
    state: object | None = None
    n = 10
    d = hpa(ctx(0.0, [10] * n, state), params=P)  # at target
    assert d.desired_replicas == 10
    state = d.state
    t = 15.0
    while t < 300.0:  # load drops to 20 % of target: wants 2, but the window holds the max (10)
        d = hpa(ctx(t, [2] * n, state), params=P)
        assert d.desired_replicas == 10, t
        state = d.state
        t += 15.0
    d = hpa(ctx(300.0, [2] * n, state), params=P)  # the t=0 recommendation (10) is out of the window
    assert d.desired_replicas == 2


def test_percent_scale_down_policy_truncates() -> None:
    rules = ScalingRules(0.0, (RatePolicy(PolicyType.PERCENT, 50, 60.0),))
    p = replace(P, scale_down=rules)
    d = hpa(ctx(0.0, [0] * 5, None), params=p)
    assert d.desired_replicas == 2  # int(5 * 0.5) = 2, then >= min 1
    assert isinstance(d.state, HPAState) and d.state.scale_down_events == ((0.0, 3),)


def test_bounds_and_external_source() -> None:
    p = replace(P, metrics=(MetricTarget(VllmMetric.IN_SYSTEM, 10.0, MetricSource.EXTERNAL),), max_replicas=3)
    c = ScalingContext(now_s=0.0, replicas=1, running=(5,), waiting=(0,), kv_cache_usage_perc=(0.1,),
                       pending_at_router=95)
    assert hpa(c, params=p).desired_replicas == 3  # wants 10, max 3
    assert hpa(ctx(0.0, [1], None, replicas=60), params=P).desired_replicas == 50  # above max: max

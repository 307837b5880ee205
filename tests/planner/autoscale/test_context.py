"""Autoscaling seam: tick-by-tick policy behaviour and the shipped cold-start fit."""

from __future__ import annotations

from planner.autoscale.context import (
    POLICIES,
    PolicyName,
    ScalingContext,
    TargetParams,
    TargetState,
    target_tracking,
)

P = TargetParams(target_running_per_replica=10, min_replicas=1, max_replicas=5, scale_down_delay_s=60)


def _ctx(now: float, replicas: int, load: int, state: TargetState) -> ScalingContext:
    return ScalingContext(now_s=now, replicas=replicas, running=(load,), waiting=(0,),
                          kv_cache_usage_perc=(0.5,), state=state)


def test_scale_up_at_once_bounded_and_scale_down_after_delay() -> None:
    d = target_tracking(_ctx(0.0, 1, 35, TargetState()), params=P)
    assert d.desired_replicas == 4
    d = target_tracking(_ctx(10.0, 4, 1000, d.state), params=P)
    assert d.desired_replicas == 5  # max bound
    state = d.state
    replicas = 5
    for t in (20.0, 50.0, 79.0):  # load fell: wish to go to 1, held back for 60 s
        d = target_tracking(_ctx(t, replicas, 3, state), params=P)
        assert d.desired_replicas == 5
        state = d.state
    d = target_tracking(_ctx(80.0, replicas, 3, state), params=P)
    assert d.desired_replicas == 1 and d.state.below_since_s is None
    assert POLICIES[PolicyName.TARGET_TRACKING] is target_tracking

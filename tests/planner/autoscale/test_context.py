"""Autoscaling seam: tick-by-tick policy behaviour and the shipped cold-start fit."""

from __future__ import annotations

import pytest

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
    assert d.desired_replicas == 1 and d.state.below_since_s == 20.0  # the wish goes on
    assert POLICIES[PolicyName.TARGET_TRACKING] is target_tracking


def _shed(policy: str, params: dict[str, object], until_s: float) -> list[tuple[float, int]]:
    """16 replicas carrying almost nothing, stepped through the live controller with a ramp of one replica
    per 15 s tick; the Deployment follows every decision. Returns ``(t, replicas)`` per tick."""
    from planner.live.config import parse_config
    from planner.live.controller import PoolState, step
    from planner.live.promql import PoolReading

    pool = parse_config({"pools": {"chat": {"selector": {"m": "x"}, "min_replicas": 1, "max_replicas": 20,
                                            "max_step_down": 1, "policy": policy, "params": params}}},
                        source="t").pools[0]
    st = PoolState(desired=16)
    t, spec = 0.0, 16
    history = []
    while t <= until_s:
        pods = tuple(f"p{i}" for i in range(spec))
        reading = PoolReading("chat", t, t - 0.5, pods, tuple(0.5 for _ in pods), tuple(0.0 for _ in pods),
                              tuple(0.1 for _ in pods), (), spec_replicas=float(spec))
        st, d = step(st, reading, t, pool=pool, stale_after_s=30.0)
        assert d.desired is not None
        spec = d.desired
        history.append((t, spec))
        t += 15.0
    return history


def test_a_ramped_scale_down_does_not_wait_the_delay_again_at_every_step() -> None:
    """A ramp that removes one replica per tick (the live loop's max_step_down) sheds 15 replicas in 15
    ticks once the delay has passed, not in 15 delays (issue 19: 75 minutes at a 300 s delay)."""
    history = _shed("target-tracking", {"target_running_per_replica": 10, "scale_down_delay_s": 300},
                    300.0 + 15 * 15.0 + 15.0)
    assert all(n == 16 for tt, n in history if tt < 300.0)  # the delay holds
    assert history[-1][1] == 1  # then one replica per tick, without re-arming
    assert next(tt for tt, n in history if n == 1) <= 300.0 + 15 * 15.0


@pytest.mark.parametrize("policy", ["hpa", "keda"])
def test_hpa_and_keda_keep_their_own_stabilization_through_the_live_ramp(policy: str) -> None:
    """HPA's scale-down window (300 s, also behind KEDA) looks back over its recommendations; a ramp of
    one replica per tick must not turn it into a new 300 s wait at every step (issue 19)."""
    history = _shed(policy, {}, 300.0 + 20 * 15.0)
    assert history[-1][1] == 1, history
    shed = next(tt for tt, n in history if n == 1)
    assert shed <= 300.0 + 16 * 15.0 + 30.0, history  # the window once, then a replica per tick

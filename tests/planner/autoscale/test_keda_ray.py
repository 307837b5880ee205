"""KEDA activation/cooldown and Ray Serve delays, tick by tick with an injected clock."""

from __future__ import annotations

import pytest

from planner.autoscale.keda import KEDAParams, KEDAState, Trigger, keda
from planner.autoscale.ray_serve import RayServeParams, desired_replicas, ray_serve
from planner.contracts.scaling import ScalingContext


def c(t: float, loads: list[int], state: object | None, *, gateway: int = 0,
      ready: tuple[bool, ...] = ()) -> ScalingContext:
    n = len(loads)
    return ScalingContext(now_s=t, replicas=n, running=tuple(loads), waiting=(0,) * n,
                          kv_cache_usage_perc=(0.1,) * n, state=state, pending_at_router=gateway, ready=ready)


KP = KEDAParams(triggers=(Trigger(threshold=10.0, activation_threshold=0.0),), min_replica_count=0,
                max_replica_count=20)


def test_keda_activates_from_zero_then_hpa_scales_on_the_external_metric() -> None:
    d = keda(c(0.0, [], None), params=KP)
    assert d.desired_replicas == 0  # nothing queued: stays at zero
    d = keda(c(10.0, [], d.state, gateway=35), params=KP)
    assert d.desired_replicas == 0  # polling every 30 s: not yet
    d = keda(c(30.0, [], d.state, gateway=35), params=KP)
    assert d.desired_replicas == 1  # active at zero -> max(minReplicaCount, 1)
    d = keda(c(35.0, [35], d.state), params=KP)
    assert d.desired_replicas == 4  # HPA: ceil(35 / 10), scale-up limit max(1+4, 2) = 5


def test_keda_scales_to_zero_only_after_the_cooldown() -> None:
    state = KEDAState(last_poll_s=0.0, last_active_s=0.0)
    t = 30.0
    n = 2
    while t < 300.0:
        d = keda(c(t, [0] * n, state), params=KP)
        assert d.desired_replicas >= 1, t  # inactive, but within cooldownPeriod (HPA may shrink to 1)
        state = d.state
        n = d.desired_replicas
        t += 30.0
    d = keda(c(300.0, [0] * n, state), params=KP)
    assert d.desired_replicas == 0


def test_keda_min_replica_count_lifts() -> None:
    p = KEDAParams(triggers=(Trigger(threshold=10.0),), min_replica_count=2, max_replica_count=5)
    assert keda(c(0.0, [], None), params=p).desired_replicas == 2


RP = RayServeParams(target_ongoing_requests=10.0, min_replicas=1, max_replicas=50)


def test_ray_upscale_after_30s_of_consistent_wish() -> None:
    state: object | None = None
    for t in (0.0, 10.0, 20.0):
        d = ray_serve(c(t, [40, 40], state), params=RP)
        assert d.desired_replicas == 2, t
        state = d.state
    d = ray_serve(c(30.0, [40, 40], state), params=RP)
    assert d.desired_replicas == 8  # total 80 / target 10


def test_ray_direction_flip_resets_the_delay() -> None:
    p = RayServeParams(target_ongoing_requests=10.0, max_replicas=50, look_back_period_s=1.0)
    d = ray_serve(c(0.0, [40, 40], None), params=p)  # up-wish starts at 0 s
    d = ray_serve(c(20.0, [0, 0], d.state), params=p)  # down-wish: the up-wish is forgotten
    d = ray_serve(c(35.0, [40, 40], d.state), params=p)  # up again, from 35 s
    assert d.desired_replicas == 2
    d = ray_serve(c(60.0, [40, 40], d.state), params=p)
    assert d.desired_replicas == 2  # only 25 s of the new wish
    d = ray_serve(c(65.0, [40, 40], d.state), params=p)
    assert d.desired_replicas == 8


def test_ray_downscale_waits_600s_and_averages_the_look_back() -> None:
    p = RayServeParams(target_ongoing_requests=10.0, max_replicas=50, look_back_period_s=30.0)
    state: object | None = None
    t = 0.0
    while t < 600.0:
        d = ray_serve(c(t, [1] * 8, state), params=p)
        assert d.desired_replicas == 8, t
        state = d.state
        t += 10.0
    d = ray_serve(c(600.0, [1] * 8, state), params=p)
    assert d.desired_replicas == 1


def test_ray_smoothing_stuck_steps_down_by_one_and_zero_replicas_start() -> None:
    assert desired_replicas(30.0, 4, RayServeParams(target_ongoing_requests=10.0, downscaling_factor=0.01,
                                                   max_replicas=10)) == 3
    p = RayServeParams(target_ongoing_requests=2.0, min_replicas=0, max_replicas=5)
    z = ScalingContext(now_s=0.0, replicas=0, running=(), waiting=(), kv_cache_usage_perc=(),
                       pending_at_router=3)
    assert ray_serve(z, params=p).desired_replicas == 1
    # unready replicas do not count as running: all starting -> the zero-replica rule applies
    s = ScalingContext(now_s=0.0, replicas=2, running=(0, 0), waiting=(0, 0), kv_cache_usage_perc=(0.0, 0.0),
                       ready=(False, False), pending_at_router=7)
    assert ray_serve(s, params=p).desired_replicas == 2


@pytest.mark.parametrize("delay", [0.3, 0.6, 3.0])
def test_ray_delay_is_time_based_not_tick_counted(delay: float) -> None:
    """Ray's own tests note int(delay / 0.1) undercounts for 5.999...; timestamps at 0.1 s steps must act
    exactly when the delay has elapsed."""
    p = RayServeParams(target_ongoing_requests=1.0, max_replicas=10, upscale_delay_s=delay)
    state: object | None = None
    k = 0
    while True:
        t = k * 0.1
        d = ray_serve(c(t, [5], state), params=p)
        state = d.state
        if d.desired_replicas > 1:
            break
        k += 1
    assert k * 0.1 == pytest.approx(delay, abs=1e-9)

"""llm-d's KEDA + EPP policy: the EPP's saturation gauge from the pool state, and the ScaledObject's triggers,
polling and windows tick by tick (issue 23)."""

from __future__ import annotations

import dataclasses

import pytest

from planner.autoscale.epp import EndpointPicker, gauges
from planner.autoscale.keda import KEDAParams, KEDAState, PromQuery, Trigger, keda, query_value
from planner.autoscale.llm_d import LlmdKEDAParams, llm_d_keda
from planner.contracts.scaling import ScalingContext

OPEN = EndpointPicker(flow_control=False)
GATED = EndpointPicker()


def c(t: float, running: tuple[int, ...], waiting: tuple[int, ...], kv: tuple[float, ...],
      state: object | None, *, replicas: int | None = None, ready: tuple[bool, ...] = (),
      scraped: tuple[bool, ...] = (), gateway: int = 0) -> ScalingContext:
    return ScalingContext(now_s=t, replicas=len(running) if replicas is None else replicas, running=running,
                          waiting=waiting, kv_cache_usage_perc=kv, state=state, ready=ready, scraped=scraped,
                          pending_at_router=gateway)


@pytest.mark.parametrize("waiting,kv,expected", [
    ((0, 0), (0.4, 0.4), 0.5),            # KV-bound: 0.4 / 0.8
    ((5, 0), (0.0, 0.8), 1.0),            # one queue-bound at 5/5, one KV-bound at 0.8/0.8
    ((20, 10), (0.2, 0.2), 3.0),          # oversubscribed: 4 and 2, not clamped
])
def test_pool_saturation_is_the_mean_roofline_score(waiting: tuple[int, ...], kv: tuple[float, ...],
                                                    expected: float) -> None:
    assert gauges(c(0.0, (10, 10), waiting, kv, None), OPEN).pool_saturation == pytest.approx(expected)


def test_saturation_fails_closed_and_counts_ready_endpoints_only() -> None:
    assert gauges(c(0.0, (), (), (), None, replicas=2), OPEN).pool_saturation == 1.0  # no endpoint: 1.0
    # a ready endpoint whose metrics were not read scores 1.0; a loading pod is no endpoint yet
    ctx = c(0.0, (10, 10, 0), (0, 0, 0), (0.0, 0.4, 0.0), None, ready=(True, True, False),
            scraped=(False, True, True))
    assert gauges(ctx, OPEN).pool_saturation == pytest.approx((1.0 + 0.5) / 2)
    tight = EndpointPicker(flow_control=False, kv_cache_util_threshold=0.5)
    assert gauges(ctx, tight).pool_saturation == pytest.approx((1.0 + 0.8) / 2)
    with pytest.raises(ValueError):
        EndpointPicker(kv_cache_util_threshold=1.5)


def test_flow_control_holds_the_queue_above_the_gate_at_the_epp() -> None:
    """With flow control the pool reads at most 1.0 from its queues: the deepest queues' excess is counted at
    the EPP (queue size), not in flight (running)."""
    ctx = c(0.0, (50, 50), (40, 0), (0.5, 0.5), None, gateway=3)
    open_, gated = gauges(ctx, OPEN), gauges(ctx, GATED)
    assert open_ == type(open_)(pool_saturation=(8.0 + 0.625) / 2, request_running=140.0, queue_size=3.0)
    # level L with (L + 0.625) / 2 = 1: L = 1.375, 6 of the 40 stay (6 / 5 = 1.2), 34 wait at the EPP
    assert (gated.request_running, gated.queue_size) == (106.0, 37.0)
    assert gated.pool_saturation == pytest.approx((1.2 + 0.625) / 2)
    assert gauges(c(0.0, (50,), (0,), (0.96,), None), GATED).pool_saturation == pytest.approx(1.2)  # KV-bound
    calm = c(0.0, (10, 10), (2, 0), (0.2, 0.2), None)
    assert gauges(calm, GATED) == gauges(calm, OPEN)  # under the gate nothing is held


def test_running_counts_what_the_replicas_hold_and_the_queue_what_the_gateway_holds() -> None:
    ctx = c(0.0, (10, 4), (3, 0), (0.1, 0.1), None, gateway=7, scraped=(True, False))
    assert query_value(ctx, PromQuery.EPP_QUEUE_SIZE) == 7.0
    assert query_value(ctx, PromQuery.EPP_REQUEST_RUNNING) == 13.0


def test_the_hpa_races_the_triggers_and_takes_the_larger() -> None:
    p = KEDAParams(triggers=(Trigger(PromQuery.EPP_POOL_SATURATION, 0.7),
                             Trigger(PromQuery.EPP_REQUEST_RUNNING, 16.0)),
                   min_replica_count=1, max_replica_count=20)
    # saturation 2.0 at 1 replica (flow control off): ceil(2.0 / 0.7) = 3; running 20: ceil(20 / 16) = 2 -> 3
    d = keda(c(0.0, (10,), (10,), (0.2,), None), params=dataclasses.replace(p, epp=OPEN))
    assert d.desired_replicas == 3
    # with flow control the gate holds the queue at the EPP: saturation 1.0 -> 2, running 15 -> 1: 2
    assert keda(c(0.0, (10,), (10,), (0.2,), None), params=p).desired_replicas == 2
    # at 4 replicas a saturation of 1.0 asks for ceil(1 / 0.7) = 2; 100 running ask for 7: running wins
    d = keda(c(0.0, (25,) * 4, (0,) * 4, (0.8,) * 4, None), params=p)
    assert d.desired_replicas == 7


def test_llm_d_keda_waits_its_scale_up_window_and_polls_every_15_s() -> None:
    """The overlay's 300 s scale-up window takes the lowest recommendation of the last 300 s: a burst
    that arrives after a calm spell is answered only once the calm recommendations have aged out."""
    p = LlmdKEDAParams(running_threshold=16.0, max_replica_count=10)
    st: object | None = None
    n = 2
    seen = []
    for t in range(0, 600, 5):
        r, w, kv = (8, 0, 0.2) if t < 100 else (60, 10, 0.9)  # per replica
        d = llm_d_keda(c(float(t), (r,) * n, (w,) * n, (kv,) * n, st), params=p)
        st, n = d.state, d.desired_replicas
        seen.append((t, n))
    assert isinstance(st, KEDAState) and st.hpa.last_sync_s == 585.0  # synced on the 15 s grid
    assert seen[0] == (0, 1)  # 16 running / 16 = 1, no earlier recommendation to hold it up
    # the last calm recommendation (1 replica) was made at t = 90: the burst is answered at 90 + 300 s
    assert next(t for t, k in seen if k > 1) == 390
    assert max(k for _, k in seen) <= 10


def test_llm_d_keda_params_are_the_published_overlay() -> None:
    k = LlmdKEDAParams().keda_params()
    assert [(t.query, t.threshold) for t in k.triggers] == [(PromQuery.EPP_POOL_SATURATION, 0.7),
                                                             (PromQuery.EPP_REQUEST_RUNNING, 16.0)]
    assert (k.polling_interval_s, k.cooldown_period_s, k.min_replica_count, k.max_replica_count) == (
        15.0, 300.0, 1, 10)
    assert k.scale_up.stabilization_window_s == k.scale_down.stabilization_window_s == 300.0

"""Dynamo SLA planner (constant and ARIMA predictors, correction factors) and WVA saturation, tick by tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.autoscale.arima import arima_forecast, best_fit
from planner.autoscale.dynamo import DynamoParams, DynamoProfile, DynamoState, Predictor, dynamo_sla
from planner.autoscale.wva import WVAParams, wva
from planner.contracts.scaling import ScalingContext

PROFILE = DynamoProfile(
    prefill_isl=(100.0, 10_000.0), prefill_ttft_s=(0.1, 1.0), prefill_thpt_per_gpu=(1000.0, 10_000.0),
    decode_kv_usage=(0.0, 1.0), decode_context=(1000.0,), decode_itl_s=((0.01,), (0.05,)),
    decode_thpt_per_gpu=((100.0,), (500.0,)), kv_capacity_tokens=100_000, gpus_per_engine=1,
)


def dctx(t: float, reqs: int, prompt: int, gen: int, state: object | None, *,
         ttft: tuple[float, int] = (0.0, 0),
         itl: tuple[float, int] = (0.0, 0), replicas: int = 1, running: int = 10) -> ScalingContext:
    return ScalingContext(now_s=t, replicas=replicas, running=(running,) * replicas, waiting=(0,) * replicas,
                          kv_cache_usage_perc=(0.1,) * replicas, state=state, requests_total=reqs,
                          prompt_tokens_total=prompt, generation_tokens_total=gen, ttft_sum_s=ttft[0],
                          ttft_count=ttft[1], itl_sum_s=itl[0], itl_count=itl[1])


def test_dynamo_constant_predictor_sizes_by_the_published_formulas() -> None:
    p = DynamoParams(profile=PROFILE, predictor=Predictor.CONSTANT, ttft_sla_s=0.5, itl_sla_s=0.05,
                     max_gpu_budget=100)
    d = dynamo_sla(dctx(0.0, 0, 0, 0, None), params=p)
    assert d.desired_replicas == 1  # first tick only records the counters
    d = dynamo_sla(dctx(100.0, 900, 900 * 10_000, 900 * 100, d.state), params=p)
    assert d.desired_replicas == 1  # before the 180 s interval nothing happens
    # 1800 requests in 180 s, ISL 10 000, OSL 100; TTFT obs 2.0 s (profile 1.0 -> p_corr 2,
    # capped by min(1, .));
    # ITL obs 0.05 at concurrency 10, ctx 10050 -> nearest ctx 1000, kv 10*10050/1e5 = 1.005
    # -> 0.05 -> d_corr 1.
    d = dynamo_sla(dctx(180.0, 1800, 1800 * 10_000, 1800 * 100, d.state, ttft=(2.0 * 1800, 1800),
                        itl=(0.05 * 18_000, 18_000)), params=p)
    prefill_gpus = 1800 * 10_000 / 180 * 1.0 / 10_000  # = 10
    decode_gpus = 1800 * 100 / 180 / 500.0  # itl* = 0.05 -> best thpt 500 -> = 2
    assert isinstance(d.state, DynamoState)
    assert d.state.prefill_gpus == pytest.approx(prefill_gpus)
    assert d.state.decode_gpus == pytest.approx(decode_gpus)
    assert d.desired_replicas == math.ceil(prefill_gpus + decode_gpus)


def test_dynamo_slow_decode_correction_lowers_the_itl_target() -> None:
    p = DynamoParams(profile=PROFILE, predictor=Predictor.CONSTANT, max_gpu_budget=100)
    s = dynamo_sla(dctx(0.0, 0, 0, 0, None), params=p).state
    # ITL observed 2x the profile -> itl* = 0.025 -> the best point is kv 0 (itl 0.01, thpt 100)
    d = dynamo_sla(dctx(180.0, 1800, 1800 * 100, 1800 * 100, s, itl=(0.1 * 100, 100), running=1), params=p)
    assert isinstance(d.state, DynamoState)
    assert d.state.decode_gpus == pytest.approx(1800 * 100 / 180 / 100.0)


def test_dynamo_skips_intervals_without_requests_and_respects_the_budget() -> None:
    p = DynamoParams(profile=PROFILE, predictor=Predictor.CONSTANT, max_gpu_budget=4)
    s = dynamo_sla(dctx(0.0, 0, 0, 0, None, replicas=3), params=p).state
    assert dynamo_sla(dctx(180.0, 0, 0, 0, s, replicas=3), params=p).desired_replicas == 3
    d = dynamo_sla(dctx(180.0, 10**6, 10**10, 10**8, s, replicas=3), params=p)
    assert d.desired_replicas == 4


def test_dynamo_arima_predictor_follows_a_trend() -> None:
    p = DynamoParams(profile=PROFILE, predictor=Predictor.ARIMA, max_gpu_budget=1000)
    state: object | None = None
    reqs = 0
    d = dynamo_sla(dctx(0.0, 0, 0, 0, None), params=p)
    state = d.state
    for k in range(1, 9):  # request count grows by 180 per interval
        reqs += 180 * k
        d = dynamo_sla(dctx(180.0 * k, reqs, reqs * 1000, reqs * 100, state), params=p)
        state = d.state
    assert isinstance(state, DynamoState)
    assert state.num_req[-1] == 180 * 8
    nxt = arima_forecast(state.num_req)
    assert nxt == pytest.approx(180 * 9, rel=0.05)


def test_arima_recovers_an_ar1_and_forecasts_with_its_equation() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros(200)
    for t in range(1, 200):
        y[t] = 0.8 * y[t - 1] + rng.normal()
    w = y[-50:]  # Dynamo's window
    fit = best_fit(w)
    assert fit is not None and (fit.p, fit.d) == (1, 0)
    assert fit.phi[0] == pytest.approx(0.8, abs=0.15)
    expected = fit.const + fit.phi[0] * w[-1] + (fit.theta[0] * 0 if fit.theta else 0.0)
    if not fit.theta:
        assert arima_forecast(w) == pytest.approx(expected)
    assert arima_forecast([3.0, 3.0, 3.0, 3.0, 3.0, 3.0]) == 3.0  # constant series: the last value
    assert arima_forecast([1.0, 2.0]) == 2.0  # fewer than 5 points: the last value


WP = WVAParams(min_replicas=1, max_replicas=10)


def wctx(t: float, kv: list[float], q: list[int], state: object | None, *,
         starting: int = 0) -> ScalingContext:
    n = len(kv)
    return ScalingContext(now_s=t, replicas=n + starting, running=(10,) * n, waiting=tuple(q),
                          kv_cache_usage_perc=tuple(kv), state=state, starting=starting)


def test_wva_scales_up_on_low_spare_kv_and_skips_with_pending_pods() -> None:
    d = wva(wctx(0.0, [0.75, 0.72], [0, 0], None), params=WP)
    assert d.desired_replicas == 3  # avg spare kv 0.065 < 0.1
    d = wva(wctx(60.0, [0.75, 0.72], [0, 0], d.state, starting=1), params=WP)
    assert d.desired_replicas == 3  # a pod is pending: skip


def test_wva_uses_the_one_minute_max_and_scales_down_when_n_minus_1_keeps_margins() -> None:
    d = wva(wctx(0.0, [0.1, 0.1, 0.1], [0, 0, 0], None), params=WP)
    assert d.desired_replicas == 2  # kv sum 0.3 over 2 -> spare 0.65, queue spare 5: scale down
    # a spike 30 s ago stays in max_over_time[1m]
    s = wva(wctx(0.0, [0.1, 0.1], [0, 0], None, ), params=WVAParams(interval_s=60.0)).state
    s = wva(wctx(30.0, [0.78, 0.1], [0, 0], s), params=WVAParams(interval_s=60.0)).state
    d = wva(wctx(60.0, [0.1, 0.1], [0, 0], s), params=WVAParams(interval_s=60.0))
    assert d.desired_replicas == 2  # max kv (0.78, 0.1): spare 0.36 fine, but N-1 would leave 0.8-0.88 < 0.1
    # only one non-saturated replica: never scale down
    assert wva(wctx(0.0, [0.1, 0.9], [0, 0], None), params=WP).desired_replicas == 2


def test_wva_every_replica_saturated_scales_up_and_interval_holds() -> None:
    d = wva(wctx(0.0, [0.9, 0.9], [6, 6], None), params=WP)
    assert d.desired_replicas == 3
    d = wva(wctx(30.0, [0.9, 0.9, 0.9], [6, 6, 6], d.state), params=WP)
    assert d.desired_replicas == 3  # next analysis at 60 s

"""MPC: CP-SAT never worse than greedy, lead times and bounds honoured, forecast quantiles, the policy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.contracts.scaling import ScalingContext
from solvers.scaling.forecast import excess_quantiles, forecast_rate, peak_forecast
from solvers.scaling.mpc import ScalingProblem, SolveParams, evaluate, greedy_plan, solve
from solvers.scaling.policy import MPCParams, MPCState, bin_need, mpc, record
from solvers.status import SolveStatus
from traces.errors import InputError


def problem(demand: list[float], *, ready: int = 2, lead: int = 2, lo: int = 1, hi: int = 10,
            arriving: list[int] | None = None) -> ScalingProblem:
    k = len(demand)
    return ScalingProblem(step_s=30.0, demand=(tuple(demand),), weights=(10 * 30 / 3600,), ready_now=ready,
                          arriving=tuple(arriving or [0] * k), lead_steps=lead, min_replicas=lo,
                          max_replicas=hi)


def test_starts_ahead_of_a_ramp_by_the_lead_time() -> None:
    plan = solve(problem([2, 2, 2, 2, 6, 6, 6, 6], lead=3), params=SolveParams())
    assert plan.status is SolveStatus.OPTIMAL
    assert plan.ready[4] >= 6  # ready when the ramp arrives
    assert sum(plan.starts[:2]) >= 4 and plan.starts[0] == 0  # started at step 1 (= 4 - 3), not earlier
    assert plan.ready[:4] == (2, 2, 2, 2)


def test_bounds_and_known_arrivals() -> None:
    plan = solve(problem([20.0] * 6, hi=5, arriving=[0, 1, 0, 0, 0, 0]), params=SolveParams())
    assert max(plan.held) <= 5 and min(plan.held) >= 1
    plan = solve(problem([0.0] * 6, ready=4, lo=2), params=SolveParams())
    assert min(plan.held) == 2  # stops down to the minimum


def test_bad_problem_is_an_input_error() -> None:
    with pytest.raises(InputError):
        ScalingProblem(step_s=30.0, demand=((1.0, 2.0),), weights=(1.0,), ready_now=1, arriving=(0,),
                       lead_steps=1, min_replicas=1, max_replicas=3)


@settings(max_examples=25, deadline=None)
@given(demand=st.lists(st.floats(0, 12), min_size=3, max_size=10), ready=st.integers(0, 8),
       lead=st.integers(1, 4))
def test_cp_sat_never_worse_than_greedy(demand: list[float], ready: int, lead: int) -> None:
    p = problem(demand, ready=ready, lead=lead, lo=0, hi=16)
    g = greedy_plan(p)
    s = solve(p, params=SolveParams(time_limit_s=2.0))
    assert s.objective <= g.objective + 1e-6
    assert evaluate(p, list(s.starts), list(s.stops))[2] == pytest.approx(s.objective)
    assert all(0 <= h <= 16 for h in s.held)
    if s.status is SolveStatus.OPTIMAL:
        assert s.bound <= s.objective + 1e-3


def test_forecast_quantiles_are_ordered_and_follow_a_trend() -> None:
    y = np.linspace(1.0, 10.0, 60)
    f = forecast_rate(y, bin_s=10.0, steps=12, levels=(0.5, 0.9, 0.99))
    q50, q90, q99 = (np.asarray(f.quantile(q)) for q in (0.5, 0.9, 0.99))
    assert np.all(q50 <= q90) and np.all(q90 <= q99)
    assert f.mean[0] > 10.0  # the trend continues (damped)
    assert np.all(np.diff(q99 - q50) >= -1e-9)  # uncertainty grows with the horizon


def ctx(t: float, reqs: int, replicas: int, state: object | None, *, load: int = 10) -> ScalingContext:
    return ScalingContext(now_s=t, replicas=replicas, running=(load,) * replicas, waiting=(0,) * replicas,
                          kv_cache_usage_perc=(0.3,) * replicas, state=state, requests_total=reqs,
                          prompt_tokens_total=reqs * 1000, generation_tokens_total=reqs * 200)


def test_policy_scales_up_ahead_of_a_growing_rate_and_records_the_plan() -> None:
    p = MPCParams(replica_rps=5.0, min_replicas=1, max_replicas=40, lead_time_s=120.0, interval_s=15.0)
    state: object | None = None
    reqs = 0.0
    replicas = 2
    t = 0.0
    while t <= 600.0:
        rate = 5.0 + 0.05 * t  # 5 -> 35 req/s
        d = mpc(ctx(t, int(reqs), replicas, state), params=p)
        state = d.state
        replicas = d.desired_replicas
        reqs += rate * 5.0
        t += 5.0
    assert isinstance(state, MPCState) and state.plan is not None
    assert state.plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    # at 600 s the rate is 35 req/s = 7 replicas; with a 2-minute lead the plan holds more than now's need
    assert replicas >= 7


def test_policy_never_shrinks_without_history() -> None:
    p = MPCParams(replica_rps=5.0, max_replicas=10)
    d = mpc(ctx(0.0, 0, 6, None, load=0), params=p)
    assert d.desired_replicas == 6


def test_peak_forecast_covers_recurring_bursts_and_stays_near_a_flat_level() -> None:
    bursty = np.tile([4.0, 4.0, 4.0, 12.0], 30)  # a burst every fourth bin
    f = peak_forecast(bursty, bin_s=10.0, bins_per_step=1, steps=4, levels=(0.5, 0.9), hold_bins=4)
    assert min(f.quantile(0.9)) >= 11.9  # holding 4 bins always sees the next burst
    flat = np.full(120, 6.0)
    g = peak_forecast(flat, bin_s=10.0, bins_per_step=3, steps=5, levels=(0.5, 0.9, 0.99))
    assert np.allclose(g.quantile(0.99), 6.0)  # no band without variation (unlike a Gaussian floor)
    q = [np.asarray(g.quantile(lv)) for lv in (0.5, 0.9, 0.99)]
    assert np.all(q[0] <= q[1]) and np.all(q[1] <= q[2])


def test_peak_forecast_band_is_additive_after_quiet_bins() -> None:
    # a burst right after silence: a multiplicative band would blow up; the additive one stays bounded
    y = np.concatenate([np.zeros(30), np.full(30, 5.0), [20.0], np.full(30, 5.0)])
    f = peak_forecast(y, bin_s=10.0, bins_per_step=1, steps=3, levels=(0.9, 0.99), alpha=0.3)
    assert max(f.quantile(0.99)) <= 5.0 + 20.0


def test_far_steps_of_a_young_history_keep_the_nearer_steps_band_and_the_early_burst() -> None:
    # one burst early, then quiet: the far steps have few origins, all of whose windows are quiet; alone
    # they would forecast nothing (the last step with eight origins never saw the burst)
    y = np.concatenate([np.full(6, 2.0), np.full(3, 18.0), np.full(45, 0.5)])
    f = peak_forecast(y, bin_s=10.0, bins_per_step=2, steps=30, levels=(0.5, 0.99), alpha=0.1, hold_bins=6)
    far = np.asarray(f.quantile(0.99))[4:]
    assert far.min() >= 10.0  # the burst is still in the band this far ahead


def test_exponential_tail_estimates_a_quantile_beyond_the_sample() -> None:
    # excesses from an exponential with scale 2: the 0.9999 quantile is 2 ln(10^4) = 18.4, beyond what 2,000
    # draws show (their maximum, about 2 ln 2000 = 15.2); the fitted tail finds it, the empirical cannot
    truth = 2.0 * np.log(1e4)
    for seed in range(5):
        e = np.random.default_rng(seed).exponential(2.0, size=2_000)
        emp = excess_quantiles(e, (0.5, 0.9999), None)
        tail = excess_quantiles(e, (0.5, 0.9999), 0.9)
        assert tail[0] == emp[0]  # below tail_from nothing changes
        assert emp[1] < 0.93 * truth
        assert abs(tail[1] - truth) < 0.1 * truth, (seed, tail[1])


def test_short_history_falls_back_to_the_holt_forecast() -> None:
    y = np.array([3.0, 3.0, 3.0])
    f = peak_forecast(y, bin_s=10.0, bins_per_step=1, steps=2, levels=(0.5,))
    h = forecast_rate(y, bin_s=10.0, steps=2, levels=(0.5,))
    assert f.quantile(0.5) == pytest.approx(h.quantile(0.5))


def test_a_bin_of_long_prompts_needs_more_replicas_than_the_same_count_of_short_ones() -> None:
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf
    from planner.sim.config import EngineConfig, SLOTarget
    from solvers.scaling.capacity import capacity_table

    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
    table = capacity_table(perf, slo=SLOTarget(ttft_s=2.0, tpot_s=0.1), engine=EngineConfig(),
                           isl_grid=(256, 4096), osl_grid=(32, 256))
    p = MPCParams(capacity=table)
    short = bin_need((0.0, 0, 0, 0), (10.0, 100, 100 * 300, 100 * 30), p)
    long_ = bin_need((0.0, 0, 0, 0), (10.0, 100, 100 * 4000, 100 * 30), p)
    assert long_ > 3 * short > 0  # prefill-token work, not the request count, sets the need
    assert bin_need((0.0, 5, 5, 5), (10.0, 5, 5, 5), p) == 0.0


def test_record_keeps_needs_aligned_with_samples() -> None:
    p = MPCParams(replica_rps=2.0, bin_s=10.0, history_s=50.0)
    st = MPCState()
    for k in range(12):
        st = record(ctx(10.0 * k, 20 * k, 1, None), st, p)
    assert len(st.need) == len(st.samples) - 1
    assert st.need[-1] == pytest.approx(1.0)  # 2 req/s over 2 req/s per replica
    assert st.samples[0][0] >= 110.0 - 50.0 - 1e-9


def test_forecast_rate_matches_the_ets_variance_formula_step_by_step() -> None:
    # the vectorized forecast must equal the textbook loop: mean l + (phi+..+phi^h) b and the h-step
    # variance sigma^2 (1 + sum_{j<h} (alpha + alpha beta (phi+..+phi^j))^2), floored at mean / bin_s
    from scipy.stats import norm

    from solvers.scaling.forecast import damped_holt

    y = np.array([3.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 11.0])
    alpha, beta, phi = 0.4, 0.1, 0.98
    f = forecast_rate(y, bin_s=10.0, steps=5, levels=(0.5, 0.9), alpha=alpha, beta=beta, phi=phi)
    level, trend, sigma = damped_holt(y, alpha=alpha, beta=beta, phi=phi)
    for h in range(1, 6):
        mean = max(0.0, level + sum(phi ** i for i in range(1, h + 1)) * trend)
        var = sigma ** 2 * (1 + sum((alpha + alpha * beta * sum(phi ** i for i in range(1, j + 1))) ** 2
                                    for j in range(1, h)))
        sd = max(var, mean / 10.0) ** 0.5
        assert f.mean[h - 1] == pytest.approx(mean)
        assert f.quantile(0.9)[h - 1] == pytest.approx(mean + float(norm.ppf(0.9)) * sd)


def test_seasonal_memory_is_learned_from_the_past_only() -> None:
    from solvers.scaling.policy import record_season, seasonal_delta

    p = MPCParams(season_s=1000.0, season_bin_s=100.0)
    st = MPCState()
    for k in range(15):  # need 0, 1, 2, ... per 100-s coarse bin, recorded in 25-s bins
        for j in range(4):
            st = record_season(st, p, t0=100.0 * k + 25.0 * j, t1=100.0 * k + 25.0 * (j + 1), need=float(k))
    ahead = np.array([50.0, 150.0])
    # one period ago the need rose by 1 per 100 s: the forecast moves up by that much
    assert seasonal_delta(st, p, 1400.0, ahead).tolist() == pytest.approx([0.5, 1.5])
    # no full period of memory behind "now" yet: no seasonal guess
    assert seasonal_delta(st, p, 900.0, ahead).tolist() == [0.0, 0.0]
    assert len(st.season) <= 12  # one period plus two coarse bins
    off = MPCParams()
    assert seasonal_delta(st, off, 1400.0, ahead).tolist() == [0.0, 0.0]


def test_seasonal_mpc_prescales_before_yesterdays_ramp() -> None:
    # a daily step in load (period 1,000 s here): with the seasonal component on, the replicas are up
    # before the second day's step arrives; without it the policy only reacts after it.
    def run(season_s: float) -> int:
        p = MPCParams(replica_rps=5.0, max_replicas=40, lead_time_s=120.0, interval_s=60.0, step_s=60.0,
                      horizon_s=300.0, history_s=600.0, season_s=season_s, season_bin_s=100.0)
        state: object | None = None
        reqs = 0.0
        replicas = 2
        t = 0.0
        before = 0
        while t < 1700.0:
            rate = 30.0 if (t % 1000.0) >= 700.0 else 5.0  # 1 -> 6 replicas at 700 s each period
            d = mpc(ctx(t, int(reqs), replicas, state), params=p)
            state, replicas = d.state, d.desired_replicas
            if 1640.0 <= t < 1700.0:  # the minute before the second day's step (at 1,700 s)
                before = max(before, replicas)
            reqs += rate * 10.0
            t += 10.0
        return before

    assert run(1000.0) >= 5 > run(0.0)


def test_deterministic_time_limit_gives_the_same_plan_every_time() -> None:
    demand = [3.0 + (k % 7) * 1.3 for k in range(40)]
    p = ScalingProblem(step_s=15.0, demand=(tuple(demand), tuple(d + 2 for d in demand)),
                       weights=(0.05, 0.01), ready_now=3, arriving=(0,) * 40, lead_steps=3, min_replicas=1,
                       max_replicas=20, action_cost=0.001)
    params = SolveParams(time_limit_s=10.0, deterministic_time_s=0.05)
    plans = [solve(p, params=params) for _ in range(3)]
    assert all(q.starts == plans[0].starts and q.stops == plans[0].stops for q in plans)
    assert plans[0].status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    assert plans[0].objective <= greedy_plan(p).objective + 1e-9


def test_burst_averse_risk_buys_past_the_record_burst_and_default_does_not() -> None:
    from solvers.scaling.policy import Risk, with_risk

    base = MPCParams()
    assert with_risk(base, Risk.PLAIN) == base
    rng = np.random.default_rng(5)
    y = np.where(rng.random(180) < 0.08, rng.uniform(10.0, 20.0, 180), 1.0)  # sparse bursts, record < 20
    top = {}
    for risk in Risk:
        p = with_risk(base, risk)
        f = peak_forecast(y, bin_s=10.0, bins_per_step=3, steps=10, levels=p.levels, alpha=p.level_alpha,
                          hold_bins=6, tail_from=p.tail_from)
        top[risk] = max(f.quantile(p.levels[-1]))
    # the default's top level is the largest excess seen (over today's level); the fitted tail goes past it
    assert top[Risk.BURST_AVERSE] > max(top[Risk.PLAIN], float(y.max())) + 2.0


def test_a_surge_between_plans_is_answered_at_the_next_bin_not_the_next_interval() -> None:
    # a long re-planning interval; the load jumps from 2 to 40 req/s (1 to 8 replicas) right after a plan
    def run(replan: bool) -> list[int]:
        p = MPCParams(replica_rps=5.0, max_replicas=40, lead_time_s=60.0, interval_s=300.0, bin_s=15.0,
                      step_s=60.0, replan_on_surge=replan)
        state: object | None = None
        reqs, replicas, out = 0.0, 1, []
        for k in range(70):
            t = 15.0 * k
            d = mpc(ctx(t, int(reqs), replicas, state, load=2), params=p)
            state, replicas = d.state, d.desired_replicas
            out.append(replicas)
            reqs += (2.0 if t < 620.0 else 40.0) * 15.0
        return out

    fast, slow = run(True), run(False)
    assert fast[:43] == slow[:43]  # nothing changes before the surge
    before = fast[42]
    # the tick at 645 s closes the first bin of the new load: a re-plan there; without, the 900 s plan
    assert fast[43] > before and slow[43:60] == [before] * 17 and slow[60] > before
    assert fast[59] >= 8 and fast[59] > slow[59]


def test_busy_steps_get_a_high_quantile_row_and_quiet_steps_none() -> None:
    from solvers.scaling.policy import demand_levels

    rng = np.random.default_rng(3)
    p = MPCParams(replica_rps=5.0, bin_s=10.0, step_s=30.0, season_s=3600.0, season_bin_s=100.0,
                  busy_factor=1.25)

    def rows(level: float, busy_factor: float) -> tuple[tuple[float, ...], ...]:
        need = level + np.where(rng.random(120) < 0.05, rng.uniform(3.0, 8.0, 120), 0.0)  # rare spikes
        rate = need * p.replica_rps  # requests/s giving that need
        t = 10.0 * np.arange(121)
        total = np.concatenate([[0.0], np.cumsum(rate * 10.0)]).astype(int)
        st = MPCState(samples=tuple((float(a), int(b), 0, 0) for a, b in zip(t, total, strict=True)),
                      need=tuple(float(x) for x in need), season=(2.0,) * 20)  # a typical level of 2
        c = ScalingContext(now_s=1200.0, replicas=3, running=(0,) * 3, waiting=(0,) * 3,
                           kv_cache_usage_perc=(0.0,) * 3)
        return demand_levels(c, st, replace(p, busy_factor=busy_factor), steps=8)

    quiet, busy = rows(2.0, 1.25), rows(4.0, 1.25)
    assert len(quiet) == len(busy) == len(p.levels) + 1
    assert quiet[-1] == (0.0,) * 8  # at the typical level: no extra row
    # at twice the typical level every step buys past the default's top level (the tail beyond the spikes)
    assert all(b > d for b, d in zip(busy[-1], busy[-2], strict=True))
    assert len(rows(4.0, 0.0)) == len(p.levels)  # off: the default rows only
    # the policy plans with the extra row (a weight per row, else ScalingProblem refuses) and scales up
    state: object | None = None
    reqs, replicas = 0.0, 1
    for k in range(80):
        d = mpc(ctx(10.0 * k, int(reqs), replicas, state, load=2), params=replace(p, season_s=0.0))
        state, replicas = d.state, d.desired_replicas
        reqs += (5.0 if k < 60 else 15.0) * 10.0
    assert isinstance(state, MPCState) and state.plan is not None and replicas >= 3
    from solvers.scaling.policy import Risk, with_risk

    lf = with_risk(MPCParams(), Risk.LOAD_FOLLOWING)  # the preset: default rows, the busy row on
    assert lf.levels == MPCParams().levels and lf.weights == MPCParams().weights and lf.busy_factor > 0

"""MPC: CP-SAT never worse than greedy, lead times and bounds honoured, forecast quantiles, the policy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.autoscale.types import ScalingContext
from solvers.scaling.forecast import forecast_rate
from solvers.scaling.mpc import ScalingProblem, SolveParams, SolveStatus, evaluate, greedy_plan, solve
from solvers.scaling.policy import MPCParams, MPCState, mpc
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

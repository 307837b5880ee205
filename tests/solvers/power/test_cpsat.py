"""The CP-SAT row model on hand-checkable problems: optimum, cuts, greedy agreement, infeasibility."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.power.cpsat import evaluate, greedy, solve, upper_bound
from solvers.power.dynamo import dynamo_servers_for_cap
from solvers.power.problem import PowerScenario, SolveParams, nameplate_servers
from solvers.power.testing import toy_problem
from solvers.status import SolveStatus
from traces.errors import InputError

PARAMS = SolveParams(time_limit_s=10, workers=1, seed=0)


def test_toy_optimum_and_its_reasons() -> None:
    p = toy_problem()
    plan = solve(p, params=PARAMS)
    assert plan.status is SolveStatus.OPTIMAL and plan.servers == 10 and plan.bound == 10
    assert plan.hp_servers >= 5  # min_hp_share 0.5
    assert evaluate(p, plan.hp_servers, plan.lp_servers, plan.t1, plan.t2).feasible
    # one more server brakes at the spike whatever the thresholds
    assert all(evaluate(p, 6, 5, a, b).brake_periods > 0 for a, b in p.threshold_pairs())
    assert plan.capped_fraction <= 0.01


def test_tighter_chance_constraint_means_fewer_servers() -> None:
    p = toy_problem(max_capped_fraction=0.0)
    plan = solve(p, params=PARAMS)
    # no period may reach t1: 10 x 95 W = 0.95 B needs t1 = 0.96; 11 x 95 W brakes at the spike
    assert plan.servers == 10 and plan.t1 == 0.96 and plan.capped_fraction == 0.0
    assert solve(replace(p, t1_grid=(0.8, 0.85, 0.88, 0.9)), params=PARAMS).servers == 9


def test_cuts_from_verification_are_respected() -> None:
    p = toy_problem()
    cuts = {pair: 8 for pair in p.threshold_pairs()}
    plan = solve(p, params=PARAMS, cuts=cuts)
    assert plan.servers == 8
    assert greedy(p, cuts=cuts) is not None


def test_nothing_fits_is_an_input_error() -> None:
    p = toy_problem(budget_w=50.0, min_servers=1)
    with pytest.raises(InputError, match="fits"):
        solve(p, params=PARAMS)
    assert greedy(p) is None


def test_bad_problems_are_input_errors() -> None:
    with pytest.raises(InputError):
        toy_problem(t1_grid=(0.99,), t2_grid=(0.95,))
    with pytest.raises(InputError):
        toy_problem(budget_w=0.0)
    with pytest.raises(InputError):
        PowerScenario("x", np.zeros(3), np.zeros(4))


def test_baseline_rules() -> None:
    assert nameplate_servers(284_000, gpus_per_server=8, tdp_w=700, base_w=1500) == 40
    assert dynamo_servers_for_cap(284_000, gpus_per_server=8, cap_w=490, base_w=1500, headroom=1.0) == 52
    with pytest.raises(InputError):
        dynamo_servers_for_cap(1.0, gpus_per_server=8, cap_w=490, base_w=0, headroom=1.5)


@settings(max_examples=15, deadline=None)
@given(
    level=st.floats(40.0, 90.0),
    spikes=st.lists(st.integers(0, 99), max_size=4),
    spike=st.floats(95.0, 140.0),
    eps=st.sampled_from([0.0, 0.01, 0.05]),
    share=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_cpsat_never_worse_than_greedy_and_always_feasible(
    level: float, spikes: list[int], spike: float, eps: float, share: float
) -> None:
    w = np.full(100, level)
    w[spikes] = spike
    p = toy_problem(scenarios=(PowerScenario("h", w, w.copy()),), max_capped_fraction=eps, min_hp_share=share)
    g = greedy(p)
    if g is None:
        with pytest.raises(InputError):
            solve(p, params=PARAMS)
        return
    plan = solve(p, params=PARAMS)
    assert plan.servers >= g.servers
    assert plan.servers <= upper_bound(p)
    assert evaluate(p, plan.hp_servers, plan.lp_servers, plan.t1, plan.t2).feasible


def test_lp_servers_absorb_a_spike_that_an_all_hp_row_cannot() -> None:
    # 12 servers at 70 W (840 W) with one 84 W period (1008 W): over the brake unless the LP level acts in
    # time: a 78 W period before the spike (936 W >= t1) locks LP servers first
    w = np.full(200, 70.0)
    w[99], w[100] = 78.0, 84.0
    base = toy_problem(scenarios=(PowerScenario("ramp", w, w.copy()),), max_servers=12, min_servers=12)
    with_lp = replace(base, min_hp_share=0.5)
    all_hp = replace(base, min_hp_share=1.0)
    assert solve(with_lp, params=PARAMS).servers == 12
    with pytest.raises(InputError):
        solve(all_hp, params=PARAMS)

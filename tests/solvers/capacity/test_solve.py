"""The CP-SAT sizing model against exhaustive enumeration, the greedy baseline and its own limits."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from solvers.capacity import (
    CapacityProblem,
    Config,
    Disaggregation,
    Role,
    SolveParams,
    SolveStatus,
    Window,
    exhaustive,
    solve,
)
from solvers.capacity.greedy import dwells, greedy
from solvers.capacity.units import COST_SCALE, Units

PARAMS = SolveParams(max_time_in_seconds=10.0, num_workers=2, random_seed=0)


def _random_problem(seed: int) -> CapacityProblem:
    rng = random.Random(seed)
    roles = [Role.AGGREGATED, Role.AGGREGATED, Role.PREFILL, Role.DECODE]
    configs = []
    for i, role in enumerate(roles[: rng.choice([2, 3, 4])]):
        gpu = rng.choice(["G1", "G2"])
        configs.append(Config(key=f"c{i}", gpu=gpu, role=role, gpus=rng.choice([1, 2]),
                              goodput_rps=round(rng.uniform(2.0, 9.0), 2),
                              price_per_gpu_hour={"G1": 1.0, "G2": 1.7}[gpu], power_w=rng.choice([300, 700])))
    windows = tuple(Window(start_s=3600.0 * k, duration_s=3600.0, demand_rps=round(rng.uniform(1.0, 14.0), 1))
                    for k in range(2))
    inventory = (("G1", rng.choice([2, 4, 6])),) if rng.random() < 0.6 else ()
    power = float(rng.choice([2000, 3500])) if rng.random() < 0.5 else None
    return CapacityProblem(configs=tuple(configs), windows=windows, inventory=inventory, power_budget_w=power,
                           disaggregation=rng.choice(list(Disaggregation)),
                           max_configs_per_role=rng.choice([1, 2]), max_pd_ratio=rng.choice([1.0, 2.0, 8.0]))


@pytest.mark.parametrize("seed", range(25))
def test_cpsat_matches_exhaustive_enumeration(seed: int) -> None:
    problem = _random_problem(seed)
    best, _ = exhaustive(problem)
    plan = solve(problem, params=PARAMS)
    if best is None:
        assert not plan.feasible and plan.status is SolveStatus.INFEASIBLE
        return
    assert plan.status is SolveStatus.OPTIMAL
    assert plan.objective_usd == pytest.approx(best, abs=1e-9)
    assert plan.bound_usd == pytest.approx(best, abs=1e-9)
    assert plan.gap == 0.0


def test_some_random_instances_are_feasible_and_some_not() -> None:
    """Guard: the exhaustive comparison above exercises both outcomes."""
    results = [exhaustive(_random_problem(s))[0] for s in range(25)]
    assert any(r is None for r in results) and sum(r is not None for r in results) >= 12


@pytest.mark.parametrize("seed", range(25))
def test_cpsat_is_never_worse_than_greedy(seed: int) -> None:
    problem = _random_problem(seed)
    units = Units.of(problem)
    base = greedy(problem, units)
    plan = solve(problem, params=PARAMS)
    if base is not None:
        greedy_usd = units.cost(base) / COST_SCALE
        assert plan.feasible and plan.greedy_usd == pytest.approx(greedy_usd)
        assert plan.objective_usd is not None and plan.objective_usd <= greedy_usd + 1e-9


def _two_gpu_problem(**kw: object) -> CapacityProblem:
    cheap = Config("cheap", "H100-SXM", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=2.0,
                   power_w=700)
    dear = Config("dear", "H200-SXM", Role.AGGREGATED, gpus=1, goodput_rps=12.0, price_per_gpu_hour=3.0,
                  power_w=650)
    windows = (Window(0.0, 1800.0, 38.0), Window(1800.0, 1800.0, 9.0))
    return CapacityProblem(configs=(cheap, dear), windows=windows, **kw)  # type: ignore[arg-type]


def test_unconstrained_plan_uses_the_cheapest_config_per_request() -> None:
    plan = solve(_two_gpu_problem(), params=PARAMS)
    assert [c.key for c in plan.configs] == ["cheap"]
    assert plan.replicas(0) == {"cheap": 4} and plan.replicas(1) == {"cheap": 1}
    assert plan.objective_usd == pytest.approx(4 * 2.0 * 0.5 + 1 * 2.0 * 0.5)
    assert not any(b.tight for b in plan.bindings)


def test_inventory_binds_and_forces_the_second_gpu_type() -> None:
    problem = _two_gpu_problem(inventory=(("H100-SXM", 2),))
    plan = solve(problem, params=PARAMS)
    assert plan.replicas(0) == {"cheap": 2, "dear": 2}  # 2x10 + 2x12 >= 38
    inv = next(b for b in plan.bindings if b.name == "inventory H100-SXM")
    assert inv.tight and inv.used == 2 and inv.window == 0


def test_power_budget_is_respected_and_reported() -> None:
    problem = _two_gpu_problem(power_budget_w=2700.0)
    plan = solve(problem, params=PARAMS)
    assert plan.feasible
    for w in range(2):
        watts = sum(n * {"cheap": 700, "dear": 650}[k] for k, n in plan.replicas(w).items())
        assert watts <= 2700
    # 4 cheap replicas (2800 W) no longer fit the peak window: the H200s take over part of it
    assert "dear" in plan.replicas(0)
    assert next(b for b in plan.bindings if b.name == "power budget").tight


def test_impossible_limits_are_infeasible_not_an_exception() -> None:
    plan = solve(_two_gpu_problem(inventory=(("H100-SXM", 1), ("H200-SXM", 1))), params=PARAMS)
    assert plan.status is SolveStatus.INFEASIBLE and not plan.feasible and plan.allocations == ()


def _pd_problem(mode: Disaggregation, ratio: float = 8.0) -> CapacityProblem:
    agg = Config("agg", "G", Role.AGGREGATED, gpus=1, goodput_rps=4.0, price_per_gpu_hour=1.0, power_w=1)
    pre = Config("pre", "G", Role.PREFILL, gpus=1, goodput_rps=30.0, price_per_gpu_hour=1.0, power_w=1)
    dec = Config("dec", "G", Role.DECODE, gpus=1, goodput_rps=6.0, price_per_gpu_hour=1.0, power_w=1)
    return CapacityProblem(configs=(agg, pre, dec), windows=(Window(0.0, 3600.0, 24.0),), disaggregation=mode,
                           max_pd_ratio=ratio)


def test_disaggregation_is_chosen_when_cheaper_and_obeys_the_mode() -> None:
    auto = solve(_pd_problem(Disaggregation.AUTO), params=PARAMS)
    assert auto.disaggregated and auto.replicas(0) == {"pre": 1, "dec": 4}
    off = solve(_pd_problem(Disaggregation.OFF), params=PARAMS)
    assert not off.disaggregated and off.replicas(0) == {"agg": 6}


def test_pd_ratio_limit_adds_prefill_replicas() -> None:
    plan = solve(_pd_problem(Disaggregation.ON, ratio=2.0), params=PARAMS)
    assert plan.replicas(0) == {"pre": 2, "dec": 4}
    assert next(b for b in plan.bindings if b.name == "P/D ratio").tight


def test_greedy_only_mode_reports_greedy_status() -> None:
    plan = solve(_two_gpu_problem(), params=SolveParams(use_cpsat=False))
    assert plan.status is SolveStatus.GREEDY and plan.solver == "greedy"
    assert plan.objective_usd == plan.greedy_usd


def test_bad_problem_is_an_input_error() -> None:
    from traces.errors import InputError

    with pytest.raises(InputError, match="power budget"):
        _two_gpu_problem(power_budget_w=-1.0)
    with pytest.raises(InputError, match="no demand windows"):
        CapacityProblem(configs=(), windows=())


def _coupled_problem(seed: int) -> CapacityProblem:
    """A random instance whose windows are coupled: replicas cost time to start, and may have to dwell."""
    rng = random.Random(1000 + seed)
    base = _random_problem(seed)
    configs = tuple(replace(c, start_s=rng.choice([0.0, 600.0, 1800.0])) for c in base.configs)
    windows = tuple(Window(start_s=3600.0 * k, duration_s=3600.0, demand_rps=round(rng.uniform(1.0, 14.0), 1))
                    for k in range(3))
    return replace(base, configs=configs, windows=windows, min_dwell_windows=rng.choice([1, 2]))


@pytest.mark.parametrize("seed", range(12))
def test_cpsat_matches_exhaustive_with_start_costs_and_dwell(seed: int) -> None:
    problem = _coupled_problem(seed)
    best, _ = exhaustive(problem)
    plan = solve(problem, params=PARAMS)
    if best is None:
        assert not plan.feasible
        return
    assert plan.status is SolveStatus.OPTIMAL
    assert plan.objective_usd == pytest.approx(best, abs=1e-9)


def test_some_coupled_instances_pay_for_starts_or_dwell() -> None:
    """Guard: the coupled comparison above sees plans whose windows differ and whose starts cost."""
    costly = 0
    for s in range(12):
        problem = _coupled_problem(s)
        plan = solve(problem, params=PARAMS)
        units = Units.of(problem)
        if plan.feasible:
            idx = {c.key: i for i, c in enumerate(problem.configs)}
            x = {(idx[a.config], a.window): a.replicas for a in plan.allocations}
            costly += any(units.start_cost[i] * n for i, row in enumerate(units.started(x)) for n in row)
    assert costly >= 3


def _alternating_problem(start_s: float) -> CapacityProblem:
    """Two GPU types whose rounding favours each in every other 5-minute window (by 5 %): 40 req/s takes 4
    A100 replicas ($6/h) or 4 MI300X ($7.6/h); 39 req/s 4 A100 ($6/h) or 3 MI300X ($5.7/h)."""
    a = Config("A100", "A100", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.5, power_w=400,
               start_s=start_s)
    m = Config("MI300X", "MI300X", Role.AGGREGATED, gpus=1, goodput_rps=13.0, price_per_gpu_hour=1.9,
               power_w=700, start_s=start_s)
    windows = tuple(Window(300.0 * k, 300.0, d) for k, d in enumerate([40.0, 39.0, 40.0, 39.0]))
    return CapacityProblem(configs=(a, m), windows=windows)


def test_start_costs_stop_a_plan_switching_gpu_types_to_save_a_little() -> None:
    free = solve(_alternating_problem(0.0), params=PARAMS)
    paid = solve(_alternating_problem(104.0), params=PARAMS)  # an 8B replica from zero (Ray Serve LLM docs)
    switches = {tuple(sorted(free.replicas(w))) for w in range(4)}
    assert len(switches) == 2, "without start costs the cheapest plan alternates GPU types"
    assert len({tuple(sorted(paid.replicas(w))) for w in range(4)}) == 1, paid.allocations
    assert paid.objective_usd is not None and free.objective_usd is not None
    assert paid.objective_usd > free.objective_usd


def test_minimum_dwell_keeps_started_replicas() -> None:
    c = Config("c", "G1", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.0, power_w=300)
    windows = tuple(Window(3600.0 * k, 3600.0, d) for k, d in enumerate([10.0, 30.0, 10.0, 10.0]))
    loose = solve(CapacityProblem(configs=(c,), windows=windows), params=PARAMS)
    held = solve(CapacityProblem(configs=(c,), windows=windows, min_dwell_windows=2), params=PARAMS)
    assert [loose.replicas(w)["c"] for w in range(4)] == [1, 3, 1, 1]
    # the two replicas started for the peak run two windows (the one that was running may stop)
    assert [held.replicas(w)["c"] for w in range(4)] == [1, 3, 2, 1]
    problem = CapacityProblem(configs=(c,), windows=windows, min_dwell_windows=2)
    units = Units.of(problem)
    base = greedy(problem, units)  # the fallback holds each window's count for the dwell: feasible, dearer
    assert base == {(0, 0): 1, (0, 1): 3, (0, 2): 3, (0, 3): 1} and dwells(problem, units, base)
    assert not dwells(problem, units, {(0, 0): 1, (0, 1): 3, (0, 2): 1, (0, 3): 1})

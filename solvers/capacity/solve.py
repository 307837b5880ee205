"""``solve(problem, params=...) -> CapacityPlan``: greedy first, CP-SAT on top, status as data.

>>> from solvers.capacity.problem import CapacityProblem, Config, Role, SolveParams, Window
>>> cheap = Config("a", "G1", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.0, power_w=500)
>>> big = Config("b", "G2", Role.AGGREGATED, gpus=2, goodput_rps=30.0, price_per_gpu_hour=1.2, power_w=900)
>>> p = CapacityProblem(configs=(cheap, big), windows=(Window(0, 3600, 25.0), Window(3600, 3600, 8.0)),
...                     inventory=(("G2", 0),))
>>> plan = solve(p, params=SolveParams(max_time_in_seconds=5))
>>> plan.status.value, plan.objective_usd, plan.replicas(0)
('OPTIMAL', 4.0, {'a': 3})
"""

from __future__ import annotations

import time

from solvers.capacity.cpsat import solve_model
from solvers.capacity.greedy import Assignment, greedy
from solvers.capacity.problem import (
    Allocation,
    Binding,
    CapacityPlan,
    CapacityProblem,
    Disaggregation,
    Role,
    SolveParams,
)
from solvers.capacity.units import COST_SCALE, Units
from solvers.status import SolveStatus


def solve(problem: CapacityProblem, *, params: SolveParams | None = None) -> CapacityPlan:
    """Choose configurations and replicas per window at minimum cost (see :mod:`solvers.capacity.cpsat`).

    The greedy baseline runs first; CP-SAT starts from it as a hint. When CP-SAT returns no solution
    within its limit, the greedy plan is the answer (``solver == "greedy"``, CP-SAT's status kept).

    Args:
        problem: configurations, demand windows and limits.
        params: time limit, workers and seed for CP-SAT.

    Returns:
        The plan, with status, objective, bound, greedy cost and wall time.
    """
    params = params if params is not None else SolveParams()
    t0 = time.perf_counter()
    units = Units.of(problem)
    base = greedy(problem, units) if problem.configs else None
    greedy_usd = None if base is None else units.cost(base) / COST_SCALE
    if not problem.configs:
        return _plan(problem, None, SolveStatus.INFEASIBLE, "greedy", None, None, t0,
                     note="no configuration meets the SLO")
    if not params.use_cpsat:
        status = SolveStatus.GREEDY if base is not None else SolveStatus.INFEASIBLE
        return _plan(problem, base, status, "greedy", greedy_usd, None, t0,
                     note="" if base is not None else "greedy found no plan within the limits")
    res = solve_model(problem, units, params=params, hint=base)
    if res.assignment is not None:
        return _plan(problem, res.assignment, res.status, "cp-sat", greedy_usd, res.bound_usd, t0)
    if base is not None:
        return _plan(problem, base, res.status, "greedy", greedy_usd, res.bound_usd, t0,
                     note=f"CP-SAT returned {res.status.value} in {res.wall_s:.1f} s; greedy plan used")
    why = (infeasibility(problem) if res.status is SolveStatus.INFEASIBLE
           else f"CP-SAT returned {res.status.value} and greedy found no plan")
    return _plan(problem, None, res.status, "cp-sat", None, res.bound_usd, t0, note=why)


def _plan(problem: CapacityProblem, assignment: Assignment | None, status: SolveStatus, solver: str,
          greedy_usd: float | None, bound_usd: float | None, t0: float, *, note: str = "") -> CapacityPlan:
    units = Units.of(problem)
    if assignment is None:
        return CapacityPlan(status=status, solver=solver, objective_usd=None, bound_usd=bound_usd,
                            greedy_usd=greedy_usd, wall_s=time.perf_counter() - t0, allocations=(),
                            configs=(), note=note, windows=problem.windows)
    allocs = tuple(Allocation(window=w, config=problem.configs[i].key, replicas=n)
                   for (i, w), n in sorted(assignment.items(), key=lambda kv: (kv[0][1], kv[0][0])) if n > 0)
    used = sorted({i for (i, _w), n in assignment.items() if n > 0})
    objective = units.cost(assignment) / COST_SCALE
    if status is SolveStatus.OPTIMAL:
        bound_usd = objective
    return CapacityPlan(status=status, solver=solver, objective_usd=objective, bound_usd=bound_usd,
                        greedy_usd=greedy_usd, wall_s=time.perf_counter() - t0, allocations=allocs,
                        configs=tuple(problem.configs[i] for i in used),
                        bindings=bindings(problem, assignment), note=note, windows=problem.windows)


def bindings(problem: CapacityProblem, assignment: Assignment) -> tuple[Binding, ...]:
    """How close the plan runs to every limit, tightest first.

    A limit is *tight* when no further replica of any configuration it constrains would fit: then it is
    what stops the plan from using more of the cheaper resource.
    """
    units = Units.of(problem)
    cfgs = problem.configs
    out: list[Binding] = []
    nw = len(problem.windows)
    for t in sorted({c.gpu for c in cfgs}):
        cap = problem.inventory_of(t)
        if cap is None:
            continue
        smallest = min(c.gpus for c in cfgs if c.gpu == t)
        used = [sum(cfgs[i].gpus * n for (i, w), n in assignment.items() if w == ww and cfgs[i].gpu == t)
                for ww in range(nw)]
        w = max(range(nw), key=lambda k: used[k])
        out.append(Binding(name=f"inventory {t}", window=w, used=float(used[w]), limit=float(cap),
                           tight=cap - used[w] < smallest))
    if units.power_budget is not None:
        smallest_w = min(units.power)
        watts = [sum(units.power[i] * n for (i, w), n in assignment.items() if w == ww) for ww in range(nw)]
        w = max(range(nw), key=lambda k: watts[k])
        out.append(Binding(name="power budget", window=w, used=float(watts[w]),
                           limit=float(units.power_budget), tight=units.power_budget - watts[w] < smallest_w))
    for r in Role:
        n_used = len({i for (i, _w), n in assignment.items() if n > 0 and cfgs[i].role is r})
        n_avail = sum(1 for c in cfgs if c.role is r)
        if n_used:
            out.append(Binding(name=f"configs per role ({r.value})", window=-1, used=float(n_used),
                               limit=float(problem.config_cap(r)),
                               tight=n_used >= problem.config_cap(r) and n_avail > n_used))
    pre = [sum(n for (i, w), n in assignment.items() if w == ww and cfgs[i].role is Role.PREFILL)
           for ww in range(nw)]
    dec = [sum(n for (i, w), n in assignment.items() if w == ww and cfgs[i].role is Role.DECODE)
           for ww in range(nw)]
    if any(pre) and any(dec):
        ratios = [max(p / d, d / p) for p, d in zip(pre, dec, strict=True) if p and d]
        k = max(range(len(ratios)), key=lambda j: ratios[j])
        out.append(Binding(name="P/D ratio", window=k, used=ratios[k], limit=problem.max_pd_ratio,
                           tight=ratios[k] >= problem.max_pd_ratio - 1e-9))
    return tuple(sorted(out, key=lambda b: (not b.tight, -(b.used / b.limit if b.limit else 0.0))))


def infeasibility(problem: CapacityProblem) -> str:
    """Why no plan exists, naming only what the problem holds: a phase no candidate can serve, then the
    limits actually set (inventory, power budget, a required prefill/decode split) and the per-role cap.

    >>> from solvers.capacity.problem import CapacityProblem, Config, Role, Window
    >>> d = Config("d", "G1", Role.DECODE, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.0, power_w=5)
    >>> infeasibility(CapacityProblem(configs=(d,), windows=(Window(0, 3600, 25.0),)))
    'no candidate serves prefill within the SLO: only decode candidates passed scoring'
    """
    roles = {c.role for c in problem.configs}
    if Role.AGGREGATED not in roles and not {Role.PREFILL, Role.DECODE} <= roles:
        missing = " or ".join(r.value for r in (Role.PREFILL, Role.DECODE) if r not in roles)
        passed = ", ".join(sorted(r.value for r in roles)) or "no"
        return f"no candidate serves {missing} within the SLO: only {passed} candidates passed scoring"
    limits = []
    if problem.inventory:
        limits.append("the inventory (" + ", ".join(f"{g} <= {n}" for g, n in problem.inventory) + ")")
    if problem.power_budget_w is not None:
        limits.append(f"the power budget ({problem.power_budget_w / 1e3:,.1f} kW)")
    if problem.disaggregation is Disaggregation.ON:
        limits.append(f"a prefill/decode split with a replica ratio within 1:{problem.max_pd_ratio:g}")
    split = (f" ({problem.config_cap(Role.PREFILL)} prefill and decode in a split plan)"
             if problem.disaggregation is not Disaggregation.OFF
             and problem.config_cap(Role.PREFILL) < problem.max_configs_per_role else "")
    limits.append(f"at most {problem.max_configs_per_role} configurations per role{split}")
    return "no plan satisfies " + " and ".join(limits)


def explain(problem: CapacityProblem, plan: CapacityPlan) -> str:
    """One sentence on why the plan is what it is: the binding constraints, or cost alone.

    >>> from solvers.capacity.problem import CapacityProblem, Config, Role, Window
    >>> c = Config("a", "G1", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.0, power_w=5)
    >>> p = CapacityProblem(configs=(c,), windows=(Window(0, 3600, 25.0),))
    >>> explain(p, solve(p))
    'cost: a is the cheapest configuration per request; no inventory or power limit binds'
    """
    if not plan.feasible:
        return plan.note or "no feasible plan"
    agg = [c for c in problem.configs if c.role is Role.AGGREGATED]
    best = min(agg, key=lambda c: c.cost_per_goodput) if agg else None
    def fmt(b: Binding) -> str:
        where = f" in window {b.window}" if b.window >= 0 else ""
        return f"{b.name} ({b.used:,.0f}/{b.limit:,.0f}{where})"

    resources = [b for b in plan.bindings
                 if b.tight and (b.name.startswith("inventory") or b.name == "power budget")]
    others = [b for b in plan.bindings if b.tight and b not in resources]
    also = f"; at its limit: {', '.join(fmt(b) for b in others)}" if others else ""
    if resources:
        return "binding: " + ", ".join(fmt(b) for b in resources) + also
    if best is not None and [c.key for c in plan.configs] == [best.key]:
        return (f"cost: {best.key} is the cheapest configuration per request; "
                "no inventory or power limit binds" + also)
    return ("cost: this mix is cheapest once replica counts are rounded to whole replicas per window; "
            "no inventory or power limit binds" + also)

"""CP-SAT model: which configurations to deploy and how many replicas of each in every window.

Notation:

- configurations ``c`` (rows of the scored candidate table) with role ``r(c)`` in {A, P, D} (aggregated,
  prefill, decode), GPU type ``t(c)``, GPUs per replica ``n_c``, goodput per replica ``g_c`` (req/s
  within the SLO), power per replica ``p_c`` and price per replica-hour ``π_c``;
- windows ``w`` of ``h_w`` hours and demand ``D_w`` req/s;
- inventory ``I_t`` GPUs of type ``t``, power budget ``P`` watts, at most ``K`` configurations per role,
  P/D replica ratio within ``[1/R, R]``;
- start cost ``σ_c = π_c · start_s / 3600`` per replica started, minimum dwell ``M`` windows; windows form
  a cycle (``w-1`` of the first window is the last).

Variables: ``x[c,w] ∈ ℤ≥0`` replicas; ``s[c,w] ∈ ℤ≥0`` replicas started; ``u[c] ∈ {0,1}`` configuration
deployed; ``y ∈ {0,1}`` the plan is disaggregated.

Objective::

    min  Σ_w h_w Σ_c π_c x[c,w]  +  Σ_w Σ_c σ_c s[c,w]

Constraints::

    Σ_{c: r(c)∈{A,P}} g_c x[c,w] ≥ D_w            ∀w   prefill of every request is served
    Σ_{c: r(c)∈{A,D}} g_c x[c,w] ≥ D_w            ∀w   decode of every request is served
    Σ_{c: t(c)=t} n_c x[c,w] ≤ I_t                ∀t,w GPU inventory
    Σ_c p_c x[c,w] ≤ P                            ∀w   power budget
    x[c,w] ≤ U_c u[c]                             ∀c,w replicas only of deployed configurations
    Σ_{c: r(c)=r} u[c] ≤ K_r                      ∀r   few deployments to operate (K_P = K_D = 1: xPyD)
    u[c] ≤ y (c ∈ P∪D),  u[c] ≤ 1 - y (c ∈ A)          a plan is aggregated or disaggregated
    Σ_P x[c,w] ≤ R Σ_D x[c,w],  Σ_D x ≤ R Σ_P x    ∀w   P/D ratio (xPyD deployable)
    s[c,w] ≥ x[c,w] - x[c,w-1]                     ∀c,w replicas started (paid while they load)
    x[c,w] ≥ Σ_{k<M} s[c,w-k]                      ∀c,w a started replica runs M windows at least

An aggregated replica serves both phases of its requests, so it counts in both coverage rows; with
``y`` fixed to 0 the two rows coincide.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from solvers.budget import set_budget
from solvers.capacity.greedy import Assignment
from solvers.capacity.problem import CapacityProblem, Disaggregation, Role, SolveParams
from solvers.capacity.units import COST_SCALE, Units
from solvers.status import SolveStatus, from_cpsat


@dataclass(frozen=True)
class ModelResult:
    """CP-SAT's answer (``assignment`` None when it found no solution)."""

    assignment: Assignment | None
    status: SolveStatus
    objective_usd: float | None
    bound_usd: float | None
    wall_s: float


def replica_bound(problem: CapacityProblem, units: Units, i: int) -> int:
    """``U_c``: replicas of config ``i`` any window could want (coverage, times R for the P/D ratio),
    capped by its GPU type's inventory and the power budget."""
    dmax = max(units.demand)
    ub = max(1, math.ceil(dmax / units.goodput[i]))
    if problem.configs[i].role is not Role.AGGREGATED:
        ub = max(ub, math.ceil(problem.max_pd_ratio) * max(
            (math.ceil(dmax / units.goodput[j]) for j, c in enumerate(problem.configs)
             if c.role not in (Role.AGGREGATED, problem.configs[i].role)), default=1))
    c = problem.configs[i]
    inv = problem.inventory_of(c.gpu)
    if inv is not None:
        ub = min(ub, inv // c.gpus)
    if units.power_budget is not None and units.power[i] > 0:
        ub = min(ub, units.power_budget // units.power[i])
    return max(ub, 0)


def _window_floor(problem: CapacityProblem, units: Units, w: int) -> int:
    """A lower bound on window ``w``'s cost: demand times the cheapest cost per unit of goodput, taking
    the cheaper of aggregated serving and prefill-plus-decode serving (fractional replicas allowed)."""
    d = units.demand[w]
    if d <= 0:
        return 0

    def cheapest(role: Role) -> float:
        rates = [units.window_cost[i][w] / units.goodput[i] for i, c in enumerate(problem.configs)
                 if c.role is role]
        return min(rates) if rates else math.inf

    per = min(cheapest(Role.AGGREGATED), cheapest(Role.PREFILL) + cheapest(Role.DECODE))
    return 0 if not math.isfinite(per) else math.floor(d * per * (1 - 1e-9))


def solve_model(problem: CapacityProblem, units: Units, *, params: SolveParams,
                hint: Assignment | None) -> ModelResult:
    """Build and solve the model above (section order as in the OR-Tools samples)."""
    t0 = time.perf_counter()
    # --- Data
    cfgs = problem.configs
    nc, nw = len(cfgs), len(problem.windows)
    ub = [replica_bound(problem, units, i) for i in range(nc)]
    roles = {r: [i for i, c in enumerate(cfgs) if c.role is r] for r in Role}
    gpu_types = sorted({c.gpu for c in cfgs})

    # --- Model
    model = cp_model.CpModel()

    # --- Variables
    x = {(i, w): model.new_int_var(0, ub[i], f"x[{i},{w}]") for i in range(nc) for w in range(nw)}
    u = [model.new_bool_var(f"u[{i}]") for i in range(nc)]
    y = model.new_bool_var("disaggregated")
    # starts matter when they cost something or must dwell; a single window starts nothing (a cycle of one)
    churn = [i for i in range(nc) if nw > 1 and (units.start_cost[i] > 0 or problem.min_dwell_windows > 1)]
    s = {(i, w): model.new_int_var(0, ub[i], f"s[{i},{w}]") for i in churn for w in range(nw)}

    # --- Constraints
    for w in range(nw):
        # Every request's prefill is served within the SLO: aggregated plus prefill goodput covers demand.
        model.add(sum(units.goodput[i] * x[i, w] for i in roles[Role.AGGREGATED] + roles[Role.PREFILL])
                  >= units.demand[w])
        # Every request's decode is served within the SLO: aggregated plus decode goodput covers demand.
        model.add(sum(units.goodput[i] * x[i, w] for i in roles[Role.AGGREGATED] + roles[Role.DECODE])
                  >= units.demand[w])
        # GPU inventory: the replicas on one GPU type never need more GPUs than we own.
        for t in gpu_types:
            cap = problem.inventory_of(t)
            if cap is not None:
                model.add(sum(cfgs[i].gpus * x[i, w] for i in range(nc) if cfgs[i].gpu == t) <= cap)
        # Power budget: the fleet's draw at its planned operating points stays under the cap.
        if units.power_budget is not None:
            model.add(sum(units.power[i] * x[i, w] for i in range(nc)) <= units.power_budget)
        # P/D ratio: prefill and decode pools stay within R of each other (deployable xPyD groups).
        if roles[Role.PREFILL] and roles[Role.DECODE]:
            sp = sum(x[i, w] for i in roles[Role.PREFILL])
            sd = sum(x[i, w] for i in roles[Role.DECODE])
            ratio = round(problem.max_pd_ratio * 1000)
            model.add(sp * 1000 <= sd * ratio)
            model.add(sd * 1000 <= sp * ratio)
    # Replicas exist only of deployed configurations.
    for i in range(nc):
        for w in range(nw):
            model.add(x[i, w] <= ub[i] * u[i])
    # Replicas started: what a window adds over the one before it (the first window follows the last).
    dwell = min(problem.min_dwell_windows, nw)
    for i in churn:
        for w in range(nw):
            model.add(s[i, w] >= x[i, w] - x[i, (w - 1) % nw])
            # Minimum dwell: the replicas started in the last M windows are all still running.
            if dwell > 1:
                model.add(x[i, w] >= sum(s[i, (w - k) % nw] for k in range(dwell)))
    # Few deployments to operate: at most K configurations per role (one prefill and one decode: xPyD).
    for role in Role:
        if roles[role]:
            model.add(sum(u[i] for i in roles[role]) <= problem.config_cap(role))
    # A plan is either aggregated or disaggregated, as the user allows.
    for i in roles[Role.PREFILL] + roles[Role.DECODE]:
        model.add(u[i] <= y)
    for i in roles[Role.AGGREGATED]:
        model.add(u[i] <= 1 - y)
    if problem.disaggregation is Disaggregation.OFF:
        model.add(y == 0)
    elif problem.disaggregation is Disaggregation.ON:
        model.add(y == 1)

    # Redundant cut (tightens the bound): a window costs at least its demand at the cheapest price per
    # unit of goodput of each phase's cheapest way to serve it.
    # Each window's cost is its own variable so that the floor propagates to the objective's bound.
    top = sum(units.window_cost[i][w] * ub[i] for i in range(nc) for w in range(nw)) + 1
    spend = []
    for w in range(nw):
        cw = model.new_int_var(_window_floor(problem, units, w), top, f"cost[{w}]")
        model.add(cw == sum(units.window_cost[i][w] * x[i, w] for i in range(nc)))
        spend.append(cw)

    # --- Objective: GPU cost over all windows, plus the GPU time replicas spend starting.
    model.minimize(sum(spend) + sum(units.start_cost[i] * v for (i, _w), v in s.items()))

    # --- Hint: the greedy plan (a feasible point in the same units).
    if hint is not None:
        used = {i for i, _ in hint}
        for (i, w), var in x.items():
            model.add_hint(var, min(hint.get((i, w), 0), ub[i]))
        started = units.started(hint)
        for (i, w), var in s.items():
            model.add_hint(var, min(started[i][w], ub[i]))
        for i in range(nc):
            model.add_hint(u[i], i in used)
        model.add_hint(y, any(cfgs[i].role is not Role.AGGREGATED for i in used))

    # --- Solve
    solver = cp_model.CpSolver()
    set_budget(solver, params.max_time_in_seconds, params.num_workers, params.random_seed)
    solver.parameters.linearization_level = 2
    # No probing: on the fleet-day problem (48 configurations x 96 windows with start variables) probing
    # took 3.3 GB and left a 22 % gap at the limit; without it one worker proves the optimum (16 % cheaper)
    # in 0.3 GB (measured 2026-12-07, docs in the session note).
    solver.parameters.cp_model_probing_level = 0
    code = solver.solve(model)
    status = from_cpsat(code)
    wall = time.perf_counter() - t0

    # --- Read the solution
    if status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        assignment = {k: int(solver.value(v)) for k, v in x.items() if solver.value(v) > 0}
        return ModelResult(assignment=assignment, status=status,
                           objective_usd=units.cost(assignment) / COST_SCALE,
                           bound_usd=solver.best_objective_bound / COST_SCALE, wall_s=wall)
    bound = solver.best_objective_bound / COST_SCALE if status is SolveStatus.UNKNOWN else None
    return ModelResult(assignment=None, status=status, objective_usd=None, bound_usd=bound, wall_s=wall)

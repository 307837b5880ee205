"""Model-predictive scaling: choose replica starts and stops over a horizon, CP-SAT.

Notations (steps ``k = 0..K-1`` of ``step_s`` seconds; a start at ``k`` is ready at ``k + L``):

* ``u_k``  replicas started at step ``k`` (integer, ``<= max_up``);
* ``v_k``  ready replicas stopped at step ``k`` (integer, ``<= max_down``);
* ``y_k``  ready replicas at step ``k``: ``ready_now + arrivals_{<=k} + sum_{j <= k-L} u_j - sum_{j<=k} v_j``;
* ``a_k``  replicas holding GPUs: ``y_k`` plus those still starting (known arrivals after ``k``, starts
  in ``(k-L, k]``);
* ``s_{k,l}`` shortfall against demand quantile ``l``: ``s >= D_{k,l} - y_k``, ``s >= 0``.

Objective (scaled to integers)::

    min  sum_k c_gpu * a_k  +  sum_{k,l} w_l * s_{k,l}  +  c_act * sum_k (u_k + v_k)

with ``c_gpu`` the GPU-hours of one replica-step, ``w_l`` the SLO-risk penalty of one missing replica at
quantile ``l`` for one step, and ``c_act`` a small price on each action (damps oscillation). Constraints:
``min_replicas <= a_k <= max_replicas``, ``y_k >= 0``. Only the first step's ``u_0, v_0`` is applied;
the problem is solved again at the next decision (receding horizon).

The greedy baseline (:func:`greedy_plan`) starts, at every step, what the demand quantile ``L`` steps ahead
needs and stops what the demand over the lead time no longer needs; it is the hint and the fallback.

>>> p = ScalingProblem(step_s=30.0, demand=((2.0, 2.0, 4.0, 4.0),), weights=(5.0,), ready_now=2,
...                    arriving=(0, 0, 0, 0), lead_steps=2, min_replicas=1, max_replicas=8)
>>> plan = solve(p, params=SolveParams())
>>> plan.status.value, plan.starts[0]
('OPTIMAL', 2)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from solvers.status import SolveStatus
from traces.errors import InputError

SCALE = 1000
"""Fixed-point scale of demand (milli-replicas) and costs."""




@dataclass(frozen=True)
class SolveParams:
    """Solver limits: always a time limit, a seed and a worker count (determinism).

    Attributes:
        time_limit_s: wall-clock limit (a safety net).
        seed: CP-SAT's random seed.
        workers: search workers (1: deterministic).
        deterministic_time_s: CP-SAT's deterministic-time limit (None: none). Why: with only a wall-clock
            limit a solve cut short on a busy machine returns another plan than on an idle one, and a
            closed loop amplifies one different action into a different run; a deterministic limit makes
            a replay reproducible wherever it runs.
    """

    time_limit_s: float = 0.5
    seed: int = 0
    workers: int = 1
    deterministic_time_s: float | None = None


@dataclass(frozen=True)
class ScalingProblem:
    """One receding-horizon decision.

    Attributes:
        step_s: step length.
        demand: ``demand[l][k]`` ready replicas needed at step ``k`` under quantile level ``l``.
        weights: penalty per missing replica-step for each level (in GPU-hour units, like the cost).
        ready_now: replicas serving now.
        arriving: replicas already starting that become ready at step ``k`` (length ``K``; beyond: at K-1).
        lead_steps: steps from a start to ready (``L``).
        min_replicas, max_replicas: bounds on replicas holding GPUs.
        max_up, max_down: ramp limits per step.
        gpus_per_replica: GPUs per replica (GPU-hours).
        action_cost: price of one start or stop, in GPU-hours.
    """

    step_s: float
    demand: tuple[tuple[float, ...], ...]
    weights: tuple[float, ...]
    ready_now: int
    arriving: tuple[int, ...]
    lead_steps: int
    min_replicas: int
    max_replicas: int
    max_up: int = 8
    max_down: int = 8
    gpus_per_replica: int = 1
    action_cost: float = 0.0

    def __post_init__(self) -> None:
        k = self.horizon
        if k < 1 or any(len(d) != k for d in self.demand) or len(self.arriving) != k:
            raise InputError("demand rows and arrivals must share one horizon length", field="demand",
                             expected=f"{len(self.demand)} rows of {k} steps and {k} arrivals")
        if len(self.weights) != len(self.demand):
            raise InputError("one weight per demand level", field="weights", expected=f"{len(self.demand)}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise InputError("min_replicas > max_replicas", field="min_replicas",
                             expected="0 <= min_replicas <= max_replicas")

    @property
    def horizon(self) -> int:
        return len(self.demand[0]) if self.demand else 0

    @property
    def replica_step_gpu_h(self) -> float:
        """GPU-hours of one replica held for one step."""
        return self.gpus_per_replica * self.step_s / 3600.0


@dataclass(frozen=True)
class ScalingPlan:
    """The chosen actions over the horizon and how they were found.

    Attributes:
        starts, stops: ``u_k`` and ``v_k``.
        ready, held: ``y_k`` and ``a_k``.
        objective, bound: in GPU-hour units (bound = the solver's best lower bound).
        wall_s: solve time.
    """

    status: SolveStatus
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    ready: tuple[int, ...]
    held: tuple[int, ...]
    objective: float
    bound: float
    wall_s: float

    @property
    def change_now(self) -> int:
        """Net change of the replica count to apply now (``u_0 - v_0``)."""
        return self.starts[0] - self.stops[0]


def evaluate(problem: ScalingProblem, starts: list[int],
             stops: list[int]) -> tuple[list[int], list[int], float]:
    """``(ready, held, objective)`` of given actions (the same accounting as the model)."""
    k_n = problem.horizon
    L = problem.lead_steps
    ready: list[int] = []
    held: list[int] = []
    cost = 0.0
    c = problem.replica_step_gpu_h
    for k in range(k_n):
        y = (problem.ready_now + sum(problem.arriving[: k + 1]) + sum(starts[: max(0, k - L + 1)])
             - sum(stops[: k + 1]))
        inflight = sum(problem.arriving[k + 1:]) + sum(starts[max(0, k - L + 1): k + 1])
        ready.append(y)
        held.append(y + inflight)
        cost += c * (y + inflight)
        for l_i, w in enumerate(problem.weights):
            cost += w * max(0.0, problem.demand[l_i][k] - y)
    cost += problem.action_cost * (sum(starts) + sum(stops))
    return ready, held, cost


def greedy_plan(problem: ScalingProblem) -> ScalingPlan:
    """Start for the highest level's demand ``L`` steps ahead, stop what the next ``L`` steps don't need."""
    t0 = time.perf_counter()
    k_n = problem.horizon
    L = problem.lead_steps
    top = problem.demand[-1] if problem.weights[-1] >= problem.replica_step_gpu_h else problem.demand[0]
    starts = [0] * k_n
    stops = [0] * k_n
    for k in range(k_n):
        ready, held, _ = evaluate(problem, starts, stops)
        future = [math.ceil(top[j] - 1e-9) for j in range(k + L, min(k_n, k + L + 1))] or [0]
        want = max(future)
        at = min(k + L, k_n - 1)
        add = max(0, min(problem.max_up, want - ready[at], problem.max_replicas - held[k]))
        if add == 0:
            need = max([math.ceil(top[j] - 1e-9) for j in range(k, min(k_n, k + L + 1))] or [0])
            extra = min(ready[k] - max(need, 0), held[k] - problem.min_replicas, problem.max_down)
            stops[k] = max(0, extra)
        starts[k] = add
        if held[k] + add < problem.min_replicas:
            starts[k] = min(problem.max_up, problem.min_replicas - held[k])
    ready, held, cost = evaluate(problem, starts, stops)
    return ScalingPlan(SolveStatus.GREEDY, tuple(starts), tuple(stops), tuple(ready), tuple(held), cost,
                       -math.inf,
                       time.perf_counter() - t0)


def solve(problem: ScalingProblem, *, params: SolveParams) -> ScalingPlan:
    """Solve the horizon with CP-SAT (hinted by, and falling back to, :func:`greedy_plan`)."""
    t0 = time.perf_counter()
    greedy = greedy_plan(problem)
    k_n = problem.horizon
    L = problem.lead_steps
    top = problem.max_replicas + sum(problem.arriving) + problem.ready_now
    # data -> model
    m = cp_model.CpModel()
    # variables
    u = [m.new_int_var(0, problem.max_up, f"u{k}") for k in range(k_n)]
    v = [m.new_int_var(0, problem.max_down, f"v{k}") for k in range(k_n)]
    y = [m.new_int_var(0, top, f"y{k}") for k in range(k_n)]
    a = [m.new_int_var(problem.min_replicas, problem.max_replicas, f"a{k}") for k in range(k_n)]
    # constraints
    for k in range(k_n):
        # Ready replicas: those ready now, arrivals so far, starts whose lead time has passed, minus stops.
        m.add(y[k] == problem.ready_now + sum(problem.arriving[: k + 1]) + sum(u[: max(0, k - L + 1)])
              - sum(v[: k + 1]))
        # Replicas holding GPUs: ready ones plus those still loading.
        m.add(a[k] == y[k] + sum(problem.arriving[k + 1:]) + sum(u[max(0, k - L + 1): k + 1]))
    shortfall = []
    for l_i, w in enumerate(problem.weights):
        for k in range(k_n):
            d = math.ceil(problem.demand[l_i][k] * SCALE)
            s = m.new_int_var(0, max(d, 0), f"s{l_i}_{k}")
            # Shortfall against this demand quantile (milli-replicas).
            m.add(s >= d - SCALE * y[k])
            shortfall.append((w, s))
    # objective (integer coefficients in micro-GPU-hours)
    c = problem.replica_step_gpu_h
    unit = 1e6
    m.minimize(
        sum(round(c * unit) * a[k] for k in range(k_n))
        + sum(round(w * unit / SCALE) * s for w, s in shortfall)
        + sum(round(problem.action_cost * unit) * (u[k] + v[k]) for k in range(k_n))
    )
    # hint from the greedy plan
    for k in range(k_n):
        m.add_hint(u[k], greedy.starts[k])
        m.add_hint(v[k], greedy.stops[k])
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = params.time_limit_s
    solver.parameters.num_workers = params.workers
    solver.parameters.random_seed = params.seed
    if params.deterministic_time_s is not None:
        solver.parameters.max_deterministic_time = params.deterministic_time_s
    code = solver.solve(m)
    status = SolveStatus(solver.status_name(code))
    if status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return ScalingPlan(SolveStatus.GREEDY, greedy.starts, greedy.stops, greedy.ready, greedy.held,
                           greedy.objective, -math.inf, time.perf_counter() - t0)
    starts = [int(solver.value(x)) for x in u]
    stops = [int(solver.value(x)) for x in v]
    ready, held, cost = evaluate(problem, starts, stops)
    return ScalingPlan(status, tuple(starts), tuple(stops), tuple(ready), tuple(held), cost,
                       solver.best_objective_bound / unit, time.perf_counter() - t0)

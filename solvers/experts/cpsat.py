"""CP-SAT model for one layer: pack replicas onto GPUs, minimising the busiest GPU (or the experts moved).

Notation (one MoE layer, replica counts already chosen):

- experts ``e`` with integer replica load ``q_e = round(K * w_e / c_e)`` and ``c_e`` replicas;
- GPUs ``g`` with ``S_g`` slots; ``A[e, g]`` True where the locality rule lets ``e`` live on ``g``;
- ``x[e, g] ∈ {0, 1}``: GPU g holds a replica of e (a Boolean, so never two replicas on one GPU).

Balance mode::

    min  L
    s.t. Σ_g x[e,g] = c_e            ∀e   (every replica of every expert is placed)
         Σ_e x[e,g] = S_g            ∀g   (every slot holds exactly one replica)
         Σ_e q_e x[e,g] ≤ L          ∀g   (L is the busiest GPU's load)

``Locality.HOME`` adds ``Σ_{g on home node of e} x[e,g] ≥ 1`` for every expert. Incremental mode
keeps the first two constraints, caps every GPU at ``L_max`` (the balance to reach) and
minimises the copies that are new, ``Σ_{(e,g): x0[e,g]=0} x[e,g]``.

Why counts are fixed outside: with even-split dispatch a replica's load ``w_e / c_e`` depends on the
count, which would make the model non-linear; EPLB's ``argmax w/c`` greedy picks counts that minimise the
heaviest replica, and the packing is where EPLB loses balance, so that is what the model optimises.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model

from solvers.budget import set_budget
from solvers.status import SolveStatus, from_cpsat

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

SCALE = 1_000_000
"""Integer units for the busiest replica load: relative rounding error below 1e-6."""


@dataclass(frozen=True, eq=False)
class LayerModelResult:
    """CP-SAT's answer for one layer (``x`` is None when it found no solution)."""

    x: BoolArray | None
    status: SolveStatus
    objective: float
    bound: float
    wall_s: float


def scaled_loads(w: FloatArray, counts: IntArray) -> tuple[IntArray, float]:
    """Integer replica loads and the scale used (units per token)."""
    q = w / counts
    k = SCALE / max(float(q.max()), 1e-300)
    return np.rint(q * k).astype(np.int64), k


def solve_layer(
    w: FloatArray,
    counts: IntArray,
    caps: IntArray,
    allowed: BoolArray,
    *,
    hint: BoolArray | None,
    time_limit_s: float,
    num_workers: int,
    random_seed: int,
    x0: BoolArray | None = None,
    max_load: float | None = None,
    home: IntArray | None = None,
    node_of: IntArray | None = None,
) -> LayerModelResult:
    """Solve one layer's packing with CP-SAT.

    Args:
        w: expert loads ``[E]``.
        counts: replicas per expert ``[E]``.
        caps: slots per GPU ``[G]``.
        allowed: ``[E, G]`` locality mask.
        hint: a plan to start from (the greedy/local-search plan).
        time_limit_s: CP-SAT's deterministic-time limit (its work units, about a second each on a
            typical core), so the same problem gives the same plan however loaded the machine is; a
            wall-clock limit of :data:`solvers.budget.WALL_SAFETY` times it (plus a second) is only a
            safety net.
        num_workers, random_seed: always set on the solver (one worker: a deterministic search).
        x0: current placement; with ``max_load`` switches to incremental mode (minimise new copies).
        max_load: the busiest-GPU load (in ``w`` units) incremental mode must respect.
        home, node_of: home node per expert (-1: none) and node per GPU (``Locality.HOME``).

    Returns:
        The plan, status, objective (busiest GPU load in ``w`` units, or copies moved) and bound.
    """
    started = time.perf_counter()
    # --- data
    n, g_count = allowed.shape
    q, k = scaled_loads(w, counts)
    incremental = x0 is not None and max_load is not None

    # --- model
    model = cp_model.CpModel()

    # --- variables: x[e, g] only where the locality rule allows e on g
    gpus_of = [[int(g) for g in np.flatnonzero(allowed[e])] for e in range(n)]
    experts_on = [[e for e in range(n) if allowed[e, g]] for g in range(g_count)]
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    for e in range(n):
        for g in gpus_of[e]:
            x[e, g] = model.new_bool_var(f"x_{e}_{g}")
    total = int(q @ counts)
    lower = max(math.ceil(total / g_count), int(q.max()))
    upper = int(np.sort(q)[::-1][: int(caps.max())].sum())
    load_max = model.new_int_var(lower, max(upper, lower), "busiest_gpu_load")

    # --- constraints
    for e in range(n):
        # Every replica of expert e is placed, each on a different GPU (x is Boolean).
        model.add(cp_model.LinearExpr.sum([x[e, g] for g in gpus_of[e]]) == int(counts[e]))
    for g in range(g_count):
        on_g = experts_on[g]
        # Every slot of GPU g holds exactly one replica.
        model.add(cp_model.LinearExpr.sum([x[e, g] for e in on_g]) == int(caps[g]))
        # GPU g's tokens (even split over replicas) bound the busiest-GPU load.
        gpu_load = cp_model.LinearExpr.weighted_sum([x[e, g] for e in on_g], [int(q[e]) for e in on_g])
        model.add(gpu_load <= load_max)
    if home is not None and node_of is not None:
        for e in range(n):
            if home[e] < 0:
                continue
            home_gpus = [g for g in gpus_of[e] if node_of[g] == home[e]]
            # Expert e keeps at least one replica on its group's home node (its tokens mostly stay local).
            model.add(cp_model.LinearExpr.sum([x[e, g] for g in home_gpus]) >= 1)
    if incremental:
        assert x0 is not None and max_load is not None
        # The re-plan must keep every GPU within the balance target.
        # (Half a unit of rounding slack per slot, so the float plan that met the target stays feasible.)
        model.add(load_max <= math.floor(max_load * k + 0.5 * int(caps.max())))

    # --- objective
    if incremental:
        assert x0 is not None
        # Copies of an expert onto a GPU that does not hold it now: weights that must move.
        model.minimize(cp_model.LinearExpr.sum([var for (e, g), var in x.items() if not x0[e, g]]))
    else:
        model.minimize(load_max)
    if hint is not None:
        for (e, g), var in x.items():
            model.add_hint(var, bool(hint[e, g]))

    # --- solve
    solver = cp_model.CpSolver()
    set_budget(solver, time_limit_s, num_workers, random_seed)
    code = solver.solve(model)
    status = from_cpsat(code)
    wall = time.perf_counter() - started
    if status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return LayerModelResult(x=None, status=status, objective=math.nan, bound=math.nan, wall_s=wall)
    plan = np.zeros((n, g_count), dtype=bool)
    for (e, g), var in x.items():
        plan[e, g] = solver.boolean_value(var)
    if incremental:
        return LayerModelResult(
            x=plan,
            status=status,
            objective=float(solver.objective_value),
            bound=float(solver.best_objective_bound),
            wall_s=wall,
        )
    return LayerModelResult(
        x=plan,
        status=status,
        objective=float(solver.objective_value) / k,
        bound=float(solver.best_objective_bound) / k,
        wall_s=wall,
    )

"""CP-SAT budgets in work, not wall time: the same problem and parameters give the same answer on a busy
machine and an idle one (a plan must be reproducible byte for byte)."""

from __future__ import annotations

from ortools.sat.python import cp_model

WALL_SAFETY = 4.0
"""Wall-clock limit of a CP-SAT call as a multiple of its deterministic-time limit (a safety net that a
machine would have to be this much slower than CP-SAT's work units assume to reach)."""


def set_budget(solver: cp_model.CpSolver, time_limit_s: float, num_workers: int, random_seed: int) -> None:
    """Deterministic-time limit ``time_limit_s`` (CP-SAT's work units, about a second each on a current
    core), the wall-clock safety net, workers and seed. Several workers search interleaved, which keeps
    the answer deterministic (CP-SAT's parallel portfolio otherwise returns whichever worker won)."""
    limit = max(time_limit_s, 0.01)
    solver.parameters.max_deterministic_time = limit
    solver.parameters.max_time_in_seconds = WALL_SAFETY * limit + 1.0
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = random_seed
    if num_workers > 1:
        solver.parameters.interleave_search = True

"""Exhaustive enumeration of small instances: the ground truth the CP-SAT model is tested against.

Given the set of deployed configurations and no start costs or dwell, windows are independent, so the
search is: every admissible set of configurations (at most K per role, aggregated or disaggregated as
allowed), then per window every replica vector up to the bounds. Start costs and a minimum dwell couple the
windows; then every sequence of feasible per-window vectors is tried. Exponential; meant for a handful of
configurations, replicas and windows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import partial

from solvers.capacity.cpsat import replica_bound
from solvers.capacity.greedy import Assignment, _fits, dwells
from solvers.capacity.problem import CapacityProblem, Disaggregation, Role
from solvers.capacity.units import COST_SCALE, Units


def _admissible(problem: CapacityProblem, subset: tuple[int, ...]) -> bool:
    roles = [problem.configs[i].role for i in subset]
    for r in Role:
        if roles.count(r) > problem.config_cap(r):
            return False
    agg = Role.AGGREGATED in roles
    split = Role.PREFILL in roles or Role.DECODE in roles
    if agg and split:
        return False
    if split and problem.disaggregation is Disaggregation.OFF:
        return False
    return not (agg and problem.disaggregation is Disaggregation.ON)


def _window_ok(problem: CapacityProblem, units: Units, w: int, counts: dict[int, int]) -> bool:
    d = units.demand[w]
    cfg = problem.configs
    pre = sum(units.goodput[i] * n for i, n in counts.items() if cfg[i].role is not Role.DECODE)
    dec = sum(units.goodput[i] * n for i, n in counts.items() if cfg[i].role is not Role.PREFILL)
    if pre < d or dec < d:
        return False
    sp = sum(n for i, n in counts.items() if cfg[i].role is Role.PREFILL)
    sd = sum(n for i, n in counts.items() if cfg[i].role is Role.DECODE)
    r = round(problem.max_pd_ratio * 1000)
    if sp * 1000 > sd * r or sd * 1000 > sp * r:
        return False
    return _fits(problem, units, counts)


def _run_cost(units: Units, w: int, counts: dict[int, int]) -> int:
    return sum(units.window_cost[i][w] * n for i, n in counts.items())


def exhaustive(problem: CapacityProblem) -> tuple[float | None, Assignment | None]:
    """The optimal cost (USD) and a plan achieving it, or ``(None, None)`` when nothing is feasible."""
    units = Units.of(problem)
    nc, nw = len(problem.configs), len(problem.windows)
    ub = [replica_bound(problem, units, i) for i in range(nc)]
    coupled = nw > 1 and (any(units.start_cost) or problem.min_dwell_windows > 1)
    best: int | None = None
    best_plan: Assignment | None = None
    for k in range(1, nc + 1):
        for subset in itertools.combinations(range(nc), k):
            if not _admissible(problem, subset):
                continue
            options = [[counts for combo in itertools.product(*(range(ub[i] + 1) for i in subset))
                        if _window_ok(problem, units, w, counts := dict(zip(subset, combo, strict=True)))]
                       for w in range(nw)]
            if not all(options):
                continue
            seqs: Iterable[tuple[dict[int, int], ...]] = (
                itertools.product(*options) if coupled  # else each window on its own: its cheapest vector
                else [tuple(min(opts, key=partial(_run_cost, units, w)) for w, opts in enumerate(options))])
            for seq in seqs:
                plan: Assignment = {(i, w): n for w, counts in enumerate(seq) for i, n in counts.items() if n}
                if coupled and not dwells(problem, units, plan):
                    continue
                total = units.cost(plan)
                if best is None or total < best:
                    best, best_plan = total, plan
    return (None, None) if best is None else (best / COST_SCALE, best_plan)

"""The greedy baseline: the cheapest configuration per request that fits, first-fit when one does not.

Used as CP-SAT's hint and as the fallback when CP-SAT finds nothing in its time limit. All arithmetic is
on the same integer units as the CP-SAT model (:mod:`solvers.capacity.units`), so a greedy plan is
always a feasible point of the model and its cost is directly comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from solvers.capacity.problem import CapacityProblem, Config, Disaggregation, Role
from solvers.capacity.units import Units

Assignment = dict[tuple[int, int], int]
"""``(config index, window) -> replicas`` (zero entries left out)."""


def _fits(problem: CapacityProblem, units: Units, counts: dict[int, int]) -> bool:
    """Whether one window's replica counts respect inventory and the power budget."""
    by_gpu: dict[str, int] = {}
    watts = 0
    for i, n in counts.items():
        c = problem.configs[i]
        by_gpu[c.gpu] = by_gpu.get(c.gpu, 0) + n * c.gpus
        watts += n * units.power[i]
    for gpu, used in by_gpu.items():
        cap = problem.inventory_of(gpu)
        if cap is not None and used > cap:
            return False
    return units.power_budget is None or watts <= units.power_budget


def _ordered(problem: CapacityProblem, role: Role) -> list[int]:
    """Config indices of one role, cheapest per unit of goodput first."""
    idx = [i for i, c in enumerate(problem.configs) if c.role is role]
    return sorted(idx, key=lambda i: (problem.configs[i].cost_per_goodput, problem.configs[i].gpus, i))


def _single(problem: CapacityProblem, units: Units, i: int) -> Assignment | None:
    """One configuration sized per window, or None when some window does not fit."""
    out: Assignment = {}
    for w, d in enumerate(units.demand):
        n = math.ceil(d / units.goodput[i]) if d > 0 else 0
        if n and not _fits(problem, units, {i: n}):
            return None
        if n:
            out[(i, w)] = n
    return out


def _first_fit(problem: CapacityProblem, units: Units, order: Sequence[int]) -> Assignment | None:
    """Per window, fill demand from the cheapest configurations while inventory and power last."""
    out: Assignment = {}
    for w, d in enumerate(units.demand):
        counts: dict[int, int] = {}
        left = d
        for i in order:
            while left > 0:
                trial = dict(counts)
                trial[i] = trial.get(i, 0) + 1
                if not _fits(problem, units, trial):
                    break
                counts = trial
                left -= units.goodput[i]
            if left <= 0:
                break
        if left > 0:
            return None
        out.update({(i, w): n for i, n in counts.items() if n})
    used = {i for i, _ in out}
    return out if len(used) <= problem.config_cap(Role.AGGREGATED) else None


def _pd(problem: CapacityProblem, units: Units, ip: int, idc: int) -> Assignment | None:
    """One prefill and one decode configuration, sized per window and balanced to the P/D ratio."""
    r = problem.max_pd_ratio
    out: Assignment = {}
    for w, d in enumerate(units.demand):
        if d <= 0:
            continue
        npf = max(1, math.ceil(d / units.goodput[ip]))
        nd = max(1, math.ceil(d / units.goodput[idc]))
        npf = max(npf, math.ceil(nd / r))
        nd = max(nd, math.ceil(npf / r))
        if not _fits(problem, units, {ip: npf, idc: nd}):
            return None
        out[(ip, w)] = npf
        out[(idc, w)] = nd
    return out


def dwells(problem: CapacityProblem, units: Units, assignment: Assignment) -> bool:
    """Whether every replica started in a window still runs ``min_dwell_windows`` windows later (the
    model's dwell rows, windows as a cycle)."""
    m = min(problem.min_dwell_windows, len(units.demand))
    if m <= 1:
        return True
    started = units.started(assignment)
    return all(assignment.get((i, w), 0) >= sum(started[i][(w - k) % len(units.demand)] for k in range(m))
               for i in {i for i, _w in assignment} for w in range(len(units.demand)))


def _held(problem: CapacityProblem, units: Units, plan: Assignment) -> Assignment | None:
    """``plan`` with each window's replicas kept for the minimum dwell (the running maximum over the last
    ``min_dwell_windows`` windows, as a cycle); None when that breaks a limit or still does not dwell."""
    nw, m = len(units.demand), min(problem.min_dwell_windows, len(units.demand))
    if m <= 1:
        return plan
    used = {i for i, _w in plan}
    held = {(i, w): n for i in used for w in range(nw)
            if (n := max(plan.get((i, (w - k) % nw), 0) for k in range(m))) > 0}
    for w in range(nw):
        if not _fits(problem, units, {i: n for (i, ww), n in held.items() if ww == w}):
            return None
    return held if dwells(problem, units, held) else None


def greedy(problem: CapacityProblem, units: Units, *, pairs: int = 5) -> Assignment | None:
    """The cheaper of the best aggregated and the best disaggregated greedy plans (None: none fits).

    Aggregated: the cheapest-per-request configuration alone if it fits every window, else first-fit
    over the configurations in cost order. Disaggregated: the first of the ``pairs`` x ``pairs`` best
    (prefill, decode) pairs, cheapest combined first, that fits.
    """
    plans: list[Assignment] = []
    if problem.disaggregation is not Disaggregation.ON:
        order = _ordered(problem, Role.AGGREGATED)
        found = None
        for i in order:
            found = _single(problem, units, i)
            if found is not None:
                break
        if found is None and order:
            found = _first_fit(problem, units, order)
        if found is not None:
            plans.append(found)
    if problem.disaggregation is not Disaggregation.OFF:
        pre = _ordered(problem, Role.PREFILL)[:pairs]
        dec = _ordered(problem, Role.DECODE)[:pairs]
        combos = sorted(((a, b) for a in pre for b in dec),
                        key=lambda ab: _pair_cost(problem.configs[ab[0]], problem.configs[ab[1]]))
        for a, b in combos:
            found = _pd(problem, units, a, b)
            if found is not None:
                plans.append(found)
                break
    kept = [h for p in plans if (h := _held(problem, units, p)) is not None]
    return min(kept, key=units.cost) if kept else None


def _pair_cost(p: Config, d: Config) -> float:
    return p.cost_per_goodput + d.cost_per_goodput

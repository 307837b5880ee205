"""CP-SAT model: the most servers a row's power budget can take under POLCA-style capping.

Notation (watts are integers in the model):

* ``B`` row budget; ``b`` non-GPU base per server; ``h_si``, ``l_si`` mean GPU watts of one HP / LP
  server in scenario ``s`` at telemetry period ``i``; ``L_f(.)`` the same server locked at clock ``f``
  (:meth:`planner.power.timeline.ClockModel.locked_gpu_w`).
* Decisions: ``n_hp, n_lp`` integers (servers per tier); one-hot ``x_k`` over the ``t1`` grid and
  ``y_j`` over the ``t2`` grid; ``z1_si``, ``z2_si`` booleans (LP level / HP level decided at period
  ``i``).
* Row power per period, by the level in force:
  ``U_si = n_hp (b + h_si) + n_lp (b + l_si)`` (nothing locked),
  ``P1_si = n_hp (b + h_si) + n_lp (b + L_lp(l_si))`` (LP locked),
  ``P2_si = n_hp (b + L_hp(h_si)) + n_lp (b + L_lpmin(l_si))`` (both tiers locked).

Objective: maximise ``n_hp + n_lp`` (then ``n_hp``).

Constraints:

* the policy's levels: ``z1_si <=> U_si >= t1 B``; ``z2_si <=> P1_si >= t2 B`` (measured with LP locked);
* chance constraints over all periods of all scenarios: ``sum z1 <= eps |periods|`` (time capped) and
  ``sum z2 <= eps_hp |periods|`` (HP latency budget);
* zero brake events: the power in force at period ``i`` (level decided at ``i - 1``) stays under the
  brake level: ``U_si < t_brake B`` unless ``z1_s,i-1``; ``P1_si < t_brake B`` unless ``z2_s,i-1``;
  ``P2_si < t_brake B`` always;
* ``n_hp >= min_hp_share (n_hp + n_lp)``, ``min_servers <= n_hp + n_lp <= max_servers``, ``t1 < t2``;
* extra cuts from verification (:func:`planner.power_study.plan.plan_and_verify`): ``n <= cap`` for a
  threshold pair whose plan failed the replay check.

The greedy baseline (:func:`greedy`) scans the threshold pairs and, for each, the row size downward at the
smallest HP share; it is the hint and the fallback. Hysteresis, dwell and actuation latency are not in the
model (they make the policy hold locks longer): the replay check measures them, and the caller tightens
``eps`` when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model

from solvers.power.problem import PowerPlan, PowerProblem, SolveParams
from solvers.status import SolveStatus, from_cpsat
from traces.errors import InputError

F64 = NDArray[np.float64]

WATT_UNITS = 100
"""Model units per watt (centiwatts): integer coefficients without rounding away a threshold crossing."""



@dataclass(frozen=True, eq=False)
class _Series:
    """Per-server watts (base included) of each tier at each level, all scenarios concatenated."""

    hp_un: F64
    lp_un: F64
    lp_l1: F64
    hp_l2: F64
    lp_l2: F64
    has_prev: NDArray[np.bool_]  # period i has a predecessor in the same scenario


def _series(p: PowerProblem) -> _Series:
    cm, pol, b = p.clock_model, p.policy, p.base_w
    hp = np.concatenate([s.hp_gpu_w for s in p.scenarios])
    lp = np.concatenate([s.lp_gpu_w for s in p.scenarios])
    prev = np.concatenate([np.r_[False, np.ones(s.hp_gpu_w.size - 1, dtype=bool)] for s in p.scenarios])
    return _Series(
        hp_un=hp + b,
        lp_un=lp + b,
        lp_l1=cm.locked_gpu_w(lp, pol.lp_clock_mhz) + b,
        hp_l2=cm.locked_gpu_w(hp, pol.hp_clock_mhz) + b,
        lp_l2=cm.locked_gpu_w(lp, pol.lp_min_clock_mhz) + b,
        has_prev=prev,
    )


@dataclass(frozen=True)
class Check:
    """The model's constraints evaluated directly for one candidate (used by greedy and tests)."""

    feasible: bool
    capped_fraction: float
    hp_locked_fraction: float
    brake_periods: int


def evaluate(
    p: PowerProblem, hp_servers: int, lp_servers: int, t1: float, t2: float, series: _Series | None = None
) -> Check:
    """Check one ``(n_hp, n_lp, t1, t2)`` against the model's constraints.

    >>> from solvers.power.testing import toy_problem
    >>> evaluate(toy_problem(), 4, 4, 0.85, 0.95).feasible
    True
    """
    s = series if series is not None else _series(p)
    B, tb = p.budget_w, p.policy.t_brake * p.budget_w
    un = hp_servers * s.hp_un + lp_servers * s.lp_un
    l1 = hp_servers * s.hp_un + lp_servers * s.lp_l1
    l2 = hp_servers * s.hp_l2 + lp_servers * s.lp_l2
    z1 = un >= t1 * B
    z2 = l1 >= t2 * B
    z1p = np.r_[False, z1[:-1]] & s.has_prev
    z2p = np.r_[False, z2[:-1]] & s.has_prev
    brake = ((un >= tb) & ~z1p) | ((l1 >= tb) & ~z2p) | (l2 >= tb)
    n = un.size
    cf, hf = float(z1.mean()), float(z2.mean())
    ok = (
        int(z1.sum()) <= int(np.floor(p.max_capped_fraction * n + 1e-9))
        and int(z2.sum()) <= int(np.floor(p.max_hp_locked_fraction * n + 1e-9))
        and not brake.any()
        and hp_servers >= p.hp_min(hp_servers + lp_servers)
    )
    return Check(feasible=bool(ok), capped_fraction=cf, hp_locked_fraction=hf, brake_periods=int(brake.sum()))


def upper_bound(p: PowerProblem, series: _Series | None = None) -> int:
    """Largest row the chance constraint allows, whatever the thresholds and the HP share.

    At most ``floor(eps |periods|)`` periods may reach ``t1 B``; with per-server watts at least
    ``u_i = min(hp_i, lp_i) + b`` the row reaches ``n u_i``, so ``n`` stays under ``max(t1) B / q`` where
    ``q`` is the ``floor(eps |periods|) + 1``-th largest ``u_i``. The model's domain starts there, which
    lets most periods be fixed as uncapped before the search.

    >>> from solvers.power.testing import toy_problem
    >>> upper_bound(toy_problem())
    13
    """
    s = series if series is not None else _series(p)
    u = np.minimum(s.hp_un, s.lp_un)
    k = int(np.floor(p.max_capped_fraction * u.size + 1e-9))
    q = float(np.sort(u)[::-1][min(k, u.size - 1)])
    t1max = max(a for a, _ in p.threshold_pairs())
    n = int(np.ceil(t1max * p.budget_w / q)) - 1 if q > 0 else p.max_servers
    return max(p.min_servers, min(p.max_servers, n))


def greedy(p: PowerProblem, *, cuts: Mapping[tuple[float, float], int] | None = None) -> PowerPlan | None:
    """First fit: for each threshold pair, the largest row (smallest HP share) that passes :func:`evaluate`.

    Returns ``None`` when not even ``min_servers`` fits.

    >>> from solvers.power.testing import toy_problem
    >>> greedy(toy_problem()).servers
    10
    """
    t0 = time.perf_counter()
    s = _series(p)
    best: tuple[int, int, float, float, Check] | None = None
    ub = upper_bound(p, s)
    for t1, t2 in p.threshold_pairs():
        top = min(ub, (cuts or {}).get((t1, t2), p.max_servers))
        for n in range(top, p.min_servers - 1, -1):
            if best is not None and n <= best[0] + best[1]:
                break
            hp = p.hp_min(n)
            chk = evaluate(p, hp, n - hp, t1, t2, s)
            if chk.feasible:
                best = (hp, n - hp, t1, t2, chk)
                break
    if best is None:
        return None
    hp, lp, t1, t2, chk = best
    return PowerPlan(
        hp_servers=hp,
        lp_servers=lp,
        t1=t1,
        t2=t2,
        capped_fraction=chk.capped_fraction,
        hp_locked_fraction=chk.hp_locked_fraction,
        status=SolveStatus.GREEDY,
        objective=float(hp + lp),
        bound=float(p.max_servers),
        wall_s=time.perf_counter() - t0,
    )


def solve(
    p: PowerProblem, *, params: SolveParams, cuts: Mapping[tuple[float, float], int] | None = None
) -> PowerPlan:
    """Solve the CP-SAT model (hinted with :func:`greedy`; greedy is the fallback).

    Args:
        p: the problem.
        params: time limit, workers and seed (all set on the solver).
        cuts: per threshold pair, the largest row allowed (from failed verifications).

    Returns:
        The best plan found, with the solver status, objective, bound and wall time.

    Raises:
        InputError: nothing fits, not even ``min_servers`` servers, by either method.

    >>> from solvers.power.testing import toy_problem
    >>> plan = solve(toy_problem(), params=SolveParams(time_limit_s=5, seed=0))
    >>> plan.servers, plan.status.value
    (10, 'OPTIMAL')
    """
    t0 = time.perf_counter()
    cuts = dict(cuts or {})
    hint = greedy(p, cuts=cuts)
    s = _series(p)
    pairs = p.threshold_pairs()
    t1s = sorted({a for a, _ in pairs})
    t2s = sorted({b for _, b in pairs})
    B = p.budget_w
    m = cp_model.CpModel()
    # --- variables
    nmax = upper_bound(p, s)
    n_hp = m.new_int_var(0, nmax, "n_hp")
    n_lp = m.new_int_var(0, nmax, "n_lp")
    x = {a: m.new_bool_var(f"t1_{a}") for a in t1s}
    y = {b: m.new_bool_var(f"t2_{b}") for b in t2s}
    # --- structure: one threshold each, a valid pair, row size, HP share
    m.add_exactly_one(x.values())
    m.add_exactly_one(y.values())
    valid = set(pairs)
    for a in t1s:
        for b in t2s:
            if (a, b) not in valid:
                m.add_bool_or([x[a].negated(), y[b].negated()])
    m.add(n_hp + n_lp >= p.min_servers)
    if hint is not None:  # greedy's row is feasible: the optimum has at least as many servers
        m.add(n_hp + n_lp >= hint.servers)
    m.add(n_hp + n_lp <= nmax)
    share = round(p.min_hp_share * 1000)
    m.add(1000 * n_hp >= share * (n_hp + n_lp))  # n_hp >= min_hp_share * n
    # cuts from failed verifications: with this pair, at most `cap` servers
    for (a, b), cap in cuts.items():
        if a in x and b in y:
            m.add(n_hp + n_lp <= cap).only_enforce_if([x[a], y[b]])
    q = WATT_UNITS
    t1B = sum(round(a * B * q) * x[a] for a in t1s)
    t2B = sum(round(b * B * q) * y[b] for b in t2s)
    tb = round(p.policy.t_brake * B * q)
    # --- per period: levels decided (exact indicators), pruned where the answer is fixed
    n_per = s.hp_un.size
    z1: list[cp_model.IntVar | int] = []
    z2: list[cp_model.IntVar | int] = []
    for i in range(n_per):
        hu, lu, l1, h2, l2 = (round(float(v[i]) * q) for v in (s.hp_un, s.lp_un, s.lp_l1, s.hp_l2, s.lp_l2))
        un = hu * n_hp + lu * n_lp
        p1 = hu * n_hp + l1 * n_lp
        if max(hu, lu) * nmax < min(t1s) * B * q:  # uncapped at any allowed size
            z1.append(0)
        else:
            v = m.new_bool_var(f"z1_{i}")
            m.add(un >= t1B).only_enforce_if(v)
            m.add(un <= t1B - 1).only_enforce_if(v.negated())
            z1.append(v)
        if max(hu, l1) * nmax < min(t2s) * B * q:
            z2.append(0)
        else:
            w = m.new_bool_var(f"z2_{i}")
            m.add(p1 >= t2B).only_enforce_if(w)
            m.add(p1 <= t2B - 1).only_enforce_if(w.negated())
            z2.append(w)
        # zero brake events: the power in force stays under the brake level
        if max(hu, lu) * nmax >= tb:
            prev1 = z1[i - 1] if s.has_prev[i] else 0
            if isinstance(prev1, int):
                m.add(un <= tb - 1)
            else:
                m.add(un <= tb - 1).only_enforce_if(prev1.negated())
        if max(hu, l1) * nmax >= tb:
            prev2 = z2[i - 1] if s.has_prev[i] else 0
            if isinstance(prev2, int):
                m.add(p1 <= tb - 1)
            else:
                m.add(p1 <= tb - 1).only_enforce_if(prev2.negated())
        if max(h2, l2) * nmax >= tb:
            m.add(h2 * n_hp + l2 * n_lp <= tb - 1)
    # --- chance constraints over all periods of all scenarios
    m.add(sum(z1) <= int(np.floor(p.max_capped_fraction * n_per + 1e-9)))
    m.add(sum(z2) <= int(np.floor(p.max_hp_locked_fraction * n_per + 1e-9)))
    # --- objective: servers first, then HP servers
    m.maximize((nmax + 1) * (n_hp + n_lp) + n_hp)
    if hint is not None:
        m.add_hint(n_hp, hint.hp_servers)
        m.add_hint(n_lp, hint.lp_servers)
        for a in t1s:
            m.add_hint(x[a], int(a == hint.t1))
        for b in t2s:
            m.add_hint(y[b], int(b == hint.t2))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(params.time_limit_s)
    solver.parameters.num_workers = int(params.workers)
    solver.parameters.random_seed = int(params.seed)
    code = solver.solve(m)
    status = from_cpsat(code)
    wall = time.perf_counter() - t0
    if status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        hp, lp = int(solver.value(n_hp)), int(solver.value(n_lp))
        a = next(k for k in t1s if solver.value(x[k]))
        b = next(k for k in t2s if solver.value(y[k]))
        chk = evaluate(p, hp, lp, a, b, s)
        if hint is not None and (hint.servers > hp + lp or not chk.feasible):
            # rounding to model units can only cost a boundary server: never answer worse than greedy
            return replace(
                hint,
                status=status,
                bound=float(max(hint.servers, np.floor(solver.best_objective_bound / (nmax + 1)))),
                wall_s=wall,
            )
        return PowerPlan(
            hp_servers=hp,
            lp_servers=lp,
            t1=a,
            t2=b,
            capped_fraction=chk.capped_fraction,
            hp_locked_fraction=chk.hp_locked_fraction,
            status=status,
            objective=float(hp + lp),
            bound=float(np.floor(solver.best_objective_bound / (nmax + 1))),
            wall_s=wall,
        )
    if hint is not None:
        return PowerPlan(
            hp_servers=hint.hp_servers,
            lp_servers=hint.lp_servers,
            t1=hint.t1,
            t2=hint.t2,
            capped_fraction=hint.capped_fraction,
            hp_locked_fraction=hint.hp_locked_fraction,
            status=SolveStatus.GREEDY,
            objective=hint.objective,
            bound=float(p.max_servers),
            wall_s=wall,
        )
    raise InputError(
        f"no row of {p.min_servers} or more servers fits the {B:.0f} W budget under the "
        f"constraints (CP-SAT: {status.value})",
        field="budget_w",
        expected="a larger budget, fewer servers, or looser capping limits",
    )

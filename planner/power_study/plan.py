"""Plan a row, verify it by in-loop replay, and trace the Pareto curve.

* :func:`plan_and_verify`: CP-SAT plan over the row's scenarios, then the plan is replayed with the POLCA
  policy in the simulator loop (:mod:`planner.power_study.verify`); a plan that fails gets a cut (fewer
  servers with those thresholds) and a tighter chance constraint, then the model is solved again.
* :func:`pareto`: for each row size from nameplate up, the thresholds with the least model time capped and
  no brake; the plan's size and a few others are verified by replay (``verified``), the rest are the
  model's estimate; the rows that no other row beats on servers, time capped and latency are marked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from planner.contracts.power import PolcaParams
from planner.power_study.row import Row, estimate, scenarios
from planner.power_study.verify import ReplayVerification, verify_by_replay
from solvers.power.cpsat import _series, evaluate, solve
from solvers.power.problem import PowerPlan, PowerProblem, SolveParams


@dataclass(frozen=True)
class Targets:
    """What a plan must meet when verified (issue 6 defaults)."""

    max_capped_fraction: float = 0.01
    hp_inflation: float = 0.05
    lp_inflation: float = 0.10


@dataclass(frozen=True)
class VerifiedPlan:
    """A plan and its verification by in-loop replay, with the solve rounds it took."""

    plan: PowerPlan
    verification: ReplayVerification
    rounds: int
    meets_targets: bool


def problem_for(
    row: Row,
    policy: PolcaParams,
    *,
    targets: Targets,
    min_hp_share: float = 0.5,
    max_hp_locked_fraction: float = 0.002,
) -> PowerProblem:
    """The solver's problem for a replayed row (budget, base, scenarios, clock model)."""
    return PowerProblem(
        budget_w=row.budget_w,
        base_w=row.spec.base_w,
        gpus_per_server=row.spec.gpus_per_server,
        tdp_w=row.gpu.tdp_w,
        scenarios=scenarios(row, telemetry_period_s=policy.telemetry_period_s),
        clock_model=row.clock_model,
        policy=policy,
        max_capped_fraction=targets.max_capped_fraction,
        max_hp_locked_fraction=max_hp_locked_fraction,
        min_hp_share=min_hp_share,
        max_servers=row.spec.pool_servers,
        min_servers=1,
    )


def replay_check(row: Row, *, hp_servers: int, lp_servers: int, policy: PolcaParams) -> ReplayVerification:
    """:func:`planner.power_study.verify.verify_by_replay` on the row's trace, load and first seed."""
    return verify_by_replay(
        row.trace,
        row.replay_setup,
        hp_servers=hp_servers,
        lp_servers=lp_servers,
        rps_per_server=row.spec.rps_per_server,
        policy=policy,
        seed=row.spec.seeds[0],
    )


def plan_and_verify(
    row: Row, problem: PowerProblem, *, params: SolveParams, targets: Targets, max_rounds: int = 5
) -> VerifiedPlan:
    """Solve, verify by in-loop replay, cut and re-solve until the verified plan meets ``targets``.

    Each failed round forbids the failed size for its threshold pair and scales the model's chance
    constraints down by how far the replay overshot, so the loop ends within ``max_rounds``. Returns the
    last plan (``meets_targets`` False when none passed): what is reported is always what was replayed.
    """
    cuts: dict[tuple[float, float], int] = {}
    p = problem
    last: VerifiedPlan | None = None
    for r in range(1, max_rounds + 1):
        plan = solve(p, params=params, cuts=cuts)
        ver = replay_check(
            row,
            hp_servers=plan.hp_servers,
            lp_servers=plan.lp_servers,
            policy=replace(problem.policy, t1=plan.t1, t2=plan.t2),
        )
        ok = ver.meets(
            max_capped_fraction=targets.max_capped_fraction,
            hp_inflation=targets.hp_inflation,
            lp_inflation=targets.lp_inflation,
        )
        last = VerifiedPlan(plan=plan, verification=ver, rounds=r, meets_targets=ok)
        if ok:
            return last
        key = (plan.t1, plan.t2)
        cuts[key] = min(cuts.get(key, plan.servers), plan.servers - 1)
        eps, hp_eps = p.max_capped_fraction, p.max_hp_locked_fraction
        if ver.capped_fraction > targets.max_capped_fraction:
            eps *= max(0.3, 0.9 * targets.max_capped_fraction / ver.capped_fraction)
        if ver.lp is not None and ver.lp.inflation > targets.lp_inflation:
            eps *= 0.5
        if ver.hp is not None and ver.hp.inflation > targets.hp_inflation:
            hp_eps *= 0.5
        p = replace(p, max_capped_fraction=eps, max_hp_locked_fraction=hp_eps)
        if min(cuts.values()) < p.min_servers:
            break
    assert last is not None
    return last


PARETO_SCHEMA: dict[str, type[pl.DataType]] = {
    "servers": pl.Int64,
    "hp_servers": pl.Int64,
    "extra_servers_pct": pl.Float64,
    "t1": pl.Float64,
    "t2": pl.Float64,
    "verified": pl.Boolean,
    "capped_fraction": pl.Float64,
    "hp_locked_fraction": pl.Float64,
    "lp_locked_fraction": pl.Float64,
    "brake_events": pl.Int64,
    "peak_row_fraction": pl.Float64,
    "hp_p99_inflation": pl.Float64,
    "lp_p99_inflation": pl.Float64,
    "hp_attainment": pl.Float64,
    "lp_attainment": pl.Float64,
    "pareto": pl.Boolean,
}
"""Columns of the Pareto table (one row per row size; ``verified``: from an in-loop replay, else the
model's estimate)."""


def _pick(sizes: list[int], must: set[int], k: int) -> set[int]:
    """``must`` plus up to ``k`` sizes spread evenly over ``sizes`` (the ends first)."""
    if k <= 0 or not sizes:
        return must & set(sizes)
    idx = np.unique(np.round(np.linspace(0, len(sizes) - 1, min(k, len(sizes)))).astype(int))
    return (must & set(sizes)) | {sizes[int(i)] for i in idx}


def pareto(
    row: Row,
    problem: PowerProblem,
    *,
    nameplate: int,
    step: int = 1,
    max_servers: int | None = None,
    verify_sizes: int = 3,
    verified: dict[int, ReplayVerification] | None = None,
) -> pl.DataFrame:
    """Extra servers vs time capped vs latency inflation, one row per size.

    For each size from ``nameplate`` up to ``max_servers`` (default: the pool), the threshold pair with
    the least model time capped and no brake period is chosen; sizes whose model already brakes with
    every pair end the curve. ``verify_sizes`` sizes spread over the curve (and every size in
    ``verified``, replays already run, e.g. the plan's) are replayed with the policy in the loop; the
    others carry the model's estimate (``verified`` False).
    """
    s = _series(problem)
    top = row.spec.pool_servers if max_servers is None else min(max_servers, row.spec.pool_servers)
    chosen: list[tuple[int, int, float, float]] = []
    done = dict(verified or {})
    lo = max(1, nameplate)
    sizes = sorted(set(range(lo, top + 1, max(1, step))) | {k for k in done if lo <= k <= top})
    for n in sizes:
        if n in done:
            chosen.append((n, done[n].hp_servers, done[n].t1, done[n].t2))
            continue
        hp = problem.hp_min(n)
        best: tuple[float, float, float] | None = None
        for t1, t2 in problem.threshold_pairs():
            chk = evaluate(problem, hp, n - hp, t1, t2, s)
            if chk.brake_periods == 0 and (best is None or chk.capped_fraction < best[0]):
                best = (chk.capped_fraction, t1, t2)
        if best is None:
            break
        chosen.append((n, hp, best[1], best[2]))
    replay_at = _pick([c[0] for c in chosen], set(done), verify_sizes)
    rows: list[dict[str, object]] = []
    for n, hp, t1, t2 in chosen:
        pol = replace(problem.policy, t1=t1, t2=t2)
        rv = done.get(n)
        if rv is None and n in replay_at:
            rv = replay_check(row, hp_servers=hp, lp_servers=n - hp, policy=pol)
        if rv is not None:
            vals = (rv.t1, rv.t2, rv.capped_fraction, rv.hp_locked_fraction, rv.lp_locked_fraction,
                    rv.brake_events, rv.peak_row_fraction, rv.hp, rv.lp, rv.hp_servers)
        else:
            e = estimate(row, hp_servers=hp, lp_servers=n - hp, policy=pol)
            vals = (t1, t2, e.capped_fraction, e.hp_locked_fraction, e.lp_locked_fraction,
                    e.brake_events, e.peak_row_fraction, e.hp, e.lp, hp)
        r1, r2, capf, hpf, lpf, brakes, peak, hpl, lpl, hps = vals
        rows.append(
            {
                "servers": n,
                "hp_servers": hps,
                "extra_servers_pct": 100.0 * (n / nameplate - 1.0),
                "t1": r1,
                "t2": r2,
                "verified": rv is not None,
                "capped_fraction": capf,
                "hp_locked_fraction": hpf,
                "lp_locked_fraction": lpf,
                "brake_events": brakes,
                "peak_row_fraction": peak,
                "hp_p99_inflation": hpl.inflation if hpl else 0.0,
                "lp_p99_inflation": lpl.inflation if lpl else 0.0,
                "hp_attainment": hpl.attainment if hpl else float("nan"),
                "lp_attainment": lpl.attainment if lpl else float("nan"),
                "pareto": False,
            }
        )
    df = pl.DataFrame(rows, schema=PARETO_SCHEMA)
    if df.height == 0:
        return df
    return df.with_columns(pl.Series("pareto", _non_dominated(df)))


def _non_dominated(df: pl.DataFrame) -> list[bool]:
    """More servers is better; less time capped and less inflation are better; brakes disqualify."""
    n = df["servers"].to_numpy()
    cost = np.column_stack(
        [
            df["capped_fraction"].to_numpy(),
            np.maximum(df["hp_p99_inflation"].to_numpy(), 0.0),
            np.maximum(df["lp_p99_inflation"].to_numpy(), 0.0),
        ]
    )
    brake = df["brake_events"].to_numpy() > 0
    out = []
    for i in range(df.height):
        dominated = brake[i] or any(
            not brake[j]
            and n[j] >= n[i]
            and (cost[j] <= cost[i] + 1e-12).all()
            and (n[j] > n[i] or (cost[j] < cost[i] - 1e-12).any())
            for j in range(df.height)
            if j != i
        )
        out.append(not dominated)
    return out

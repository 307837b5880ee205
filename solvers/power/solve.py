"""Plan a row, verify it by replay, compare with nameplate and Dynamo, and trace the Pareto curve.

* :func:`plan_and_verify`: CP-SAT plan over the row's scenarios, checked by running the policy over the
  replayed per-server power and adding the locks to the replayed requests; a plan that fails gets a cut
  (fewer servers with those thresholds) and a tighter chance constraint, then the model is solved again.
* :func:`nameplate_servers` and :func:`dynamo_servers`: the two provisioning rules to beat.
* :func:`pareto`: for each row size from nameplate up, the thresholds with the least time capped and no
  brake, verified; the rows that no other row beats on servers, time capped and latency are marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from planner.perf.api import ReplicaPerf
from planner.power.policy import PolcaParams
from planner.sim import replay
from solvers.power.cpsat import _series, evaluate, solve
from solvers.power.problem import PowerPlan, PowerProblem, SolveParams
from solvers.power.row import Row, Verification, pool_config, scenarios, verify, verify_plan
from traces.errors import InputError
from traces.schema import RequestTrace
from traces.transforms import scale_rate


@dataclass(frozen=True)
class Targets:
    """What a plan must meet when verified (issue 6 defaults)."""

    max_capped_fraction: float = 0.01
    hp_inflation: float = 0.05
    lp_inflation: float = 0.10


@dataclass(frozen=True)
class VerifiedPlan:
    """A plan and its verification, with the solve rounds it took."""

    plan: PowerPlan
    verification: Verification
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


def plan_and_verify(
    row: Row, problem: PowerProblem, *, params: SolveParams, targets: Targets, max_rounds: int = 5
) -> VerifiedPlan:
    """Solve, verify by replay, cut and re-solve until the verified plan meets ``targets``.

    Each failed round forbids the failed size for its threshold pair and scales the model's chance
    constraints down by how far the verification overshot, so the loop ends within ``max_rounds``.
    Returns the last plan (``meets_targets`` False when none passed).
    """
    cuts: dict[tuple[float, float], int] = {}
    p = problem
    last: VerifiedPlan | None = None
    for r in range(1, max_rounds + 1):
        plan = solve(p, params=params, cuts=cuts)
        ver = verify_plan(row, plan, problem.policy)
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


def nameplate_servers(budget_w: float, *, gpus_per_server: int, tdp_w: float, base_w: float) -> int:
    """Servers a budget takes at nameplate: ``floor(B / (TDP x GPUs + base))``.

    >>> nameplate_servers(284_000, gpus_per_server=8, tdp_w=700, base_w=1500)
    40
    """
    return math.floor(budget_w / (tdp_w * gpus_per_server + base_w) + 1e-9)


def dynamo_servers(
    budget_w: float, *, gpus_per_server: int, cap_w: float, base_w: float, headroom: float = 0.9
) -> int:
    """NVIDIA Dynamo's power-planner rule: per-pod GPU caps x replicas within the budget.

    Dynamo budgets ``total_gpu_power_limit = rack_W * (0.85..0.9) - non-GPU overhead`` and admits
    replicas while ``sum(cap x GPUs)`` fits (design notes area A3); with the non-GPU overhead of each
    server counted, that is ``floor(headroom B / (cap x GPUs + base))``.

    >>> dynamo_servers(284_000, gpus_per_server=8, cap_w=490, base_w=1500)
    47
    """
    if not 0 < headroom <= 1:
        raise InputError(f"headroom {headroom}", field="headroom", expected="0 < headroom <= 1")
    return math.floor(headroom * budget_w / (cap_w * gpus_per_server + base_w) + 1e-9)


def cap_clock_mhz(
    perf: ReplicaPerf,
    *,
    cap_w: float,
    max_clock_mhz: float,
    min_clock_mhz: float,
    max_batched_tokens: int = 8192,
) -> float:
    """The highest clock at which the hungriest step (a full prefill batch) stays under ``cap_w`` per GPU:
    how a power cap is modelled for the replay (the GPU's power manager lowers the clock until it fits)."""
    n = float(max_batched_tokens)

    def power(c: float) -> float:
        p = perf.at_clock(c) if c < max_clock_mhz else perf
        return float(p.step_power_w(n, n * (n + 1) / 2, 0.0, 0.0))

    if power(max_clock_mhz) <= cap_w:
        return max_clock_mhz
    lo, hi = min_clock_mhz, max_clock_mhz
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(mid) <= cap_w else (lo, mid)
    return lo


def capped_attainment(
    trace: RequestTrace, perf: ReplicaPerf, *, row: Row, servers: int, clock_mhz: float, seed: int = 0
) -> float:
    """SLO attainment of ``servers`` servers at the row's per-server load with every GPU at ``clock_mhz``
    (a real replay: how Dynamo's capped pods serve the same traffic)."""
    spec = row.spec
    p = perf.at_clock(clock_mhz) if clock_mhz < row.gpu.max_sm_clock_mhz else perf
    factor = servers * spec.rps_per_server * trace.duration_s / trace.num_requests
    cfg = pool_config(
        replace(spec, pool_servers=servers, nameplate_servers=min(spec.nameplate_servers, servers)), seed
    )
    res = replay(scale_rate(trace, factor, seed=seed), p, config=cfg)
    cls = res.summary.classes
    total = sum(c.requests for c in cls)
    return float(sum(c.attainment * c.requests for c in cls) / total) if total else float("nan")


PARETO_SCHEMA: dict[str, type[pl.DataType]] = {
    "servers": pl.Int64,
    "hp_servers": pl.Int64,
    "extra_servers_pct": pl.Float64,
    "t1": pl.Float64,
    "t2": pl.Float64,
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
"""Columns of the Pareto table (one row per row size)."""


def pareto(
    row: Row, problem: PowerProblem, *, nameplate: int, step: int = 1, max_servers: int | None = None
) -> pl.DataFrame:
    """Extra servers vs time capped vs latency inflation, one verified row per size.

    For each size from ``nameplate`` up to ``max_servers`` (default: the pool), the threshold pair with
    the least model time capped and no brake period is verified by replay; sizes whose model already
    brakes with every pair end the curve.
    """
    s = _series(problem)
    top = row.spec.pool_servers if max_servers is None else min(max_servers, row.spec.pool_servers)
    rows: list[dict[str, object]] = []
    for n in range(max(1, nameplate), top + 1, max(1, step)):
        hp = problem.hp_min(n)
        best: tuple[float, float, float] | None = None
        for t1, t2 in problem.threshold_pairs():
            chk = evaluate(problem, hp, n - hp, t1, t2, s)
            if chk.brake_periods == 0 and (best is None or chk.capped_fraction < best[0]):
                best = (chk.capped_fraction, t1, t2)
        if best is None:
            break
        v = verify(
            row, hp_servers=hp, lp_servers=n - hp, policy=replace(problem.policy, t1=best[1], t2=best[2])
        )
        rows.append(
            {
                "servers": n,
                "hp_servers": hp,
                "extra_servers_pct": 100.0 * (n / nameplate - 1.0),
                "t1": best[1],
                "t2": best[2],
                "capped_fraction": v.capped_fraction,
                "hp_locked_fraction": v.hp_locked_fraction,
                "lp_locked_fraction": v.lp_locked_fraction,
                "brake_events": v.brake_events,
                "peak_row_fraction": v.peak_row_fraction,
                "hp_p99_inflation": v.hp.inflation if v.hp else 0.0,
                "lp_p99_inflation": v.lp.inflation if v.lp else 0.0,
                "hp_attainment": v.hp.attainment if v.hp else float("nan"),
                "lp_attainment": v.lp.attainment if v.lp else float("nan"),
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

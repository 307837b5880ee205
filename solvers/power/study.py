"""The whole power study of issue 6 in one call: replay the row, plan, verify, compare, Pareto curve.

Surfaces (``fleetwise power``) print what :func:`run_study` returns and compute nothing themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import polars as pl

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.power.policy import PolcaParams
from solvers.power.problem import SolveParams
from solvers.power.row import Row, RowSpec, build_row
from solvers.power.solve import (
    Targets,
    VerifiedPlan,
    cap_clock_mhz,
    capped_attainment,
    dynamo_servers,
    nameplate_servers,
    pareto,
    plan_and_verify,
    problem_for,
)
from traces.schema import RequestTrace


@dataclass(frozen=True)
class DynamoBaseline:
    """Dynamo's power-planner rule on the same row.

    Attributes:
        servers: ``floor(headroom B / (cap x GPUs + base))``.
        cap_w: per-GPU cap.
        headroom: share of the budget Dynamo hands out.
        cap_clock_mhz: the clock the cap holds the hungriest step to (how the replay models the cap).
        attainment: SLO attainment of the capped servers at the row's per-server load (replayed).
    """

    servers: int
    cap_w: float
    headroom: float
    cap_clock_mhz: float
    attainment: float


@dataclass(frozen=True, eq=False)
class PowerStudy:
    """Everything ``fleetwise power`` reports.

    Attributes:
        row: the replayed row (spec, budget, scenarios).
        nameplate: servers at nameplate (TDP x GPUs + base).
        dynamo: Dynamo's rule and its replayed attainment.
        verified: our plan and its verification.
        plan_attainment: SLO attainment of our plan's requests with the locks added (worst tier).
        pareto: the Pareto table (:data:`solvers.power.solve.PARETO_SCHEMA`).
        wall_s: the study's wall time.
    """

    row: Row
    nameplate: int
    dynamo: DynamoBaseline
    verified: VerifiedPlan
    plan_attainment: float
    pareto: pl.DataFrame
    wall_s: float

    @property
    def extra_vs_nameplate(self) -> float:
        return self.verified.plan.servers / self.nameplate - 1.0

    @property
    def extra_vs_dynamo(self) -> float:
        return self.verified.plan.servers / max(self.dynamo.servers, 1) - 1.0

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        v = self.verified.verification
        p = self.verified.plan
        return {
            "budget_w": self.row.budget_w,
            "base_w": self.row.spec.base_w,
            "nameplate_servers": self.nameplate,
            "dynamo": self.dynamo.__dict__.copy(),
            "plan": {
                "servers": p.servers,
                "hp_servers": p.hp_servers,
                "lp_servers": p.lp_servers,
                "t1": p.t1,
                "t2": p.t2,
                "status": p.status.value,
                "objective": p.objective,
                "bound": p.bound,
                "wall_s": p.wall_s,
                "rounds": self.verified.rounds,
            },
            "verified": {
                "capped_fraction": v.capped_fraction,
                "hp_locked_fraction": v.hp_locked_fraction,
                "lp_locked_fraction": v.lp_locked_fraction,
                "brake_events": v.brake_events,
                "peak_row_fraction": v.peak_row_fraction,
                "hp_p99_inflation": v.hp.inflation if v.hp else None,
                "lp_p99_inflation": v.lp.inflation if v.lp else None,
                "attainment": self.plan_attainment,
                "meets_targets": self.verified.meets_targets,
            },
            "extra_vs_nameplate": self.extra_vs_nameplate,
            "extra_vs_dynamo": self.extra_vs_dynamo,
            "wall_s": self.wall_s,
        }


def run_study(
    trace: RequestTrace,
    *,
    model: ModelSpec,
    gpu: GPUSpec,
    spec: RowSpec,
    policy: PolcaParams,
    targets: Targets,
    params: SolveParams,
    min_hp_share: float = 0.5,
    dynamo_cap_w: float | None = None,
    dynamo_headroom: float = 0.9,
    pareto_step: int = 2,
) -> PowerStudy:
    """Replay the row, plan and verify it, and put nameplate and Dynamo beside it.

    Args:
        trace: the request trace (scaled to the row's pool).
        model, gpu: what the servers run.
        spec: the row.
        policy: POLCA knobs (``t1``/``t2`` are chosen by the solver).
        targets: the verified targets.
        params: CP-SAT controls.
        min_hp_share: share of high-priority servers.
        dynamo_cap_w: Dynamo's per-GPU cap (default 70 % of TDP, its fail-closed default).
        dynamo_headroom: share of the budget Dynamo hands out (its guidance: 0.85-0.9).
        pareto_step: server step of the Pareto curve.
    """
    t0 = time.perf_counter()
    row = build_row(trace, model=model, gpu=gpu, spec=spec, policy=policy)
    problem = problem_for(row, policy, targets=targets, min_hp_share=min_hp_share)
    verified = plan_and_verify(row, problem, params=params, targets=targets)
    ver = verified.verification
    att = [t.attainment for t in (ver.hp, ver.lp) if t is not None]
    n0 = nameplate_servers(
        row.budget_w, gpus_per_server=spec.gpus_per_server, tdp_w=gpu.tdp_w, base_w=spec.base_w
    )
    cap = 0.7 * gpu.tdp_w if dynamo_cap_w is None else dynamo_cap_w
    n_dyn = dynamo_servers(
        row.budget_w,
        gpus_per_server=spec.gpus_per_server,
        cap_w=cap,
        base_w=spec.base_w,
        headroom=dynamo_headroom,
    )
    top = gpu.max_sm_clock_mhz if spec.sm_clock_mhz is None else spec.sm_clock_mhz
    clk = cap_clock_mhz(row.perf, cap_w=cap, max_clock_mhz=top, min_clock_mhz=gpu.min_sm_clock_mhz)
    dyn_att = capped_attainment(
        trace, row.perf, row=row, servers=max(1, min(n_dyn, 8)), clock_mhz=clk, seed=spec.seeds[0]
    )
    curve = pareto(row, problem, nameplate=n0, step=pareto_step)
    return PowerStudy(
        row=row,
        nameplate=n0,
        dynamo=DynamoBaseline(
            servers=n_dyn, cap_w=cap, headroom=dynamo_headroom, cap_clock_mhz=clk, attainment=dyn_att
        ),
        verified=verified,
        plan_attainment=min(att) if att else float("nan"),
        pareto=curve,
        wall_s=time.perf_counter() - t0,
    )

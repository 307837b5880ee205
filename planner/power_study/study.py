"""The whole power study of issue 6 in one call: replay the row, plan, verify, compare, Pareto curve.

Surfaces (``fleetwise power``) print what :func:`run_study` returns and compute nothing themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.contracts.power import PolcaParams
from planner.power_study.plan import (
    Targets,
    VerifiedPlan,
    pareto,
    plan_and_verify,
    problem_for,
)
from planner.power_study.row import Row, RowSpec, build_row
from planner.power_study.verify import attainment, row_trace
from planner.sim import SimConfig, replay
from solvers.power.dynamo import (
    Corrections,
    DynamoChoice,
    cap_clock_for_point,
    choose,
    corrections_from_replay,
    operating_points,
)
from solvers.power.problem import SolveParams, nameplate_servers
from traces.schema import RequestTrace

ATTAINMENT_TOLERANCE = 0.001
"""Attainments within 0.1 percentage point count as equal (one request in a thousand)."""


@dataclass(frozen=True)
class DynamoBaseline:
    """Dynamo's power-planner rule on the same row, and its fleet replayed under its cap.

    Attributes:
        servers: servers its budget admits (``floor(headroom B / (cap x GPUs + base))``).
        cap_w: per-GPU cap ``ceil(aic_power_w x max(1, c_power))``.
        aic_power_w: the predicted per-GPU draw of the chosen operating point.
        batch: the chosen operating point's running sequences.
        c_power, c_ttft, c_itl: the corrections after watching its own fleet.
        headroom: share of the budget Dynamo hands out.
        cap_clock_mhz: the clock the cap holds the operating point's step to (how the replay models it).
        attainment: SLO attainment of its fleet (replayed at the row's per-server load, capped).
        ttft_p99_s, tpot_p99_s: p99 latency of its fleet.
        rounds: choose-replay rounds until the corrections stopped moving the choice.
    """

    servers: int
    cap_w: float
    aic_power_w: float
    batch: int
    c_power: float
    c_ttft: float
    c_itl: float
    headroom: float
    cap_clock_mhz: float
    attainment: float
    ttft_p99_s: float
    tpot_p99_s: float
    rounds: int


@dataclass(frozen=True, eq=False)
class PowerStudy:
    """Everything ``fleetwise power`` reports.

    Attributes:
        row: the replayed row (spec, budget, scenarios).
        nameplate: servers at nameplate (TDP x GPUs + base).
        dynamo: Dynamo's rule and its replayed attainment.
        verified: our plan and its verification by in-loop replay.
        pareto: the Pareto table (:data:`planner.power_study.plan.PARETO_SCHEMA`).
        wall_s: the study's wall time.
    """

    row: Row
    nameplate: int
    dynamo: DynamoBaseline
    verified: VerifiedPlan
    pareto: pl.DataFrame
    wall_s: float

    @property
    def plan_attainment(self) -> float:
        """SLO attainment of our row in its capped replay."""
        return self.verified.verification.attainment

    @property
    def extra_vs_nameplate(self) -> float:
        return self.verified.plan.servers / self.nameplate - 1.0

    @property
    def extra_vs_dynamo(self) -> float:
        return self.verified.plan.servers / max(self.dynamo.servers, 1) - 1.0

    @property
    def attainment_at_least_dynamo(self) -> bool:
        """Whether our replayed attainment is equal to (within 0.1 pp) or better than Dynamo's."""
        return self.plan_attainment >= self.dynamo.attainment - ATTAINMENT_TOLERANCE

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        v = self.verified.verification
        p = self.verified.plan
        return {
            "engine": self.row.spec.engine,
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
            "verified_by_replay": {
                "requests": v.requests,
                "capped_fraction": v.capped_fraction,
                "hp_locked_fraction": v.hp_locked_fraction,
                "lp_locked_fraction": v.lp_locked_fraction,
                "brake_events": v.brake_events,
                "peak_row_fraction": v.peak_row_fraction,
                "mean_row_fraction": v.mean_row_fraction,
                "hp_p99_inflation": v.hp.inflation if v.hp else None,
                "hp_ttft_p99_inflation": v.hp.ttft_inflation if v.hp else None,
                "hp_tpot_p99_inflation": v.hp.tpot_inflation if v.hp else None,
                "lp_p99_inflation": v.lp.inflation if v.lp else None,
                "lp_ttft_p99_inflation": v.lp.ttft_inflation if v.lp else None,
                "lp_tpot_p99_inflation": v.lp.tpot_inflation if v.lp else None,
                "attainment": v.attainment,
                "attainment_uncapped": v.attainment_reference,
                "meets_targets": self.verified.meets_targets,
            },
            "extra_vs_nameplate": self.extra_vs_nameplate,
            "extra_vs_dynamo": self.extra_vs_dynamo,
            "attainment_at_least_dynamo": self.attainment_at_least_dynamo,
            "wall_s": self.wall_s,
        }


def _p99(s: pl.Series) -> float:
    x = s.drop_nulls().to_numpy()
    return float(np.percentile(x, 99)) if x.size else float("nan")


def dynamo_baseline(row: Row, *, headroom: float = 0.9, max_rounds: int = 3) -> DynamoBaseline:
    """Choose Dynamo's operating point and cap, replay its fleet under the cap, correct, repeat.

    The fleet carries the row's per-server load (``rps_per_server``), like ours; its requests are not
    tiered (Dynamo has no priorities). Ends when the corrections no longer change the cap or the count.
    """
    spec = row.spec
    df = row.trace.df
    mean_in = float(df["input_tokens"].mean())  # type: ignore[arg-type]
    mean_out = float(df["output_tokens"].mean())  # type: ignore[arg-type]
    pts = operating_points(row.perf, mean_in=mean_in, mean_out=mean_out)
    top = row.gpu.max_sm_clock_mhz if spec.sm_clock_mhz is None else spec.sm_clock_mhz
    corr = Corrections()
    seen: set[tuple[float, int]] = set()
    rounds = 0
    while True:
        rounds += 1
        ch: DynamoChoice = choose(
            pts,
            budget_w=row.budget_w,
            slo=spec.slo,
            gpus_per_server=spec.gpus_per_server,
            replicas_per_server=spec.replicas_per_server,
            base_w=spec.base_w,
            headroom=headroom,
            corrections=corr,
        )
        clk = cap_clock_for_point(
            row.perf, ch.point, cap_w=ch.cap_w, max_clock_mhz=top, min_clock_mhz=row.gpu.min_sm_clock_mhz,
            mean_in=mean_in, mean_out=mean_out,
        )
        perf = row.perf.at_clock(clk) if clk < top else row.perf
        tr = row_trace(row.trace, servers=ch.servers, hp_servers=ch.servers,
                       rps_per_server=spec.rps_per_server, seed=spec.seeds[0])
        res = replay(
            tr, perf, gpu=row.gpu,
            config=SimConfig(replicas=ch.servers * spec.replicas_per_server, interval_s=10.0,
                             default_slo=spec.slo, engine=row.engine),
        )
        key = (ch.cap_w, ch.servers)
        new = corrections_from_replay(res.requests, res.power, ch.point)
        if key in seen or rounds >= max_rounds:
            break
        seen.add(key)
        nxt = choose(
            pts, budget_w=row.budget_w, slo=spec.slo, gpus_per_server=spec.gpus_per_server,
            replicas_per_server=spec.replicas_per_server, base_w=spec.base_w, headroom=headroom,
            corrections=new,
        )
        corr = new
        if (nxt.cap_w, nxt.servers) == key:
            break
    req = res.requests
    return DynamoBaseline(
        servers=ch.servers,
        cap_w=ch.cap_w,
        aic_power_w=ch.point.power_w,
        batch=ch.point.batch,
        c_power=new.c_power,
        c_ttft=new.c_ttft,
        c_itl=new.c_itl,
        headroom=headroom,
        cap_clock_mhz=clk,
        attainment=attainment(req, spec.slo),
        ttft_p99_s=_p99(req["ttft_s"]),
        tpot_p99_s=_p99(req["tpot_s"]),
        rounds=rounds,
    )


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
    dynamo_headroom: float = 0.9,
    pareto_step: int = 2,
    pareto_verify: int = 3,
) -> PowerStudy:
    """Replay the row, plan it and verify by in-loop replay, and put nameplate and Dynamo beside it.

    Args:
        trace: the request trace (scaled to the row's pool).
        model, gpu: what the servers run.
        spec: the row.
        policy: POLCA knobs (``t1``/``t2`` are chosen by the solver).
        targets: the verified targets.
        params: CP-SAT controls.
        min_hp_share: share of high-priority servers.
        dynamo_headroom: share of the budget Dynamo hands out (its guidance: 0.85-0.9).
        pareto_step: server step of the Pareto curve.
        pareto_verify: Pareto sizes replayed besides the plan's (the rest are model estimates).
    """
    t0 = time.perf_counter()
    row = build_row(trace, model=model, gpu=gpu, spec=spec, policy=policy)
    problem = problem_for(row, policy, targets=targets, min_hp_share=min_hp_share)
    verified = plan_and_verify(row, problem, params=params, targets=targets)
    n0 = nameplate_servers(
        row.budget_w, gpus_per_server=spec.gpus_per_server, tdp_w=gpu.tdp_w, base_w=spec.base_w
    )
    dyn = dynamo_baseline(row, headroom=dynamo_headroom)
    curve = pareto(
        row, problem, nameplate=n0, step=pareto_step, verify_sizes=pareto_verify,
        verified={verified.plan.servers: verified.verification} if verified.meets_targets else None,
    )
    return PowerStudy(
        row=row,
        nameplate=n0,
        dynamo=dyn,
        verified=verified,
        pareto=curve,
        wall_s=time.perf_counter() - t0,
    )

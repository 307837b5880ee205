"""The power study end to end on the real Azure conversation trace (a 10-minute slice, a small row),
verified by replay with POLCA capping in the simulator loop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.contracts.power import DEFAULT_BASE_W, PolcaParams
from planner.power_study.plan import PARETO_SCHEMA, Targets, replay_check
from planner.power_study.row import RowSpec
from planner.power_study.study import PowerStudy, run_study
from solvers.power.dynamo import cap_for, dynamo_servers_for_cap
from solvers.power.problem import SolveParams
from solvers.status import SolveStatus
from traces.errors import InputError
from traces.load import load_trace
from traces.transforms import slice_time


@pytest.fixture(scope="module")
def study(shared_traces: Path) -> PowerStudy:
    cat = load_catalog()
    trace = slice_time(
        load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"), 0.0, 600.0
    )
    spec = RowSpec(tp=8, nameplate_servers=6, pool_servers=10, rps_per_server=4.0)
    return run_study(
        trace,
        model=cat.model("Llama-3.1-70B"),
        gpu=cat.gpu("H100-SXM"),
        spec=spec,
        policy=PolcaParams(),
        targets=Targets(),
        params=SolveParams(time_limit_s=10, seed=0),
        pareto_step=1,
    )


def test_plan_beats_nameplate_and_is_verified_by_replay(study: PowerStudy) -> None:
    v = study.verified
    assert v.plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE, SolveStatus.GREEDY)
    assert v.meets_targets
    assert study.nameplate == 6 and study.row.budget_w == 6 * (8 * 700 + DEFAULT_BASE_W)
    # a 70B TP8 server at 4 req/s draws far below 8 x 700 W: the row takes more servers than nameplate
    assert v.plan.servers > study.nameplate
    ver = v.verification
    assert ver.servers == v.plan.servers and ver.requests > 1000
    assert ver.brake_events == 0 and ver.capped_fraction <= 0.01
    assert ver.hp is not None and ver.hp.inflation <= 0.05 and ver.hp.requests > 0
    assert ver.peak_row_fraction < 1.0
    assert study.plan_attainment > 0.99
    # the verdict is a deterministic replay: running it again gives the same numbers
    again = replay_check(
        study.row,
        hp_servers=v.plan.hp_servers,
        lp_servers=v.plan.lp_servers,
        policy=replace(PolcaParams(), t1=v.plan.t1, t2=v.plan.t2),
    )
    assert again == ver


def test_in_loop_capping_slows_the_locked_tier(study: PowerStudy) -> None:
    """A first threshold the row always exceeds: LP servers are locked nearly all the time, and the
    replay (not an estimate) shows their p99 latency inflated while HP, locked far less, is not."""
    ver = replay_check(study.row, hp_servers=4, lp_servers=4, policy=PolcaParams(t1=0.5, t2=0.99))
    assert ver.lp_locked_fraction > 0.9 and ver.capped_fraction > 0.9
    assert ver.hp_locked_fraction < 0.05 and ver.brake_events == 0
    assert ver.lp is not None and ver.lp.inflation > 0.05 and ver.lp.affected > 0.9
    assert ver.hp is not None and ver.hp.affected < 0.1 and ver.hp.inflation < ver.lp.inflation


def test_dynamo_rule_is_replayed(study: PowerStudy) -> None:
    d = study.dynamo
    # the published bridge and budget: cap = ceil(aic x max(1, c_power)); floor(0.9 B / (8 cap + base))
    assert d.cap_w == cap_for(d.aic_power_w, d.c_power) and d.cap_w >= d.aic_power_w
    assert d.servers == dynamo_servers_for_cap(
        study.row.budget_w, cap_w=d.cap_w, gpus_per_server=8, base_w=DEFAULT_BASE_W, headroom=0.9
    )
    assert 0.5 <= d.c_power <= 2.0 and 0.5 <= d.c_ttft <= 2.0
    assert d.batch >= 1 and 0.0 <= d.attainment <= 1.0
    assert d.cap_clock_mhz == pytest.approx(1980.0)  # the cap sits at the operating point's draw
    assert study.as_dict()["attainment_at_least_dynamo"] in (True, False)


def test_pareto_curve(study: PowerStudy) -> None:
    df = study.pareto
    assert dict(df.schema) == {k: v for k, v in PARETO_SCHEMA.items()}
    assert df["servers"].to_list() == sorted(df["servers"].to_list()) and df["servers"][0] == 6
    assert df["pareto"].any()
    assert df["verified"].any() and study.verified.plan.servers in df.filter("verified")["servers"].to_list()
    first, last = df.row(0, named=True), df.row(-1, named=True)
    assert last["peak_row_fraction"] >= first["peak_row_fraction"] - 0.05
    assert (df["capped_fraction"].to_numpy() >= 0).all()
    d = study.as_dict()
    assert d["nameplate_servers"] == 6 and np.isfinite(float(d["extra_vs_nameplate"]))  # type: ignore[arg-type]


def test_row_spec_errors() -> None:
    with pytest.raises(InputError, match="tp"):
        RowSpec(tp=3)
    with pytest.raises(InputError):
        RowSpec(nameplate_servers=10, pool_servers=5)


def test_in_loop_replay_without_locks_equals_the_reference(study: PowerStudy) -> None:
    """With a budget never approached, the in-loop replay (two pools, power in the loop) gives exactly
    the per-tier plain replays it is compared with: any inflation measured is the locks' doing."""
    roomy = replace(study.row, budget_w=1e9)
    ver = replay_check(roomy, hp_servers=3, lp_servers=2, policy=PolcaParams())
    assert ver.capped_fraction == 0.0 and ver.brake_events == 0
    for t in (ver.hp, ver.lp):
        assert t is not None and t.requests > 0
        assert t.ttft_p99_s == t.ttft_p99_base_s and t.tpot_p99_s == t.tpot_p99_base_s
    assert ver.attainment == ver.attainment_reference


def test_dynamo_rule_units() -> None:
    from planner.sim import SLOTarget
    from solvers.power.dynamo import Corrections, OperatingPoint, choose, ema

    assert cap_for(480.0, 1.04) == 500.0 and cap_for(480.0, 0.7) == 480.0  # never below the estimate
    assert ema([]) == 1.0 and ema([9.0] * 20) == 2.0 and ema([0.1] * 20) == 0.5  # clamped to [0.5, 2]
    pts = (
        OperatingPoint(64, 300.0, 0.02, 0.1, 400.0, 3200.0),
        OperatingPoint(256, 1200.0, 0.05, 0.1, 500.0, 5120.0),
        OperatingPoint(512, 2400.0, 0.2, 0.1, 560.0, 2560.0),  # misses the ITL gate
    )
    kw = dict(budget_w=100_000.0, gpus_per_server=8, replicas_per_server=1, base_w=2880.0, headroom=0.9)
    ch = choose(pts, slo=SLOTarget(2.0, 0.1), corrections=Corrections(), **kw)  # type: ignore[arg-type]
    # 256: 13 servers x 5120 tok/s beats 64: 14 servers x 3200
    assert ch.point.batch == 256 and ch.servers == 13 and ch.feasible_points == 2
    # a live ITL correction of 2.5 pushes the 256-batch point over the 100 ms gate
    ch2 = choose(pts, slo=SLOTarget(2.0, 0.1), corrections=Corrections(c_itl=2.5), **kw)  # type: ignore[arg-type]
    assert ch2.point.batch == 64 and ch2.servers == 14
    with pytest.raises(InputError):
        choose(pts, slo=SLOTarget(0.01, 0.1), corrections=Corrections(), **kw)  # type: ignore[arg-type]

"""The power study end to end on the real Azure conversation trace (a 10-minute slice, a small row)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.power.policy import PolcaParams
from solvers.power.problem import SolveParams, SolveStatus
from solvers.power.row import RowSpec, verify
from solvers.power.solve import PARETO_SCHEMA, Targets
from solvers.power.study import PowerStudy, run_study
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


def test_plan_beats_nameplate_and_is_verified(study: PowerStudy) -> None:
    v = study.verified
    assert v.plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE, SolveStatus.GREEDY)
    assert v.meets_targets
    assert study.nameplate == 6 and study.row.budget_w == 6 * (8 * 700 + 1500)
    # a 70B TP8 server at 4 req/s draws far below 8 x 700 W: the row takes more servers than nameplate
    assert v.plan.servers > study.nameplate
    ver = v.verification
    assert ver.brake_events == 0 and ver.capped_fraction <= 0.01
    assert ver.hp is not None and ver.hp.inflation <= 0.05
    assert study.plan_attainment > 0.99
    # the verification is the policy run over the row's own replayed servers
    again = verify(
        study.row,
        hp_servers=v.plan.hp_servers,
        lp_servers=v.plan.lp_servers,
        policy=replace(PolcaParams(), t1=v.plan.t1, t2=v.plan.t2),
    )
    assert again == ver


def test_dynamo_baseline_is_replayed_under_its_cap(study: PowerStudy) -> None:
    d = study.dynamo
    assert d.cap_w == pytest.approx(490.0) and d.servers == int(0.9 * study.row.budget_w // (8 * 490 + 1500))
    assert 345.0 <= d.cap_clock_mhz < 1980.0  # a full prefill batch draws more than 490 W at full clock
    assert 0.0 <= d.attainment <= 1.0


def test_pareto_curve(study: PowerStudy) -> None:
    df = study.pareto
    assert dict(df.schema) == {k: v for k, v in PARETO_SCHEMA.items()}
    assert df["servers"].to_list() == sorted(df["servers"].to_list()) and df["servers"][0] == 6
    assert df["pareto"].any()
    # more servers never lower the unlocked peak: the verified peak row power grows with the row
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

"""The walking-skeleton planner: demand from a trace, candidate sizing, the cheapest feasible choice."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.plan import SLO, PlanProblem, demand_from_trace, solve
from traces.default import default_trace
from traces.errors import InputError
from traces.schema import RequestTrace


@pytest.fixture(scope="module")
def problem() -> PlanProblem:
    cat = load_catalog()
    return PlanProblem(
        model=cat.model("Llama-3.1-8B"),
        gpus=(cat.gpu("H100-SXM"),),
        demand=demand_from_trace(default_trace()),
    )


def test_demand_matches_the_trace() -> None:
    tr = default_trace()
    d = demand_from_trace(tr)
    assert d.requests == tr.num_requests
    assert d.peak_rate_rps >= d.mean_rate_rps > 0
    assert d.mean_input_tokens == pytest.approx(float(tr.df["input_tokens"].mean()))


def test_plan_picks_the_cheapest_feasible_candidate(problem: PlanProblem) -> None:
    result = solve(problem)
    feasible = [c for c in result.candidates if c.feasible]
    assert result.best is not None and feasible
    assert result.best.cost_per_hour == min(c.cost_per_hour for c in feasible)
    # capacity covers the peak rate
    assert result.best.replicas * result.best.replica_rps >= problem.demand.peak_rate_rps


def test_more_load_never_needs_fewer_gpus(problem: PlanProblem) -> None:
    base = solve(problem).best
    heavy = solve(
        replace(problem, demand=replace(problem.demand, peak_rate_rps=problem.demand.peak_rate_rps * 20))
    )
    assert base is not None and heavy.best is not None
    assert heavy.best.gpus_total > base.gpus_total


def test_tighter_tpot_slo_shrinks_the_decode_batch(problem: PlanProblem) -> None:
    loose = solve(problem).best
    tight = solve(replace(problem, slo=SLO(ttft_p99_s=2.0, tpot_p99_s=0.012))).best
    assert loose is not None and tight is not None
    assert tight.decode_batch < loose.decode_batch


def test_impossible_slo_gives_no_plan_with_reasons(problem: PlanProblem) -> None:
    result = solve(replace(problem, slo=SLO(ttft_p99_s=2.0, tpot_p99_s=1e-4)))
    assert result.best is None
    assert all(not c.feasible and c.reason for c in result.candidates)


def test_empty_trace_is_a_clear_error() -> None:
    tr = default_trace()
    empty = RequestTrace(df=tr.df.head(0), meta=tr.meta)
    with pytest.raises(InputError, match="no requests"):
        demand_from_trace(empty)


def test_cli_plan_on_default_trace_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The Quickstart's main job, end to end on local Ray."""
    rc = main(["plan", "--gpus", "H100-SXM", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["best"]["gpu"] == "H100-SXM"
    assert out["best"]["replicas"] >= 1 and out["total_cost"] > 0


def test_cli_plan_unknown_gpu_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--gpus", "H999"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown GPU 'H999'" in err and "Traceback" not in err

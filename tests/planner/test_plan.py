"""The planner end to end: scored candidates, CP-SAT plan, replay verification, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.plan import PlanReport, PlanRequest, plan_fleet, window_length
from solvers.capacity import SLO, Disaggregation, SolveParams, SolveStatus
from traces.default import default_trace
from traces.errors import InputError
from traces.schema import RequestTrace

FAST = dict(max_num_seqs=(128, 256), max_batched_tokens=(8192,), verify_windows=4, alternatives=1,
            params=SolveParams(max_time_in_seconds=10.0))


@pytest.fixture(scope="module")
def report() -> PlanReport:
    cat = load_catalog()
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"), cat.gpu("A100-80GB-SXM")),
                      **FAST)  # type: ignore[arg-type]
    return plan_fleet(default_trace(), req)


def test_plan_covers_every_window_at_the_optimum(report: PlanReport) -> None:
    plan = report.plan
    assert plan.status is SolveStatus.OPTIMAL and plan.gap == 0.0
    assert plan.objective_usd is not None and plan.greedy_usd is not None
    assert plan.objective_usd <= plan.greedy_usd + 1e-9
    by_key = {c.key: c for c in plan.configs}
    for w, win in enumerate(report.problem.windows):
        served = sum(by_key[k].goodput_rps * n for k, n in plan.replicas(w).items())
        assert served >= win.demand_rps
    total = sum(line.cost_usd for line in report.cost_breakdown())
    assert total == pytest.approx(plan.objective_usd, rel=1e-4)
    assert all(line.price_per_gpu_hour > 0 for line in report.cost_breakdown())


def test_plan_is_verified_by_replay(report: PlanReport) -> None:
    ver = report.verification
    assert ver and ver[0].label == "plan" and len(ver) == 2
    for v in ver:
        assert v.requests > 1000 and 0.0 <= v.replayed_attainment <= 1.0
    # the plan the solver trusts also holds up in the simulator
    assert ver[0].meets_slo and ver[0].replayed_attainment >= 0.98
    assert ver[0].predicted_attainment >= 0.99
    assert report.recommended is not None and report.recommended.label == "plan"


def test_more_load_needs_more_gpus(report: PlanReport) -> None:
    cat = load_catalog()
    opts = {k: v for k, v in FAST.items() if k not in ("verify_windows", "alternatives")}
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), load_factor=20.0,
                      verify=False, **opts)  # type: ignore[arg-type]
    heavy = plan_fleet(default_trace(), req)
    peak = max(sum(c.gpus * n for c in report.plan.configs for k, n in report.plan.replicas(w).items()
                   if k == c.key) for w in range(len(report.problem.windows)))
    heavy_peak = max(sum(c.gpus * n for c in heavy.plan.configs for k, n in heavy.plan.replicas(w).items()
                         if k == c.key) for w in range(len(heavy.problem.windows)))
    assert heavy_peak > peak


def test_impossible_slo_gives_no_plan() -> None:
    cat = load_catalog()
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), slo=SLO(tpot_s=1e-4),
                      disaggregation=Disaggregation.OFF, verify=False, max_num_seqs=(256,),
                      max_batched_tokens=(8192,))
    rep = plan_fleet(default_trace(), req)
    assert not rep.plan.feasible and rep.verification == ()
    assert not rep.scored["feasible"].any() and all(rep.scored["reason"].to_list())
    # the cause, with numbers, and no limit the user did not set
    assert any(n.startswith("aggregated: none of ") and "TPOT" in n for n in rep.notes)
    for text in (rep.plan.note, rep.why, *rep.notes):
        assert "inventory" not in text and "power" not in text


def test_infeasibility_names_the_phase_nobody_serves_not_unset_limits() -> None:
    """At TPOT 1 ms only prefill candidates pass scoring (they run no decode steps): the plan names the
    phase nothing serves, not an inventory or power limit that was never set."""
    cat = load_catalog()
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), slo=SLO(tpot_s=1e-3),
                      verify=False, max_num_seqs=(256,), max_batched_tokens=(8192,))
    rep = plan_fleet(default_trace(), req)
    assert not rep.plan.feasible
    assert rep.plan.note == ("no candidate serves decode within the SLO: only prefill candidates passed "
                             "scoring")
    assert "inventory" not in rep.why and "power" not in rep.why


def test_long_traces_get_longer_windows() -> None:
    assert window_length(7 * 86400.0, 300.0, 96) == 6300.0
    with pytest.raises(InputError, match="window"):
        window_length(3600.0, -1.0, 96)


def test_empty_trace_is_a_clear_error() -> None:
    tr = default_trace()
    cat = load_catalog()
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),))
    with pytest.raises(InputError, match="no requests"):
        plan_fleet(RequestTrace(df=tr.df.head(0), meta=tr.meta), req)


@pytest.mark.slow
def test_cli_plan_on_default_trace_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The Quickstart's main job, end to end on local Ray."""
    dest = tmp_path / "plans" / "plan.json"
    rc = main(["plan", "--gpus", "H100-SXM", "--json", "--time-limit-s", "5", "--out", str(dest)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert json.loads(dest.read_text()) == out
    assert out["status"] == "OPTIMAL" and out["objective_usd"] > 0
    assert out["configs"][0]["gpu"] == "H100-SXM" and out["cost_breakdown"][0]["price_per_gpu_hour"] == 2.99
    assert out["verification"][0]["label"] == "plan" and out["verification"][0]["replayed_attainment"] > 0.9
    # every window replayed, so every request of the trace, the one at its last instant included
    assert out["verification"][0]["windows"] == len(out["windows"])
    assert out["verification"][0]["requests"] == out["requests"]
    assert out["why"]


def test_cli_inventory_forces_a_second_gpu_type(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--gpus", "H100-SXM,A100-80GB-SXM", "--inventory", "A100-80GB-SXM=0",
               "--inventory", "H100-SXM=1", "--no-verify", "--json", "--disaggregate", "off"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {c["gpu"] for c in out["configs"]} == {"H100-SXM"}
    assert all(sum(w["replicas"].values()) <= 1 for w in out["windows"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--gpus", "H999"], "unknown GPU 'H999'"),
    (["--gpus", "H100-SXM", "--inventory", "H100-SXM:4"], "bad inventory item"),
    (["--gpus", "H100-SXM", "--inventory", "B200=4"], "not planned"),
    (["--gpus", "H100-SXM", "--power-budget-kw", "-3"], "power budget"),
    (["--gpus", "H100-SXM", "--out", __file__], "--out already exists"),
])
def test_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    rc = main(["plan", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "Traceback" not in err


def test_request_rejects_inventory_for_unplanned_gpu() -> None:
    cat = load_catalog()
    with pytest.raises(InputError, match="not among those planned"):
        PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), inventory=(("B200", 2),))


def test_autoscale_compares_on_the_plans_main_aggregated_config(report: PlanReport) -> None:
    from planner.cli.plan_cmd import main_aggregated_config

    gpu, tp, precision = main_aggregated_config(report)
    assert precision == "bf16"  # Llama-3.1-8B's native weights: the plan's default
    main = max((c for c in report.cost_breakdown() if c.role == "aggregated"), key=lambda c: c.gpu_hours)
    assert gpu == main.gpu and tp >= 1
    assert any(c.gpu == gpu and c.tp == tp for c in report.plan.configs)


def test_autoscale_with_json_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--autoscale", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "autoscale-compare --json" in err and "Traceback" not in err


def test_replica_starts_are_costed_from_the_models_size() -> None:
    """A replica a window adds costs its cold start (8B: 104 s from zero); the cost lines add up to the
    objective with those starts, and free starts let the plan churn at least as much."""
    from planner.sim.coldstart import replica_start_s

    cat = load_catalog()
    spec = cat.model("Llama-3.1-8B")
    opts = {k: v for k, v in FAST.items() if k not in ("verify_windows", "alternatives")}
    costed, free = (plan_fleet(default_trace(), PlanRequest(
        model=spec, gpus=(cat.gpu("H100-SXM"), cat.gpu("A100-80GB-SXM")), load_factor=20.0, verify=False,
        start_s=start, **opts)) for start in (None, 0.0))  # type: ignore[arg-type]
    start = replica_start_s(spec.weight_bytes())
    assert all(c.start_s == pytest.approx(start) for c in costed.problem.configs)
    assert round(replica_start_s(spec.weight_bytes())) == 104
    lines = costed.cost_breakdown()
    assert costed.plan.objective_usd == pytest.approx(sum(x.cost_usd for x in lines), rel=1e-4)
    starts = sum(x.starts for x in lines)
    assert starts > 0 and sum(x.start_gpu_hours for x in lines) > 0
    assert starts <= sum(x.starts for x in free.cost_breakdown())
    assert any("each replica a window adds costs 104 s" in n for n in costed.notes)
    assert all(x.start_gpu_hours == 0 for x in free.cost_breakdown())


def test_a_split_plan_is_replayed_as_its_prefill_decode_pair() -> None:
    """One prefill and one decode configuration (xPyD), checked by the cluster replay with the KV hand-off
    between the pools, not phase by phase."""
    cat = load_catalog()
    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),),
                      disaggregation=Disaggregation.ON, **FAST)  # type: ignore[arg-type]
    rep = plan_fleet(default_trace(), req)
    roles = sorted(c.role.value for c in rep.plan.configs)
    assert roles == ["decode", "prefill"]
    first = rep.verification[0]
    assert first.approximate is False
    assert first.requests == sum(c.requests for c in first.by_window) > 1000
    assert all(len(c.replicas) == 2 for c in first.by_window)

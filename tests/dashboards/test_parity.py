"""The dashboard and the CLI give the same numbers for the same scenario (one application layer)."""

from __future__ import annotations

import json

import pytest

from dashboards.scenario import (
    AutoscaleSpec,
    PlanSpec,
    ReplaySpec,
    autoscale_job,
    default_source,
    load_source,
    run_plan,
    run_replay,
)
from planner.cli.main import main
from planner.cli.plan_cmd import report_json
from planner.sim.writer import summary_json


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["bare", "vllm"])
def test_autoscaling_page_and_cli_agree(capsys: pytest.CaptureFixture[str], engine: str) -> None:
    rc = main(["autoscale-compare", "--policies", "hpa,mpc", "--rate-factor", "1", "--seed", "0",
               "--engine", engine, "--json"])
    assert rc == 0
    cli = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["policies"]}
    spec = AutoscaleSpec(model="Llama-3.1-8B", gpu="H100-SXM", policies=("hpa", "mpc"), engine=engine)
    page = autoscale_job(default_source(), 1.0, 0, spec, report=lambda *_: None).table().to_dicts()
    dash = {r["policy"]: r for r in page}
    assert set(dash) == set(cli)
    for name, row in cli.items():
        for k in ("gpu_hours", "attainment", "scale_actions", "peak_replicas"):
            assert dash[name][k] == pytest.approx(row[k], rel=1e-9), (name, k)


@pytest.mark.parametrize("engine", ["bare", "vllm"])
def test_replay_page_and_cli_agree(capsys: pytest.CaptureFixture[str], engine: str) -> None:
    rc = main(["replay", "--gpu", "H100-SXM", "--replicas", "2", "--engine", engine, "--json"])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    spec = ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", replicas=2, engine=engine)
    page = json.loads(summary_json(run_replay(load_source(default_source()), spec)))
    for k in ("completed", "steps", "cached_prefix_tokens", "preemptions", "makespan_s", "gpu_hours",
              "energy_kwh"):
        assert page[k] == pytest.approx(cli[k], rel=1e-9), k
    assert page["classes"] == cli["classes"]


def test_replay_page_and_cli_agree_with_kv_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["replay", "--replicas", "1", "--kv-tier", "dram:2", "--kv-tier", "remote", "--kv-load",
               "blocking", "--json"])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    spec = ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", replicas=1, kv_tiers=("dram:2", "remote"),
                      kv_overlap=False)
    page = json.loads(summary_json(run_replay(load_source(default_source()), spec)))
    assert [t["name"] for t in cli["kv_tiers"]] == ["dram", "remote"]
    assert page["kv_tiers"] == cli["kv_tiers"]
    for k in ("cached_prefix_tokens", "makespan_s", "prefix_hit_ratio_bound"):
        assert page[k] == pytest.approx(cli[k], rel=1e-9), k


def test_replay_page_and_cli_agree_with_faults(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["replay", "--replicas", "4", "--faults", "synthetic", "--slow-per-replica-hour", "2",
               "--detect", "drain", "--json"])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    spec = ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", replicas=4, faults="synthetic",
                      slow_per_replica_hour=2.0, detect="drain")
    page = json.loads(summary_json(run_replay(load_source(default_source()), spec)))
    assert cli["faults"]["slow_events"] > 0 and cli["faults"]["flags"] > 0
    assert page["faults"] == cli["faults"]
    for k in ("completed", "makespan_s", "gpu_hours"):
        assert page[k] == pytest.approx(cli[k], rel=1e-9), k


@pytest.mark.slow
def test_plan_page_and_cli_agree(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--gpus", "H100-SXM", "--json"])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    report = run_plan(load_source(default_source()), PlanSpec(model="Llama-3.1-8B", gpus=("H100-SXM",)))
    page = json.loads(json.dumps(report_json(report, "Llama-3.1-8B")))
    for k in ("status", "objective_usd", "configs", "windows", "verification"):
        assert page[k] == cli[k], k

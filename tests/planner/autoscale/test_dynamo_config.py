"""A Dynamo planner's PlannerConfig read as the dynamo-sla policy's parameters (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.autoscale.dynamo import DynamoParams, Predictor
from planner.autoscale.manifests import load_policy
from planner.cli.main import main
from traces.errors import InputError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy/autoscalers/dynamo-planner-sla.yaml"


def test_the_example_reads_with_its_settings_and_says_what_is_not_replayed() -> None:
    m = load_policy(EXAMPLE)
    assert m.name == "dynamo:dynamo-planner-sla" and isinstance(m.params, DynamoParams)
    p = m.params
    assert (p.adjustment_interval_s, p.ttft_sla_s, p.itl_sla_s) == (60.0, 1.0, 0.05)
    assert (p.predictor, p.max_gpu_budget, p.min_endpoint, p.profile) == (Predictor.ARIMA, 16, 1, None)
    assert m.notes == ("not replayed: mode disagg (replayed on aggregated replicas: prefill and decode GPUs "
                       "add up)")
    with pytest.raises(InputError, match="profile"):
        m.policy()


def test_json_and_a_dgdr_wrapper_read_the_same_and_unknown_fields_are_one_line(tmp_path: Path) -> None:
    cfg = {"optimization_target": "sla", "mode": "agg", "ttft": 300, "itl": 20, "load_predictor": "kalman",
           "load_predictor_log1p": True, "adjustment_interval": 30, "enable_load_scaling": True,
           "load_scaling_down_sensitivity": 50, "namespace": "prod", "turbo": 1, "gpu_magic": "yes"}
    j = tmp_path / "planner.json"
    j.write_text(json.dumps(cfg))
    d = tmp_path / "dgdr.yaml"
    d.write_text("apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeploymentRequest\n"
                 "metadata: {name: chat}\nspec:\n  features:\n    planner: " + json.dumps(cfg) + "\n")
    a, b = load_policy(j), load_policy(d)
    assert (a.name, b.name) == ("dynamo:planner", "dynamo:chat")
    assert a.params == b.params and a.notes == b.notes
    p = a.params
    assert isinstance(p, DynamoParams)
    assert (p.adjustment_interval_s, p.ttft_sla_s, p.itl_sla_s, p.predictor, p.log1p) == (
        30.0, 0.3, 0.02, Predictor.ARIMA, True)
    assert "\n" not in a.notes
    assert ("enable_load_scaling (load-based scaling above the throughput floor: "
            "load_scaling_down_sensitivity)") in a.notes
    assert "load_predictor kalman (replayed with arima)" in a.notes
    assert a.notes.endswith("unknown to PlannerConfig (ignored, as Dynamo does): gpu_magic, turbo")
    assert "namespace" not in a.notes  # placing the planner changes nothing in a replay


@pytest.mark.parametrize("text,field", [
    ("optimization_target: sla\nttft: fast\n", "ttft"),
    ("optimization_target: sla\nttft: 0.5\n", "ttft"),  # seconds where PlannerConfig takes milliseconds
    ("optimization_target: sla\nmax_gpu_budget: 0\n", "max_gpu_budget"),
    ("optimization_target: sla\nload_predictor: crystal-ball\n", "load_predictor"),
    ("optimization_target: throughput\n", "optimization_target"),  # load-based only
    ("optimization_target: sla\nenable_throughput_scaling: false\nenable_load_scaling: true\n",
     "enable_throughput_scaling"),
    ("kind: DynamoGraphDeploymentRequest\nspec: {features: {}}\n", r"spec\.features\.planner"),
])
def test_malformed_or_load_only_configs_are_refused_by_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "planner.yaml"
    f.write_text(text)
    with pytest.raises(InputError, match=field):
        load_policy(f)


def test_a_bad_planner_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "planner.yaml"
    bad.write_text("optimization_target: sla\nthroughput_adjustment_interval: -5\n")
    assert main(["autoscale-compare", "--policies", "keda", "--policy-from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "planner.yaml" in err and "throughput_adjustment_interval" in err and "Traceback" not in err

"""A user's own KEDA ScaledObject or HPA, read from its manifest and replayed as that policy (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from planner.autoscale.hpa import MetricSource, PolicyType, VllmMetric
from planner.autoscale.keda import KEDAParams, PromQuery, Trigger
from planner.autoscale.manifests import load_policy
from planner.cli.main import main
from tests.deploy import crd_schemas
from tests.deploy.manifests import K8S_VERSIONS, validate_custom
from traces.errors import InputError

REPO = Path(__file__).resolve().parents[3]
KEDA = REPO / "deploy/autoscalers/keda-vllm-queue.yaml"
HPA = REPO / "deploy/autoscalers/hpa-vllm-running.yaml"


def test_the_example_scaledobject_is_valid_keda_and_reads_as_written() -> None:
    for version in K8S_VERSIONS:
        validate_custom(yaml.safe_load(KEDA.read_text()), crd_schemas.SCALED_OBJECT, version)
    m = load_policy(KEDA)
    assert m.name == "keda:vllm-chat-queue" and isinstance(m.params, KEDAParams)
    p = m.params
    assert p.triggers == (Trigger(PromQuery.SUM_IN_SYSTEM, 48.0),) and p.polling_interval_s == 15.0
    assert (p.min_replica_count, p.max_replica_count, p.cooldown_period_s) == (1, 32, 300.0)
    assert p.scale_down.stabilization_window_s == 600.0
    assert p.scale_down.policies[0].type is PolicyType.PERCENT and p.scale_down.policies[0].value == 50
    assert p.scale_up.policies[0].period_s == 30.0


def test_the_example_hpa_reads_as_written_with_kubernetes_defaults_where_silent() -> None:
    m = load_policy(HPA)
    p = m.params
    assert m.name == "hpa:vllm-chat-running" and not isinstance(p, KEDAParams)
    assert p.metrics[0].metric is VllmMetric.RUNNING and p.metrics[0].average_value == 40.0
    assert p.metrics[0].source is MetricSource.PODS and (p.min_replicas, p.max_replicas) == (2, 32)
    assert p.scale_up.policies[0].value == 4 and p.scale_up.stabilization_window_s == 0.0  # the default
    assert p.scale_down.policies[0].value == 2 and p.scale_down.stabilization_window_s == 300.0


def test_what_the_replay_cannot_reproduce_is_refused_by_field(tmp_path: Path) -> None:
    # fleetwise's own ScaledObject follows fleetwise_desired_replicas: nothing the replay could evaluate
    with pytest.raises(InputError, match=r"spec\.triggers\[0\]\.metadata\.query"):
        load_policy(REPO / "deploy/kubernetes/keda/scaledobject.yaml")
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n"
                   "spec: {maxReplicas: 4, metrics: [{type: Resource, resource: {name: cpu}}]}\n")
    with pytest.raises(InputError, match=r"spec\.metrics\[0\]\.type"):
        load_policy(cpu)
    with pytest.raises(InputError, match="no ScaledObject, HorizontalPodAutoscaler or Dynamo"):
        load_policy(REPO / "deploy/kubernetes/hpa/kustomization.yaml")


def test_autoscale_compare_replays_the_manifests_beside_the_other_policies(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoscale-compare", "--duration-s", "900", "--rate-factor", "6", "--policies", "keda",
                 "--policy-from", str(KEDA), "--policy-from", str(HPA), "--json"]) == 0
    rows = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["policies"]}
    assert {"keda", "keda:vllm-chat-queue", "hpa:vllm-chat-running"} <= set(rows)
    # the HPA manifest's minReplicas 2 holds although the comparison's own bound is 1
    assert rows["hpa:vllm-chat-running"]["mean_replicas"] >= 2.0 > rows["keda"]["mean_replicas"] - 1.0
    assert rows["keda:vllm-chat-queue"] != rows["keda"]  # its own threshold and windows, not the default


def test_a_bad_manifest_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "so.yaml"
    bad.write_text("kind: ScaledObject\nspec: {triggers: [{type: cpu}]}\n")
    assert main(["autoscale-compare", "--policies", "keda", "--policy-from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "so.yaml" in err and "spec.triggers" in err and "Traceback" not in err


def test_the_deprecated_wva_is_labelled_legacy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoscale-compare", "--duration-s", "300", "--policies", "wva,keda", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["legacy"]) == {"wva"} and "deprecated" in doc["legacy"]["wva"]
    assert main(["autoscale-compare", "--duration-s", "300", "--policies", "keda", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["legacy"] == {}


EPP = REPO / "deploy/autoscalers/keda-llm-d-epp-saturation.yaml"
DYNAMO = REPO / "deploy/autoscalers/dynamo-planner-sla.yaml"


def test_the_epp_scaledobject_is_valid_keda_and_reads_as_llm_d_publishes_it() -> None:
    for version in K8S_VERSIONS:
        validate_custom(yaml.safe_load(EPP.read_text()), crd_schemas.SCALED_OBJECT, version)
    m = load_policy(EPP)
    assert m.name == "keda:chat-8b-epp-saturation" and isinstance(m.params, KEDAParams) and m.notes == ""
    p = m.params
    assert p.triggers == (Trigger(PromQuery.EPP_POOL_SATURATION, 0.7),
                          Trigger(PromQuery.EPP_REQUEST_RUNNING, 16.0))
    assert (p.polling_interval_s, p.min_replica_count, p.max_replica_count) == (15.0, 1, 10)
    assert p.scale_up.stabilization_window_s == p.scale_down.stabilization_window_s == 300.0
    # the same ScaledObject as the comparison's llm-d-keda row with llm-d's running threshold
    from planner.autoscale.llm_d import LlmdKEDAParams

    assert p == LlmdKEDAParams().keda_params()


@pytest.mark.parametrize("edit,field", [
    ("triggers: [{type: prometheus, metricType: Value, metadata: {query: 'sum(llm_d_epp_request_running)', "
     "threshold: '16'}}]", r"spec\.triggers\[0\]\.metricType"),
    ("triggers: [{type: prometheus, metadata: {query: 'sum(llm_d_epp_request_running)', threshold: '16'}}, "
     "{type: cpu, metadata: {value: '50'}}]", r"spec\.triggers\[1\]\.type"),
    ("triggers: [{type: prometheus, metadata: {query: 'max(llm_d_epp_flow_control_pool_saturation) + "
     "sum(llm_d_epp_request_running)', threshold: '1'}}]", r"spec\.triggers\[0\]\.metadata\.query"),
    ("triggers: [{type: prometheus, metadata: {query: 'sum(llm_d_epp_request_running)', threshold: '0'}}]",
     r"spec\.triggers\[0\]\.metadata\.threshold"),
    ("advanced: {scalingModifiers: {formula: 'a + b', target: '1'}}\n  triggers: [{type: prometheus, "
     "metadata: {query: 'sum(llm_d_epp_request_running)', threshold: '1'}}]",
     r"spec\.advanced\.scalingModifiers"),
])
def test_epp_scaledobjects_the_replay_cannot_reproduce_are_refused_by_field(tmp_path: Path, edit: str,
                                                                          field: str) -> None:
    f = tmp_path / "so.yaml"
    f.write_text(f"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: x}}\nspec:\n"
                 f"  {edit}\n")
    with pytest.raises(InputError, match=field):
        load_policy(f)


def test_legacy_inference_extension_names_read_as_the_epp_series(tmp_path: Path) -> None:
    f = tmp_path / "so.yaml"
    f.write_text("kind: ScaledObject\nspec:\n  triggers:\n  - type: prometheus\n    metadata:\n"
                 "      query: sum(inference_extension_flow_control_queue_size{inference_pool='p'})\n"
                 "      threshold: '1'\n")
    m = load_policy(f)
    assert isinstance(m.params, KEDAParams) and m.params.triggers[0].query is PromQuery.EPP_QUEUE_SIZE


@pytest.mark.slow
def test_autoscale_compare_replays_llm_d_keda_and_the_new_examples(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoscale-compare", "--duration-s", "900", "--rate-factor", "6", "--policies", "llm-d-keda",
                 "--policy-from", str(EPP), "--policy-from", str(DYNAMO), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["policy"]: r for r in doc["policies"]}
    assert {"llm-d-keda", "keda:chat-8b-epp-saturation", "dynamo:dynamo-planner-sla"} <= set(rows)
    for name in ("llm-d-keda", "keda:chat-8b-epp-saturation", "dynamo:dynamo-planner-sla"):
        assert rows[name]["gpu_hours"] > 0 and rows[name]["violation_minutes"] >= 0, name
    # llm-d's running threshold of 16 holds more replicas than the comparison's capacity-derived one
    assert rows["keda:chat-8b-epp-saturation"]["gpu_hours"] > rows["llm-d-keda"]["gpu_hours"]
    assert "mode disagg" in doc["policy_notes"]["dynamo:dynamo-planner-sla"]

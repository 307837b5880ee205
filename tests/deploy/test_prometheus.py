"""deploy/prometheus: promtool on the config, the rules and the rules' unit tests; the operator copy of the
rules; scrape jobs that find the manifests' Services and pods with the labels everything else joins on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy import crd_schemas
from tests.deploy.manifests import DEPLOY, NAMESPACE, Doc, all_docs
from tests.deploy.promql import promtool

PROM = DEPLOY / "prometheus"
CONFIG = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
RULES = yaml.safe_load((PROM / "rules.yml").read_text(encoding="utf-8"))
DOCS: list[Doc] = all_docs()

REQUIRED_ALERTS = {
    "FleetwiseInputStale": "fleetwise_input_healthy == 0",
    "FleetwiseSolveFailed": "fleetwise_last_solve_status",
    "FleetwiseReplicasMismatch": "fleetwise_replica_gap",
    "FleetwisePredictedSLOBelowTarget": "fleetwise_predicted_slo_attainment_ratio",
    "FleetwiseExporterDown": 'up{job="fleetwise-autoscaler"}',
}


@pytest.fixture(scope="module")
def tool() -> Path:
    found = promtool()
    if found is None:
        pytest.skip("promtool not on PATH (Debian/Ubuntu: apt-get install prometheus)")
    return found


def _run(tool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool), *args], capture_output=True, text=True, check=False, cwd=cwd,
                          timeout=120)


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d.body for d in DOCS if d.body["kind"] == kind and d.body["metadata"]["name"] == name]
    return found


def _job(name: str) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [j for j in CONFIG["scrape_configs"] if j["job_name"] == name]
    assert len(jobs) == 1, f"expected one scrape job {name}"
    return jobs[0]


# --- promtool -------------------------------------------------------------------------------------------

def test_config_passes_promtool(tool: Path, tmp_path: Path) -> None:
    """promtool check config; Debian builds Prometheus without Kubernetes discovery, so when this promtool
    does not know kubernetes_sd_configs, those blocks are checked against the documented schema and the rest
    of the file by promtool with them replaced by static targets."""
    for f in ("prometheus.yml", "rules.yml"):
        shutil.copy(PROM / f, tmp_path / f)
    res = _run(tool, "check", "config", "prometheus.yml", cwd=tmp_path)
    if res.returncode != 0 and "field kubernetes_sd_configs not found" in res.stdout + res.stderr:
        stubbed = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
        for job in stubbed["scrape_configs"]:
            for sd in job.pop("kubernetes_sd_configs", []):
                jsonschema.validate(sd, crd_schemas.KUBERNETES_SD_CONFIG)
                job.setdefault("static_configs", []).append({"targets": ["stub.invalid:80"]})
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(stubbed), encoding="utf-8")
        res = _run(tool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", res.stdout + res.stderr)
    assert found and int(found.group(1)) >= len(REQUIRED_ALERTS), "rules.yml was not loaded with the config"


def test_rules_pass_promtool(tool: Path) -> None:
    res = _run(tool, "check", "rules", "rules.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_unit_tests_pass(tool: Path) -> None:
    res = _run(tool, "test", "rules", "rules_test.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_unit_tests_can_fail(tool: Path, tmp_path: Path) -> None:
    """Break the InputStale threshold and promtool's unit tests must notice."""
    text = (PROM / "rules.yml").read_text(encoding="utf-8").replace(
        "expr: fleetwise_input_healthy == 0", "expr: fleetwise_input_healthy == 2")
    (tmp_path / "rules.yml").write_text(text, encoding="utf-8")
    shutil.copy(PROM / "rules_test.yml", tmp_path / "rules_test.yml")
    assert _run(tool, "test", "rules", "rules_test.yml", cwd=tmp_path).returncode != 0


# --- rules ----------------------------------------------------------------------------------------------

def test_rules_schema_and_required_alerts() -> None:
    jsonschema.validate(RULES["groups"], crd_schemas.RULE_GROUPS)
    alerts = {r["alert"]: r for g in RULES["groups"] for r in g["rules"] if "alert" in r}
    for name, needle in REQUIRED_ALERTS.items():
        assert name in alerts, f"missing alert {name}"
        assert needle in alerts[name]["expr"], f"{name} does not look at {needle}"
        assert alerts[name]["labels"]["severity"] in {"info", "warning", "critical"}
        assert {"summary", "description"} <= set(alerts[name]["annotations"])


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load((PROM / "rules_test.yml").read_text(encoding="utf-8"))["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a["exp_alerts"]}
    quiet = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if not a["exp_alerts"]}
    alerts = {r["alert"] for g in RULES["groups"] for r in g["rules"] if "alert" in r}
    assert alerts <= fired, f"alerts never shown to fire: {alerts - fired}"
    assert alerts <= quiet, f"alerts never shown to stay quiet: {alerts - quiet}"


def test_operator_prometheusrule_holds_exactly_rules_yml() -> None:
    rule = _one("PrometheusRule", "fleetwise")
    assert rule["spec"]["groups"] == RULES["groups"], "base/prometheusrule.yaml differs from rules.yml"


# --- scrape config fits the manifests -------------------------------------------------------------------

def _keep(job: dict[str, Any]) -> tuple[list[str], str]:
    (keep,) = [r for r in job["relabel_configs"] if r.get("action") == "keep" and
               "__meta_kubernetes_pod_phase" not in r["source_labels"]]
    return keep["source_labels"], keep["regex"]


def _meta(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def test_scrape_jobs_discover_only_our_namespace_with_valid_meta_labels() -> None:
    assert CONFIG["rule_files"] == ["rules.yml"]
    for job in CONFIG["scrape_configs"]:
        (sd,) = job["kubernetes_sd_configs"]
        jsonschema.validate(sd, crd_schemas.KUBERNETES_SD_CONFIG)
        assert sd["namespaces"]["names"] == [NAMESPACE]
        exact, prefixes = crd_schemas.KUBERNETES_SD_META[sd["role"]]
        for r in job["relabel_configs"]:
            for label in r.get("source_labels", []):
                if label.startswith("__meta_"):
                    assert label in exact or label.startswith(prefixes), (
                        f"{job['job_name']}: {label} is not a meta label of role {sd['role']}")


def test_exporter_job_keeps_the_autoscaler_service_port_and_is_named_like_it() -> None:
    job = _job("fleetwise-autoscaler")
    labels, regex = _keep(job)
    assert labels == ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"]
    svc = _one("Service", "fleetwise-autoscaler")
    assert re.fullmatch(regex, f"{svc['metadata']['name']};{svc['spec']['ports'][0]['name']}")
    # The operator names the job after the Service; the alert matches either way.
    assert job["job_name"] == svc["metadata"]["name"]
    alert = next(r for g in RULES["groups"] for r in g["rules"] if r.get("alert") == "FleetwiseExporterDown")
    assert f'job="{job["job_name"]}"' in alert["expr"]


def test_vllm_job_keeps_vllm_pods_and_sets_the_pool_label() -> None:
    job = _job("vllm")
    labels, regex = _keep(job)
    assert labels == ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                      "__meta_kubernetes_pod_container_port_name"]
    pod = _one("Deployment", "vllm-chat-8b")["spec"]["template"]
    port = pod["spec"]["containers"][0]["ports"][0]["name"]
    assert re.fullmatch(regex, f"{pod['metadata']['labels']['app.kubernetes.io/name']};{port}")
    pool_rule = [r for r in job["relabel_configs"] if r.get("target_label") == "pool"]
    meta = f"__meta_kubernetes_pod_label_{_meta('fleetwise.io/pool')}"
    assert pool_rule and pool_rule[0]["source_labels"] == [meta]
    assert not re.fullmatch(regex, "fleetwise-autoscaler;metrics")


def test_scrape_intervals_agree_with_pools_yaml() -> None:
    """The autoscaler judges staleness in scrape intervals: it must know the real one."""
    pools = yaml.safe_load(_one("ConfigMap", "fleetwise-pools")["data"]["pools.yaml"])
    seconds = float(pools["scrape_interval_s"])
    job_interval = _job("vllm").get("scrape_interval", CONFIG["global"]["scrape_interval"])
    monitor = _one("ServiceMonitor", "vllm")["spec"]["endpoints"][0]["interval"]
    for text in (job_interval, monitor):
        assert float(text.removesuffix("s")) == seconds, f"{text} vs pools.yaml scrape_interval_s {seconds}"

"""Offline validation of deploy/kubernetes: schemas, kustomizations, and that the pieces fit each other.

Every manifest is checked against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields fail) at the oldest and newest supported release; custom resources against the schemas in
:mod:`tests.deploy.crd_schemas`. The cross-reference tests catch what schemas cannot: a Service whose
selector matches no pod, a ScaledObject scaling a Deployment that is not there, a query on a metric
fleetwise does not export, a container command the CLI would reject.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from planner.live.names import DESIRED_REPLICAS, sample_names
from tests.deploy import crd_schemas
from tests.deploy.manifests import (
    APPLIED_SEPARATELY,
    ENTRY_POINTS,
    K8S_VERSIONS,
    KUBE,
    NAMESPACE,
    Doc,
    all_docs,
    build,
    fleetwise_image,
    kustomization_dirs,
    load_docs,
    manifest_files,
    parse_cli,
    pod_specs,
    split_command,
    validate_custom,
)
from tests.deploy.promql import metric_names

ALL_DOCS = all_docs()


def _id(doc: Doc) -> str:
    return f"{doc.path.relative_to(KUBE)}#{doc.index}-{doc.body['kind']}"


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Doc]]:
    """Each entry-point kustomization rendered."""
    return {name: build(KUBE / name) for name in ENTRY_POINTS}


def _one(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    found = [d.body for d in docs if d.body["kind"] == kind and d.body["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pools() -> dict[str, Any]:
    cm = _one(ALL_DOCS, "ConfigMap", "fleetwise-pools")
    pools: dict[str, Any] = yaml.safe_load(cm["data"]["pools.yaml"])["pools"]
    return pools


def _matchers(query: str, metric: str) -> dict[str, str]:
    """Equality label matchers of ``metric{...}`` in a PromQL query."""
    m = re.search(re.escape(metric) + r"\{([^}]*)\}", query)
    assert m, f"{metric} with label matchers not found in {query!r}"
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1)))


# --- schemas --------------------------------------------------------------------------------------------

def test_deploy_has_every_kind_the_issue_asks_for() -> None:
    kinds = {(d.body["apiVersion"], d.body["kind"]) for d in ALL_DOCS}
    for need in [("ray.io/v1", "RayJob"), ("ray.io/v1", "RayCluster"), ("apps/v1", "Deployment"),
                 ("v1", "Service"), ("v1", "ConfigMap"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
                 ("keda.sh/v1alpha1", "ScaledObject"), ("autoscaling/v2", "HorizontalPodAutoscaler")]:
        assert need in kinds, f"no {need[1]} ({need[0]}) under deploy/kubernetes"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for d in ALL_DOCS if (d.body["apiVersion"], d.body["kind"])
                                 not in crd_schemas.CUSTOM_RESOURCES], ids=_id)
def test_builtin_kinds_validate_against_kubernetes_schemas(doc: Doc, version: str) -> None:
    try:
        kubernetes_validate.validate(doc.body, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc.where} is not a valid Kubernetes {version} object: {path}: {exc.message}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for d in ALL_DOCS if (d.body["apiVersion"], d.body["kind"])
                                 in crd_schemas.CUSTOM_RESOURCES], ids=_id)
def test_custom_resources_validate_against_their_crd_schemas(doc: Doc, version: str) -> None:
    schema = crd_schemas.CUSTOM_RESOURCES[(doc.body["apiVersion"], doc.body["kind"])]
    try:
        validate_custom(doc.body, schema, version)
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        pytest.fail(f"{doc.where}: {path}: {exc.message}")


def test_crd_schemas_reject_what_the_crds_reject() -> None:
    """The hand-written schemas can fail: a typo'd key, a wrong enum, a bad pod template inside a RayJob."""
    job = next(d.body for d in ALL_DOCS if d.body["kind"] == "RayJob")
    bad_key = {**job, "spec": {**job["spec"], "shutdownAfterJobFinish": True}}
    bad_mode = {**job, "spec": {**job["spec"], "submissionMode": "K8sJob"}}
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    bad_head = {**head, "template": {"spec": {"containers": [{"name": "x", "image": "y", "portz": []}]}}}
    bad_pod = {**job, "spec": {**job["spec"], "rayClusterSpec": {
        **job["spec"]["rayClusterSpec"], "headGroupSpec": bad_head}}}
    so = next(d.body for d in ALL_DOCS if d.body["kind"] == "ScaledObject")
    trig = so["spec"]["triggers"][0]
    no_threshold = {**so, "spec": {**so["spec"], "triggers": [
        {**trig, "metadata": {k: v for k, v in trig["metadata"].items() if k != "threshold"}}]}}
    number_threshold = {**so, "spec": {**so["spec"], "triggers": [
        {**trig, "metadata": {**trig["metadata"], "threshold": 1}}]}}
    for body, schema in [(bad_key, crd_schemas.RAY_JOB), (bad_mode, crd_schemas.RAY_JOB),
                         (bad_pod, crd_schemas.RAY_JOB), (no_threshold, crd_schemas.SCALED_OBJECT),
                         (number_threshold, crd_schemas.SCALED_OBJECT)]:
        with pytest.raises(jsonschema.ValidationError):
            validate_custom(body, schema, K8S_VERSIONS[0])


def test_prometheus_adapter_rule_is_a_valid_adapter_config() -> None:
    cm = load_docs(KUBE / "hpa" / "prometheus-adapter-config.yaml")[0].body
    config = yaml.safe_load(cm["data"]["config.yaml"])
    jsonschema.validate(config, crd_schemas.PROMETHEUS_ADAPTER_CONFIG)


# --- kustomize ------------------------------------------------------------------------------------------

def test_every_manifest_is_applied_by_some_kustomization() -> None:
    used: set[str] = set()
    for folder in kustomization_dirs():
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
        used.update(str((folder / r).resolve().relative_to(KUBE.resolve())) for r in spec["resources"])
    files = {str(p.relative_to(KUBE)) for p in manifest_files()}
    assert files - used == set(APPLIED_SEPARATELY), "manifests no kustomization applies"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_points_build_without_duplicates_in_one_namespace(
        builds: dict[str, list[Doc]], entry: str) -> None:
    docs = builds[entry]
    keys = [(d.body["apiVersion"].split("/")[0], d.body["kind"], d.body["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects in {entry or 'top-level'} build"
    for d in docs:
        if d.body["kind"] != "Namespace":
            assert d.body["metadata"].get("namespace") == NAMESPACE, d.where


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_deployment_has_at_most_one_autoscaler(builds: dict[str, list[Doc]], entry: str) -> None:
    """KEDA's ScaledObject creates an HPA: an HPA of our own on the same Deployment would fight it."""
    targets: list[str] = []
    deployments = {d.body["metadata"]["name"] for d in builds[entry] if d.body["kind"] == "Deployment"}
    for d in builds[entry]:
        if d.body["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}:
            ref = d.body["spec"]["scaleTargetRef"]
            assert ref.get("kind", "Deployment") == "Deployment" and ref["name"] in deployments, d.where
            targets.append(ref["name"])
    assert len(targets) == len(set(targets)), f"{entry}: a Deployment has two autoscalers: {targets}"


def test_kustomize_images_agree_with_the_manifests() -> None:
    tags: set[str] = set()
    for folder in kustomization_dirs():
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
        tags.update(f"{i.get('newName', i['name'])}:{i['newTag']}" for i in spec.get("images", []))
    images = {c["image"] for d in ALL_DOCS for _, pod in pod_specs(d.body) for c in pod["spec"]["containers"]
              if fleetwise_image(c)}
    assert images and images == tags, f"fleetwise images {images} vs kustomize images {tags}"


# --- the pieces fit -------------------------------------------------------------------------------------

def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_pods_and_name_their_ports(builds: dict[str, list[Doc]]) -> None:
    docs = builds["keda"] + builds["ray"]
    pods = [pod for d in docs for _, pod in pod_specs(d.body)]
    services = [d for d in docs if d.body["kind"] == "Service"]
    assert services
    for svc in services:
        selector = svc.body["spec"]["selector"]
        selected = [p for p in pods if _labels_match(selector, p.get("metadata", {}).get("labels", {}))]
        assert selected, f"{svc.where} selects no pod"
        port_names = {p.get("name") for pod in selected for c in pod["spec"]["containers"]
                      for p in c.get("ports", [])}
        for port in svc.body["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, int) or target in port_names, f"{svc.where}: no container port {target}"


def test_deployment_selectors_match_their_templates() -> None:
    for d in ALL_DOCS:
        if d.body["kind"] == "Deployment":
            sel = d.body["spec"]["selector"]["matchLabels"]
            assert _labels_match(sel, d.body["spec"]["template"]["metadata"]["labels"]), d.where


def test_service_monitors_find_services_and_ports(builds: dict[str, list[Doc]]) -> None:
    services = [d.body for d in builds["keda"] if d.body["kind"] == "Service"]
    monitors = [d for d in builds["keda"] if d.body["kind"] == "ServiceMonitor"]
    assert {m.body["metadata"]["name"] for m in monitors} >= {"fleetwise-autoscaler", "vllm"}
    for mon in monitors:
        sel = mon.body["spec"]["selector"]["matchLabels"]
        found = [s for s in services if _labels_match(sel, s["metadata"].get("labels", {}))]
        assert found, f"{mon.where} selects no Service"
        names = {p["name"] for s in found for p in s["spec"]["ports"]}
        for ep in mon.body["spec"]["endpoints"]:
            assert ep["port"] in names, f"{mon.where}: Service has no port named {ep['port']}"


def test_vllm_service_monitor_sets_the_pool_label_from_the_pod_label() -> None:
    mon = _one(ALL_DOCS, "ServiceMonitor", "vllm")
    relabel = mon["spec"]["endpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_fleetwise_io_pool"], "targetLabel": "pool",
            "action": "replace"} in relabel
    vllm = _one(ALL_DOCS, "Deployment", "vllm-chat-8b")
    assert "fleetwise.io/pool" in vllm["spec"]["template"]["metadata"]["labels"]


def test_autoscaler_container_runs_a_real_cli_command_with_its_mounted_config() -> None:
    dep = _one(ALL_DOCS, "Deployment", "fleetwise-autoscaler")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    verb, params = parse_cli(c["args"])
    assert verb == "autoscale"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert params["port"] == port
    assert params["host"] == "0.0.0.0", "the exporter must listen on every interface to be scraped"
    # --config is a key of the ConfigMap mounted at its folder.
    cfg = str(params["config"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (vol,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "fleetwise-pools"]
    key = cfg.removeprefix(mounts[vol].rstrip("/") + "/")
    assert key != cfg and key in _one(ALL_DOCS, "ConfigMap", "fleetwise-pools")["data"]


def test_pools_yaml_is_a_valid_live_config_on_catalog_hardware() -> None:
    from planner.catalog import load_catalog
    from planner.live.config import parse_config

    cm = _one(ALL_DOCS, "ConfigMap", "fleetwise-pools")
    cfg = parse_config(yaml.safe_load(cm["data"]["pools.yaml"]), source="fleetwise-pools/pools.yaml")
    cat = load_catalog()
    for pool in cfg.pools:
        cat.model(pool.model)
        cat.gpu(pool.gpu)
        assert dict(pool.selector).get("namespace") == NAMESPACE, pool.name


def test_every_fleetwise_container_parses_with_the_real_cli() -> None:
    checked = 0
    for d in ALL_DOCS:
        for _, pod in pod_specs(d.body):
            for c in pod["spec"]["containers"]:
                if fleetwise_image(c) and "command" not in c and c.get("args"):
                    parse_cli(c["args"])
                    checked += 1
    assert checked >= 2, "expected the autoscaler and dashboard containers"
    dash = _one(ALL_DOCS, "Deployment", "fleetwise-dashboard")["spec"]["template"]["spec"]["containers"][0]
    _, params = parse_cli(dash["args"])
    assert params["headless"] and params["address"] == "0.0.0.0"
    assert params["port"] == dash["ports"][0]["containerPort"]


def test_rayjob_entrypoint_is_a_plan_on_the_cluster_with_catalog_names() -> None:
    from planner.catalog import load_catalog

    job = _one(ALL_DOCS, "RayJob", "fleetwise-plan")
    argv = split_command(job["spec"]["entrypoint"])
    assert argv[0] == "fleetwise"
    verb, params = parse_cli(argv[1:])
    assert verb == "plan" and params["ray_address"] == "auto"
    cat = load_catalog()
    cat.model(params["model"])
    for g in params["gpus"].split(","):
        cat.gpu(g)


def test_fleetwise_pods_run_as_the_images_non_root_user() -> None:
    from tests.deploy.dockerfile import image_uid

    uid = image_uid()
    for d in ALL_DOCS:
        for where, pod in pod_specs(d.body):
            if any(fleetwise_image(c) for c in pod["spec"]["containers"]):
                sc = pod["spec"].get("securityContext", {})
                assert sc.get("runAsNonRoot") is True and sc.get("runAsUser") == uid, f"{d.where} {where}"
                for c in pod["spec"]["containers"]:
                    assert c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, d.where


def test_ray_pods_have_shared_memory_for_the_object_store() -> None:
    for d in ALL_DOCS:
        if d.body["kind"] in {"RayJob", "RayCluster"}:
            for where, pod in pod_specs(d.body):
                containers = pod["spec"]["containers"]
                mounts = {m["mountPath"] for c in containers for m in c.get("volumeMounts", [])}
                assert "/dev/shm" in mounts, f"{d.where} {where}"


# --- KEDA and HPA act on a metric fleetwise exports -----------------------------------------------------

def test_keda_trigger_queries_fleetwise_desired_replicas_of_the_scaled_pool() -> None:
    so = _one(ALL_DOCS, "ScaledObject", "vllm-chat-8b")
    (trig,) = so["spec"]["triggers"]
    assert trig["type"] == "prometheus"
    query = trig["metadata"]["query"]
    assert metric_names(query) == {DESIRED_REPLICAS.name} <= sample_names()
    labels = _matchers(query, DESIRED_REPLICAS.name)
    target = _one(ALL_DOCS, "Deployment", so["spec"]["scaleTargetRef"]["name"])
    assert labels["pool"] in _pools()
    assert labels["pool"] == target["metadata"]["labels"]["fleetwise.io/pool"]
    assert labels["namespace"] == NAMESPACE
    # replicas = value / threshold: only AverageValue with threshold 1 makes the count the desired count.
    assert trig["metricType"] == "AverageValue" and float(trig["metadata"]["threshold"]) == 1.0
    # Missing data must not read as 0 and must hold the current scale; never scale to zero.
    assert trig["metadata"]["ignoreNullValues"] == "false"
    assert so["spec"]["fallback"]["behavior"] == "currentReplicas"
    assert so["spec"]["minReplicaCount"] >= 1
    pool = _pools()[labels["pool"]]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (
        pool["min_replicas"], pool["max_replicas"])


def test_keda_reads_the_prometheus_fleetwise_reads() -> None:
    so = _one(ALL_DOCS, "ScaledObject", "vllm-chat-8b")
    dep = _one(ALL_DOCS, "Deployment", "fleetwise-autoscaler")
    _, params = parse_cli(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == params["prometheus_url"]


def test_hpa_external_metric_is_served_by_the_adapter_rule() -> None:
    hpa = _one(ALL_DOCS, "HorizontalPodAutoscaler", "vllm-chat-8b")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    ext = metric["external"]
    assert ext["target"] == {"type": "AverageValue", "averageValue": "1"}
    assert hpa["spec"]["minReplicas"] >= 1
    cm = load_docs(KUBE / "hpa" / "prometheus-adapter-config.yaml")[0].body
    rules = yaml.safe_load(cm["data"]["config.yaml"])["externalRules"]
    served = {r["name"]["as"]: r for r in rules}
    assert ext["metric"]["name"] in served
    rule = served[ext["metric"]["name"]]
    series = metric_names(rule["seriesQuery"])
    assert series == {DESIRED_REPLICAS.name} <= sample_names()
    assert re.fullmatch(rule["name"]["matches"], DESIRED_REPLICAS.name)
    pool = ext["metric"]["selector"]["matchLabels"]["pool"]
    target = _one(ALL_DOCS, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    assert pool in _pools() and pool == target["metadata"]["labels"]["fleetwise.io/pool"]

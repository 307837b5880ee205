"""deploy/inference-gateway: an InferencePool (Gateway API Inference Extension v1) over the pods fleetwise
scales, and the pools.yaml that reads the same pool with the gateway's queue as its zero-replica signal."""

from __future__ import annotations

import yaml

from planner.live.config import load_config
from tests.deploy import crd_schemas
from tests.deploy.manifests import DEPLOY, K8S_VERSIONS, all_docs, validate_custom

GATEWAY = DEPLOY / "inference-gateway"


def test_the_inferencepool_is_valid_and_selects_the_pods_fleetwise_scales() -> None:
    pool = yaml.safe_load((GATEWAY / "inferencepool.yaml").read_text(encoding="utf-8"))
    for version in K8S_VERSIONS:
        validate_custom(pool, crd_schemas.INFERENCE_POOL, version)
    selector = pool["spec"]["selector"]["matchLabels"]
    deployments = [d.body for d in all_docs() if d.body["kind"] == "Deployment"
                   and d.body["metadata"]["name"] == "vllm-chat-8b"]
    (vllm,) = deployments
    pod_labels = vllm["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()  # the gateway routes among exactly the pool's pods
    ports = {p["containerPort"] for c in vllm["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {p["number"] for p in pool["spec"]["targetPorts"]} <= ports


def test_the_gateway_pools_yaml_loads_and_reads_the_same_pool() -> None:
    cfg = load_config(GATEWAY / "pools.yaml")
    (pool,) = cfg.pools
    assert pool.engine == "vllm" and pool.min_replicas == 0 and pool.pending_query
    assert dict(pool.selector)["pool"] == "chat-8b"

"""JSON Schemas for the custom resources and config files in deploy/ that kubernetes-validate does not know.

Each schema covers the fields fleetwise's manifests use, written from the project's public reference (URL on
each schema), and rejects unknown fields (``additionalProperties: false``) so a misspelt key fails the test
instead of being silently pruned by the API server. Pod templates inside RayCluster/RayJob and label
selectors point at the Kubernetes definitions shipped with kubernetes-validate (``K8S_DEFS``), so the pods
KubeRay creates are checked as strictly as a Deployment's.
"""

from __future__ import annotations

from typing import Any

K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
"""Base URI of the Kubernetes definitions (the ``$id`` of kubernetes-validate's ``_definitions.json``)."""

Schema = dict[str, Any]

_STR_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META: Schema = {"$ref": K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_POD_TEMPLATE: Schema = {"$ref": K8S_DEFS + "io.k8s.api.core.v1.PodTemplateSpec"}
_LABEL_SELECTOR: Schema = {"$ref": K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}
_HPA_BEHAVIOR: Schema = {"$ref": K8S_DEFS + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"}
# Prometheus duration as prometheus-operator validates it (monitoringv1.Duration).
_DURATION: Schema = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _OBJECT_META,
            "spec": spec,
        },
    }


# --- KubeRay, ray.io/v1 ---------------------------------------------------------------------------------
# Source: KubeRay API reference, https://ray-project.github.io/kuberay/reference/api/ (RayClusterSpec,
# HeadGroupSpec, WorkerGroupSpec, RayJobSpec), and the RayJob quick start,
# https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html
_HEAD_GROUP: Schema = {
    "type": "object",
    "required": ["template"],
    "additionalProperties": False,
    "properties": {
        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "headService": {"type": "object"},
        "enableIngress": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "template": _POD_TEMPLATE,
    },
}
_WORKER_GROUP: Schema = {
    "type": "object",
    "required": ["groupName", "template"],
    "additionalProperties": False,
    "properties": {
        "groupName": {"type": "string", "minLength": 1},
        "replicas": {"type": "integer", "minimum": 0},
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
        "numOfHosts": {"type": "integer", "minimum": 1},
        "suspend": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "scaleStrategy": {"type": "object"},
        "template": _POD_TEMPLATE,
    },
}
_RAY_CLUSTER_SPEC: Schema = {
    "type": "object",
    "required": ["headGroupSpec"],
    "additionalProperties": False,
    "properties": {
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": {"type": "object"},
        "headServiceAnnotations": _STR_MAP,
        "suspend": {"type": "boolean"},
        "headGroupSpec": _HEAD_GROUP,
        "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
    },
}
RAY_CLUSTER = _resource("ray.io/v1", "RayCluster", _RAY_CLUSTER_SPEC)
RAY_JOB = _resource("ray.io/v1", "RayJob", {
    "type": "object",
    "required": ["entrypoint"],
    "additionalProperties": False,
    "oneOf": [{"required": ["rayClusterSpec"]}, {"required": ["clusterSelector"]}],
    "properties": {
        "entrypoint": {"type": "string", "minLength": 1},
        "runtimeEnvYAML": {"type": "string"},
        "jobId": {"type": "string"},
        "metadata": _STR_MAP,
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "shutdownAfterJobFinishes": {"type": "boolean"},
        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "backoffLimit": {"type": "integer", "minimum": 0},
        "suspend": {"type": "boolean"},
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "entrypointResources": {"type": "string"},
        "rayClusterSpec": _RAY_CLUSTER_SPEC,
        "clusterSelector": _STR_MAP,
        "submitterPodTemplate": _POD_TEMPLATE,
        "submitterConfig": {"type": "object"},
    },
})

# --- prometheus-operator, monitoring.coreos.com/v1 ------------------------------------------------------
# Source: prometheus-operator API reference, https://prometheus-operator.dev/docs/api-reference/api/
# (ServiceMonitorSpec, Endpoint, RelabelConfig, PrometheusRuleSpec, RuleGroup, Rule).
_RELABEL: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array",
                         "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                            "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                            "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                            "dropequal", "DropEqual"]},
    },
}
_ENDPOINT: Schema = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
    "properties": {
        "port": {"type": "string"},
        "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "params": {"type": "object"},
        "relabelings": {"type": "array", "items": _RELABEL},
        "metricRelabelings": {"type": "array", "items": _RELABEL},
    },
}
SERVICE_MONITOR = _resource("monitoring.coreos.com/v1", "ServiceMonitor", {
    "type": "object",
    "required": ["selector", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "selector": _LABEL_SELECTOR,
        "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
        "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
            "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
        "jobLabel": {"type": "string"},
        "targetLabels": {"type": "array", "items": {"type": "string"}},
        "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "sampleLimit": {"type": "integer", "minimum": 0},
    },
})
_RULE: Schema = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "minLength": 1},
        "expr": {"type": ["string", "integer"]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
    },
}
RULE_GROUPS: Schema = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["name", "rules"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "interval": _DURATION,
            "limit": {"type": "integer"},
            "rules": {"type": "array", "minItems": 1, "items": _RULE},
        },
    },
}
PROMETHEUS_RULE = _resource("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {"groups": RULE_GROUPS},
})

# --- KEDA, keda.sh/v1alpha1 -----------------------------------------------------------------------------
# Sources: ScaledObject specification, https://keda.sh/docs/2.17/reference/scaledobject-spec/ and the
# Prometheus scaler, https://keda.sh/docs/2.17/scalers/prometheus/ (trigger metadata values are strings).
_PROMETHEUS_TRIGGER_METADATA: Schema = {
    "type": "object",
    "required": ["serverAddress", "query", "threshold"],
    "additionalProperties": False,
    "properties": {
        "serverAddress": {"type": "string", "pattern": "^https?://"},
        "query": {"type": "string", "minLength": 1},
        "threshold": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        "activationThreshold": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        "namespace": {"type": "string"},
        "customHeaders": {"type": "string"},
        "ignoreNullValues": {"enum": ["true", "false"]},
        "queryParameters": {"type": "string"},
        "unsafeSsl": {"enum": ["true", "false"]},
        "timeout": {"type": "string"},
    },
}
SCALED_OBJECT = _resource("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object",
    "required": ["scaleTargetRef", "triggers"],
    "additionalProperties": False,
    "properties": {
        "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                           "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                          "name": {"type": "string"},
                                          "envSourceContainerName": {"type": "string"}}},
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "initialCooldownPeriod": {"type": "integer", "minimum": 0},
        "idleReplicaCount": {"type": "integer", "minimum": 0},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "fallback": {
            "type": "object",
            "required": ["failureThreshold", "replicas"],
            "additionalProperties": False,
            "properties": {
                "failureThreshold": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 0},
                "behavior": {"enum": ["static", "currentReplicas", "currentReplicasIfHigher",
                                      "currentReplicasIfLower"]},
            },
        },
        "advanced": {"type": "object", "additionalProperties": False, "properties": {
            "restoreToOriginalReplicaCount": {"type": "boolean"},
            "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string"}, "behavior": _HPA_BEHAVIOR}},
            "scalingModifiers": {"type": "object"}}},
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["type", "metadata"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "name": {"type": "string"},
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "useCachedMetrics": {"type": "boolean"},
                "authenticationRef": {"type": "object"},
                "metadata": _STR_MAP,
            },
            "if": {"properties": {"type": {"const": "prometheus"}}},
            "then": {"properties": {"metadata": _PROMETHEUS_TRIGGER_METADATA}},
        }},
    },
})

# --- prometheus-adapter --config ------------------------------------------------------------------------
# Source: https://github.com/kubernetes-sigs/prometheus-adapter/blob/master/docs/config.md (rule discovery
# and naming: seriesQuery, resources.overrides, name.matches/as, metricsQuery templates).
PROMETHEUS_ADAPTER_CONFIG: Schema = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        kind: {"type": "array", "items": {
            "type": "object",
            "required": ["seriesQuery", "metricsQuery"],
            "additionalProperties": False,
            "properties": {
                "seriesQuery": {"type": "string"},
                "seriesFilters": {"type": "array"},
                "resources": {"type": "object", "additionalProperties": False, "properties": {
                    "template": {"type": "string"},
                    "overrides": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["resource"], "additionalProperties": False,
                        "properties": {"resource": {"type": "string"}, "group": {"type": "string"}}}}}},
                "name": {"type": "object", "additionalProperties": False,
                         "properties": {"matches": {"type": "string"}, "as": {"type": "string"}}},
                "metricsQuery": {"type": "string"},
            },
        }}
        for kind in ("rules", "externalRules", "resourceRules")
    },
}

# --- kustomize ------------------------------------------------------------------------------------------
# Source: https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/ (the fields used here).
KUSTOMIZATION: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "namespace": {"type": "string"},
        "resources": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "labels": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "pairs": _STR_MAP, "includeSelectors": {"type": "boolean"},
            "includeTemplates": {"type": "boolean"}}}},
        "images": {"type": "array", "items": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "newName": {"type": "string"},
                           "newTag": {"type": "string"}, "digest": {"type": "string"}},
        }},
    },
}

CUSTOM_RESOURCES: dict[tuple[str, str], Schema] = {
    ("ray.io/v1", "RayCluster"): RAY_CLUSTER,
    ("ray.io/v1", "RayJob"): RAY_JOB,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
}
"""Schema per (apiVersion, kind) of every custom resource deploy/ may contain."""

# --- Prometheus kubernetes_sd_config ---------------------------------------------------------------------
# Source: https://prometheus.io/docs/prometheus/latest/configuration/configuration/#kubernetes_sd_config
# (Debian's promtool is built without Kubernetes discovery, so tests check these blocks themselves.)
KUBERNETES_SD_CONFIG: Schema = {
    "type": "object",
    "required": ["role"],
    "additionalProperties": False,
    "properties": {
        "role": {"enum": ["node", "service", "pod", "endpoints", "endpointslice", "ingress"]},
        "api_server": {"type": "string"},
        "kubeconfig_file": {"type": "string"},
        "namespaces": {"type": "object", "additionalProperties": False, "properties": {
            "own_namespace": {"type": "boolean"}, "names": {"type": "array", "items": {"type": "string"}}}},
        "selectors": {"type": "array"},
        "attach_metadata": {"type": "object"},
    },
}
_POD_META = ("__meta_kubernetes_namespace", "__meta_kubernetes_pod_name", "__meta_kubernetes_pod_ip",
             "__meta_kubernetes_pod_container_name", "__meta_kubernetes_pod_container_port_name",
             "__meta_kubernetes_pod_container_port_number", "__meta_kubernetes_pod_container_port_protocol",
             "__meta_kubernetes_pod_ready", "__meta_kubernetes_pod_phase", "__meta_kubernetes_pod_node_name",
             "__meta_kubernetes_pod_host_ip", "__meta_kubernetes_pod_uid",
             "__meta_kubernetes_pod_controller_kind", "__meta_kubernetes_pod_controller_name")
KUBERNETES_SD_META: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # role: (exact meta labels, prefixes of per-label/annotation meta labels)
    "pod": (_POD_META, ("__meta_kubernetes_pod_label_", "__meta_kubernetes_pod_labelpresent_",
                        "__meta_kubernetes_pod_annotation_", "__meta_kubernetes_pod_annotationpresent_")),
    "endpoints": (
        (*_POD_META, "__meta_kubernetes_endpoints_name", "__meta_kubernetes_endpoint_hostname",
         "__meta_kubernetes_endpoint_node_name", "__meta_kubernetes_endpoint_ready",
         "__meta_kubernetes_endpoint_port_name", "__meta_kubernetes_endpoint_port_protocol",
         "__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name",
         "__meta_kubernetes_service_name", "__meta_kubernetes_service_cluster_ip",
         "__meta_kubernetes_service_port_name", "__meta_kubernetes_service_port_number"),
        ("__meta_kubernetes_pod_label_", "__meta_kubernetes_pod_annotation_",
         "__meta_kubernetes_service_label_", "__meta_kubernetes_service_annotation_",
         "__meta_kubernetes_endpoints_label_", "__meta_kubernetes_endpoints_annotation_")),
}
"""Discovery meta labels each role provides, from the same page (only the roles deploy/ uses)."""

_LABEL_VALUE: Schema = {"type": "string", "maxLength": 63,
                        "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"}
_PORT: Schema = {"type": "object", "required": ["number"], "additionalProperties": False,
         "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}}

INFERENCE_POOL = _resource("inference.networking.k8s.io/v1", "InferencePool", {
    # Gateway API Inference Extension v1 (config/crd/bases/inference.networking.k8s.io_inferencepools.yaml)
    "type": "object",
    "required": ["selector", "targetPorts"],
    "additionalProperties": False,
    "properties": {
        "selector": {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
                     "properties": {"matchLabels": {
                         "type": "object", "minProperties": 1, "maxProperties": 64,
                         "additionalProperties": _LABEL_VALUE}}},
        "targetPorts": {"type": "array", "minItems": 1, "maxItems": 8, "items": _PORT},
        "appProtocol": {"enum": ["http", "kubernetes.io/h2c"]},
        "endpointPickerRef": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {
                "group": {"type": "string", "maxLength": 253},
                "kind": {"type": "string", "minLength": 1, "maxLength": 63,
                         "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"},
                "name": {"type": "string", "minLength": 1, "maxLength": 253},
                "port": _PORT,
                "failureMode": {"enum": ["FailOpen", "FailClose"]},
            },
        },
    },
})
"""InferencePool (GAIE v1): the pool an inference gateway routes among, and its endpoint picker."""

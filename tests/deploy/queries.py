"""Every PromQL expression deploy/ ships, by where it lives, and the series names each may use."""

from __future__ import annotations

import json

import yaml

from planner.live.names import sample_names
from tests.deploy.manifests import DEPLOY, KUBE, load_docs
from tests.deploy.promql import expand_grafana
from tests.deploy.vllm_metrics import vllm_sample_names

RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "fleetwise.json"

OTHER_SERIES = frozenset({"up"})
"""Series Prometheus itself writes for every target (https://prometheus.io/docs/concepts/jobs_instances/)."""


def recording_rules() -> frozenset[str]:
    """Names rules.yml records."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return frozenset(r["record"] for g in groups for r in g["rules"] if "record" in r)


def known_series() -> frozenset[str]:
    """What a query may name: fleetwise's exported series, documented vLLM series, our records, ``up``."""
    return sample_names() | vllm_sample_names() | recording_rules() | OTHER_SERIES


def dashboard_exprs() -> dict[str, str]:
    """The Grafana dashboard's target expressions and variable queries, Grafana variables expanded."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out[f"grafana {panel['title']} {t['refId']}"] = expand_grafana(t["expr"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = q.removeprefix("label_values(").rsplit(",", 1)[0]
            out[f"grafana variable {var['name']}"] = expand_grafana(inner)
    return out


def all_exprs() -> dict[str, str]:
    """rules.yml, the KEDA trigger, the prometheus-adapter rule (templates rendered) and the dashboard."""
    out: dict[str, str] = {}
    for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for r in g["rules"]:
            out[f"rules.yml {r.get('record') or r.get('alert')}"] = str(r["expr"])
    for path in KUBE.rglob("*.yaml"):
        for d in load_docs(path):
            if d.body["kind"] == "ScaledObject":
                for t in d.body["spec"]["triggers"]:
                    out[f"{d.where} trigger {t.get('name', '')}"] = t["metadata"]["query"]
            if d.body["kind"] == "ConfigMap" and "config.yaml" in d.body.get("data", {}):
                adapter = yaml.safe_load(d.body["data"]["config.yaml"])
                for kind, rules in adapter.items():
                    for i, r in enumerate(rules):
                        out[f"{d.where} {kind}[{i}] seriesQuery"] = r["seriesQuery"]
                        out[f"{d.where} {kind}[{i}] metricsQuery"] = (
                            r["metricsQuery"].replace("<<.Series>>", r["name"].get("as", "x"))
                            .replace("<<.LabelMatchers>>", 'pool="chat-8b",namespace="fleetwise"')
                            .replace("<<.GroupBy>>", "namespace"))
    out.update(dashboard_exprs())
    return out

"""deploy/grafana/fleetwise.json: a loadable Grafana dashboard that shows every family fleetwise exports.

(Its PromQL is parsed and name-checked with everything else in test_promql.py.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from planner.live.names import sample_names
from tests.deploy.promql import metric_names
from tests.deploy.queries import DASHBOARD, dashboard_exprs

DASH: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
PANELS = [p for p in DASH["panels"] if p["type"] != "row"]


def test_dashboard_shape() -> None:
    assert DASH["uid"] and DASH["title"] and DASH["schemaVersion"] >= 36
    ids = [p["id"] for p in DASH["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in DASH["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    assert len(PANELS) >= 10


def test_panels_query_the_selected_prometheus() -> None:
    variables = {v["name"]: v for v in DASH["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for p in PANELS:
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in [p, *p["targets"]]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])


def test_every_variable_used_is_defined() -> None:
    defined = {v["name"] for v in DASH["templating"]["list"]}
    raw = json.dumps(DASH["panels"]) + json.dumps(DASH["templating"])
    used = set(re.findall(r"\$\{?(\w+)", raw)) - {"__rate_interval", "__interval", "__range"}
    assert used <= defined, f"undefined dashboard variables {used - defined}"


def test_dashboard_shows_every_exported_family() -> None:
    shown = set().union(*(metric_names(e) for e in dashboard_exprs().values()))
    exported = {n for n in sample_names() if not n.endswith("_created")}
    assert exported <= shown, f"exported but not on the dashboard: {sorted(exported - shown)}"


def test_dashboard_shows_the_vllm_signals_fleetwise_scales_on() -> None:
    shown = set().union(*(metric_names(e) for e in dashboard_exprs().values()))
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket"):
        assert name in shown, name
    titles = " ".join(p["title"].lower() for p in PANELS)
    for topic in ("desired vs current", "forecast", "power", "slo", "solve", "kv-cache", "waiting"):
        assert topic in titles, f"no panel about {topic}"

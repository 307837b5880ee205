"""Every PromQL expression in deploy/ parses (promtool) and names only series that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.live.names import sample_names
from tests.deploy.promql import metric_names, promtool, promtool_check_exprs
from tests.deploy.queries import all_exprs, known_series, recording_rules
from tests.deploy.vllm_metrics import vllm_sample_names

EXPRS = all_exprs()


def test_queries_were_found_everywhere() -> None:
    wheres = " ".join(EXPRS)
    for part in ("rules.yml", "ScaledObject", "externalRules", "grafana"):
        assert part in wheres, f"no PromQL collected from {part}"


@pytest.mark.parametrize("where", sorted(EXPRS))
def test_expression_names_known_series(where: str) -> None:
    expr = EXPRS[where]
    assert "__name__" not in expr, "name the series: a __name__ matcher hides it from this check"
    names = metric_names(expr)
    assert names, f"{where}: {expr!r} selects no series"
    fleetwise = {n for n in names if n.startswith("fleetwise_")}
    vllm = {n for n in names if n.startswith("vllm:")}
    assert fleetwise <= sample_names(), f"{where}: not exported by fleetwise: {fleetwise - sample_names()}"
    assert vllm <= vllm_sample_names(), f"{where}: not a documented vLLM series: {vllm - vllm_sample_names()}"
    assert names <= known_series(), f"{where}: unknown series {names - known_series()}"


def test_name_check_can_fail() -> None:
    assert not metric_names("fleetwise_desired_replica{pool='x'}") <= sample_names()
    assert not metric_names("vllm:gpu_cache_usage") <= vllm_sample_names()
    assert "pool:vllm_kv_cache_usage:avg" in recording_rules()


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    if promtool() is None:
        pytest.skip("promtool not on PATH (Debian/Ubuntu: apt-get install prometheus)")
    result = promtool_check_exprs(EXPRS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = promtool_check_exprs({"broken": "sum by (pool (fleetwise_desired_replicas)"}, tmp_path)
    assert broken.returncode != 0

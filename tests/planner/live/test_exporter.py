"""The exporter: every family named in planner.live.names, parsed back, linted, served, reloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.cli.serve_metrics_cmd import parse_instant
from planner.live import names as N  # noqa: N812
from planner.live.exporter import (
    Count,
    Current,
    Desired,
    Forecast,
    PoolValue,
    PowerCap,
    ResultsSource,
    SLOAttainment,
    Snapshot,
    Solve,
    build_registry,
    load_results,
    serve,
)
from planner.perf import build_replica_perf
from planner.sim.config import SimConfig
from planner.sim.replay import replay
from planner.sim.writer import write_result
from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace

FULL = Snapshot(
    desired=(Desired("chat", "both", "Llama-3.1-8B", "H100-SXM", 4),),
    current=(Current("chat", "both", 3),),
    power_caps=(PowerCap("row", "r1", 20_000.0),),
    forecasts=(Forecast("chat", "0.9", 300.0, 12.5), Forecast("chat", "0.9", 300.0, 9000.0, kind="prompt")),
    slo=(SLOAttainment("chat", "default", 0.995),),
    gpu_seconds=(PoolValue("chat", 7200.0),),
    cost_dollars=(PoolValue("chat", 5.98),),
    solves=(Solve("cp-sat", "optimal", 0.25, 1.7e9),),
    staleness_s=(PoolValue("chat", 2.0),),
    healthy=(PoolValue("chat", 1.0),),
    bad_input=(Count("chat", "stale", 2.0),),
    scaling_actions=(Count("chat", "up", 5.0),),
)


FAMILY_NAMES = {m.name + "_info" if m.kind is N.Kind.INFO else m.name for m in N.EXPORTED}
"""Family names as the text parser reports them (the text format has no info type: a gauge ``*_info``)."""


def _text(snap: Snapshot) -> str:
    return generate_latest(build_registry(lambda: snap, build_version="test")).decode()


def test_every_exported_sample_is_a_declared_name_and_every_family_appears() -> None:
    fams = list(text_string_to_metric_families(_text(FULL)))
    seen = {s.name for f in fams for s in f.samples}
    assert seen <= N.sample_names(), seen - N.sample_names()
    assert {f.name for f in fams} == FAMILY_NAMES
    # counters carry _total, info families _info, and nothing of the default registry leaks in
    assert "fleetwise_bad_input_total" in seen and "fleetwise_build_info" in seen
    assert not any(n.startswith(("process_", "python_")) for n in seen)


def test_values_round_trip_through_the_registry() -> None:
    reg = build_registry(lambda: FULL, build_version="test")
    assert reg.get_sample_value("fleetwise_desired_replicas", {"pool": "chat", "role": "both",
                                "model": "Llama-3.1-8B", "gpu": "H100-SXM"}) == 4.0
    assert reg.get_sample_value("fleetwise_forecast_tokens_per_second", {
        "pool": "chat", "kind": "prompt", "forecast_quantile": "0.9", "horizon_seconds": "300"}) == 9000.0
    status = "fleetwise_last_solve_status"
    assert reg.get_sample_value(status, {"solver": "cp-sat", "status": "optimal"}) == 1.0
    assert reg.get_sample_value(status, {"solver": "cp-sat", "status": "error"}) == 0.0
    assert reg.get_sample_value("fleetwise_bad_input_total", {"pool": "chat", "reason": "stale"}) == 2.0
    assert reg.get_sample_value("fleetwise_build_info", {"version": "test"}) == 1.0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")
def test_promtool_accepts_the_exposition() -> None:
    """``promtool check metrics`` lints the exposition: no complaint at all (the forecast gauges label
    their quantile ``forecast_quantile``, since Prometheus reserves ``quantile`` for summaries)."""
    res = subprocess.run(["promtool", "check", "metrics"], input=_text(FULL).encode(), capture_output=True,
                         timeout=30, check=False)
    out = (res.stdout + res.stderr).decode()
    problems = [ln for ln in out.splitlines() if ln.strip()]
    assert res.returncode == 0, out
    assert not problems, problems


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory: pytest.TempPathFactory, shared_traces: Path) -> Path:
    """A real replay's results folder: the first 1,500 requests of the Azure conversation trace."""
    tr = load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    tr = RequestTrace(tr.df.head(1500), tr.meta)
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), gpu)
    result = replay(tr, perf, config=SimConfig(replicas=2), gpu=gpu)
    out = tmp_path_factory.mktemp("replay")
    write_result(result, out)
    return out


def test_replay_summary_becomes_series(replay_dir: Path) -> None:
    summary = json.loads((replay_dir / "summary.json").read_text())
    snap = load_results(replay_dir, now_s=(replay_dir / "summary.json").stat().st_mtime + 5.0)
    reg = build_registry(lambda: snap, build_version="t")
    assert reg.get_sample_value("fleetwise_desired_replicas",
                                {"pool": "replay", "role": "both", "model": "", "gpu": ""}) == 2.0
    assert reg.get_sample_value("fleetwise_plan_gpu_seconds", {"pool": "replay"}) == pytest.approx(
        summary["gpu_hours"] * 3600.0)
    assert reg.get_sample_value("fleetwise_predicted_slo_attainment_ratio",
                                {"pool": "replay", "slo_class": "default"}) == pytest.approx(
        summary["classes"][0]["attainment"])
    age = reg.get_sample_value("fleetwise_input_staleness_seconds", {"pool": "results"})
    assert age == pytest.approx(5.0)


def _plan_doc() -> dict[str, object]:
    """The shape ``fleetwise plan --json`` prints (keys the exporter reads; see plan_cmd.report_json)."""
    key = "H100-SXM tp1 pp1 ep1 seqs512 tok16384 aggregated"
    return {"model": "Llama-3.1-8B", "status": "OPTIMAL", "solver": "cp-sat", "solve_wall_s": 0.21,
            "configs": [{"key": key, "gpu": "H100-SXM", "role": "aggregated"}],
            "cost_breakdown": [{"config": key, "role": "aggregated", "gpu": "H100-SXM", "peak_replicas": 3,
                                "gpu_hours": 2.5, "cost_usd": 7.475}],
            "windows": [{"start_s": 0.0, "demand_rps": 4.0}, {"start_s": 300.0, "demand_rps": 6.5}],
            "verification": [{"label": "plan", "predicted_attainment": 0.999}]}


def test_plan_json_and_reload_on_change(tmp_path: Path) -> None:
    doc = _plan_doc()
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    logs: list[str] = []
    src = ResultsSource(tmp_path, clock=lambda: 2e9, log=logs.append)
    reg = build_registry(src, build_version="t")
    labels = {"pool": doc["configs"][0]["key"], "role": "aggregated",  # type: ignore[index]
              "model": "Llama-3.1-8B", "gpu": "H100-SXM"}
    assert reg.get_sample_value("fleetwise_desired_replicas", labels) == 3.0
    assert reg.get_sample_value("fleetwise_forecast_requests_per_second",
                                {"pool": "Llama-3.1-8B", "forecast_quantile": "1",
                                 "horizon_seconds": "300"}) == 6.5
    assert reg.get_sample_value("fleetwise_last_solve_duration_seconds", {"solver": "cp-sat"}) == 0.21
    doc["cost_breakdown"][0]["peak_replicas"] = 5  # type: ignore[index]
    (tmp_path / "plan.json").write_text(json.dumps(doc) + " ")
    assert reg.get_sample_value("fleetwise_desired_replicas", labels) == 5.0
    # a broken rewrite keeps the last good numbers and says so
    (tmp_path / "plan.json").write_text("{not json")
    assert reg.get_sample_value("fleetwise_desired_replicas", labels) == 5.0
    err = reg.get_sample_value("fleetwise_last_solve_status", {"solver": "results", "status": "error"})
    assert err == 1.0
    assert logs and "plan.json" in logs[0]


def test_desired_replicas_follow_the_plans_current_window(tmp_path: Path) -> None:
    """A plan whose configurations peak in different windows asks for the current window's fleet, not the
    sum of the peaks (which would be twice the GPUs the plan pays for)."""
    a = "H100-SXM tp1 pp1 ep1 seqs512 tok16384 aggregated"
    b = "A100-80GB-SXM tp1 pp1 ep1 seqs256 tok8192 aggregated"
    doc = _plan_doc()
    doc["configs"] = [{"key": a, "gpu": "H100-SXM", "role": "aggregated"},
                      {"key": b, "gpu": "A100-80GB-SXM", "role": "aggregated"}]
    doc["cost_breakdown"] = [
        {"config": a, "role": "aggregated", "gpu": "H100-SXM", "peak_replicas": 4, "gpu_hours": 1.0,
         "cost_usd": 3.0},
        {"config": b, "role": "aggregated", "gpu": "A100-80GB-SXM", "peak_replicas": 3, "gpu_hours": 1.0,
         "cost_usd": 1.8}]
    doc["windows"] = [{"start_s": 0.0, "duration_s": 300.0, "demand_rps": 4.0, "replicas": {a: 4}},
                      {"start_s": 300.0, "duration_s": 300.0, "demand_rps": 6.5, "replicas": {b: 3}}]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    written = path.stat().st_mtime
    now = [written + 10.0]
    reg = build_registry(ResultsSource(tmp_path, clock=lambda: now[0]), build_version="t")

    def desired(key: str, gpu: str) -> float | None:
        return reg.get_sample_value("fleetwise_desired_replicas", {"pool": key, "role": "aggregated",
                                                                   "model": "Llama-3.1-8B", "gpu": gpu})

    assert (desired(a, "H100-SXM"), desired(b, "A100-80GB-SXM")) == (4.0, 0.0)
    now[0] = written + 420.0  # the second window, a new minute: reloaded
    assert (desired(a, "H100-SXM"), desired(b, "A100-80GB-SXM")) == (0.0, 3.0)
    now[0] = written + 610.0  # the plan repeats over its span
    assert (desired(a, "H100-SXM"), desired(b, "A100-80GB-SXM")) == (4.0, 0.0)
    # anchored at a stated start instead (serve-metrics --plan-start): 2026-12-07T00:00:00Z plus 7 minutes
    # is the second window whatever the file's mtime
    start = parse_instant("2026-12-07T00:00:00Z")
    assert start is not None
    anchored = build_registry(ResultsSource(tmp_path, clock=lambda: start + 420.0, plan_start_s=start),
                              build_version="t")
    assert anchored.get_sample_value("fleetwise_desired_replicas", {
        "pool": b, "role": "aggregated", "model": "Llama-3.1-8B", "gpu": "A100-80GB-SXM"}) == 3.0
    assert main(["serve-metrics", "--results", str(tmp_path), "--print", "--plan-start", "yesterday"]) == 2


def test_bad_results_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no plan\.json or summary\.json"):
        load_results(tmp_path, now_s=0.0)
    (tmp_path / "plan.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="top level is not an object"):
        load_results(tmp_path, now_s=0.0)
    doc = _plan_doc()
    doc["cost_breakdown"][0]["peak_replicas"] = "many"  # type: ignore[index]
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"cost_breakdown\[0\]\.peak_replicas"):
        load_results(tmp_path, now_s=0.0)
    assert main(["serve-metrics", "--results", str(tmp_path / "nope"), "--print"]) == 2


def test_a_plan_that_failed_its_replay_is_not_published(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = _plan_doc()
    doc["verification"] = [{"label": "plan", "predicted_attainment": 0.999, "meets_slo": False},
                           {"label": "alt-1", "meets_slo": True}]
    doc["recommended"] = "alt-1"
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"missed its SLO in its own replay.*alt-1"):
        load_results(tmp_path, now_s=0.0)
    assert main(["serve-metrics", "--results", str(tmp_path), "--print"]) == 2
    assert "verification[0].meets_slo" in capsys.readouterr().err
    doc["verification"][0]["meets_slo"] = True  # type: ignore[index]
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    assert load_results(tmp_path, now_s=0.0).desired


def test_served_over_http_and_printed_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, _ = serve(build_registry(lambda: replace(FULL, bad_input=()), build_version="t"), port=0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        server.shutdown()
    line = 'fleetwise_desired_replicas{gpu="H100-SXM",model="Llama-3.1-8B",pool="chat",role="both"} 4.0'
    assert line in body
    (tmp_path / "plan.json").write_text(json.dumps(_plan_doc()))
    assert main(["serve-metrics", "--results", str(tmp_path), "--print"]) == 0
    printed = capsys.readouterr().out
    assert {f.name for f in text_string_to_metric_families(printed)} <= FAMILY_NAMES
    assert "fleetwise_plan_cost_dollars" in printed

"""``fleetwise report`` and ``fleetwise dashboard`` wiring: real runs on the bundled trace, bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from dashboards.report import Section, render_report
from planner.cli import dashboard_cmd, plan_cmd, report_cmd
from traces.errors import InputError


def _app() -> typer.Typer:
    app = typer.Typer()
    report_cmd.register(app)
    dashboard_cmd.register(app)
    return app


def test_replay_report_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(
        _app(), ["report", "--out", str(out), "--kind", "replay", "--gpu", "H100-SXM", "--replicas", "2"]
    )
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "Replay: 19,902 of 19,902 requests served on 2 replicas" in html
    assert "Trace: bundled default trace" in html
    assert html.count('class="plotly-graph-div"') == 6  # rate, lengths, two CDFs, timelines, prompt sources
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js inline, nothing fetched
    assert "Plotly.newPlot" in html and len(html) > 3_000_000
    assert "engine: vllm 0.26.0 profile" in html  # which engine model the numbers rest on (the default)


def test_replay_report_with_the_vllm_engine_says_so(tmp_path: Path) -> None:
    out = tmp_path / "v.html"
    res = CliRunner().invoke(_app(), ["report", "--out", str(out), "--kind", "replay", "--replicas", "2",
                                      "--engine", "vllm"])
    assert res.exit_code == 0, res.output
    assert "engine: vllm 0.26.0 profile" in out.read_text()


def test_plan_report_shows_the_replay_plan_json_verified(tmp_path: Path) -> None:
    """The report's replay section is the presented plan's own check, the one ``plan --json`` states:
    same attainment, same windows, same GPUs per window."""
    out = tmp_path / "plan.html"
    app = _app()
    plan_cmd.register(app)
    res = CliRunner().invoke(app, ["report", "--out", str(out), "--gpus", "H100-SXM"])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "Plan: " in html and "for Llama-3.1-8B" in html
    planned = CliRunner().invoke(app, ["plan", "--gpus", "H100-SXM", "--json"])
    assert planned.exit_code == 0, planned.output
    check = json.loads(planned.stdout)["verification"][0]
    assert check["meets_slo"] and check["label"] == "plan"
    assert (f"The presented plan meets the SLO in replay: {check['replayed_attainment']:.1%} of "
            f"{check['requests']:,} requests") in html
    assert "Replay: the presented plan (plan), window by window" in html
    assert len(check["by_window"]) == check["windows"] == 12
    assert "main configuration at peak" not in html
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>([^<]*)</td><td>(\d+)</td>", html)
    assert [(int(w), int(g)) for w, _start, _reps, g in rows] == [
        (c["window"], c["gpus"]) for c in check["by_window"]]


def test_report_refuses_a_non_html_path(tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["report", "--out", str(tmp_path / "r.pdf")])
    assert isinstance(res.exception, InputError)
    assert "expected a path ending in .html" in str(res.exception)


def test_render_report_escapes_text() -> None:
    html = render_report("<t>", [Section("a&b", text="<script>x</script>")])
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html and "a&amp;b" in html


def test_dashboard_command_runs_the_app_script() -> None:
    cmd = dashboard_cmd.streamlit_command(port=8555, address="127.0.0.1", headless=True)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[-1]).name == "app.py" and Path(cmd[-1]).is_file()
    assert "--server.maxUploadSize=200" in cmd


def test_dashboard_rejects_a_bad_port() -> None:
    try:
        dashboard_cmd.streamlit_command(port=70000, address="127.0.0.1", headless=True)
    except InputError as exc:
        assert exc.field == "--port"
    else:
        raise AssertionError("port 70000 accepted")


def test_report_reads_the_span_it_is_given(tmp_path: Path) -> None:
    out = tmp_path / "span.html"
    res = CliRunner().invoke(_app(), ["report", "--out", str(out), "--kind", "replay", "--replicas", "2",
                                      "--start-s", "600", "--duration-s", "600"])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "bundled default trace, 600 s + 600 s" in html
    served = re.search(r"Replay: ([\d,]+) of ([\d,]+) requests served", html)
    assert served is not None and 2_000 < int(served.group(2).replace(",", "")) < 5_000  # 10 of 60 minutes

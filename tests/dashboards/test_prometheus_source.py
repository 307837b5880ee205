"""The sidebar's Prometheus source: a trace rebuilt from a fleet's metrics on every trace-driven page
(issue 23), from the servers the operator allowed only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from planner.live.backfill import concat_levels, vllm_exposition
from tests.support.prometheus import backfilled_prometheus, history_start_s

RUN = (Path(__file__).resolve().parents[2] / "planner/perf/data/validation/H100-SXM/vllm-0.26.0/llama-3.1-8b"
       / "azure-conv/engine_requests.parquet")


def test_a_trace_rebuilt_from_prometheus_is_described_and_marked(
        app: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = concat_levels(pl.read_parquet(RUN))
    start = history_start_s()
    end = start + float((truth["arrival_s"] + truth["e2e_s"]).max()) + 30.0
    with backfilled_prometheus(tmp_path, vllm_exposition(truth, start_unix_s=start, pods=2)) as srv:
        monkeypatch.setenv("FLEETWISE_PROMETHEUS_URLS", f"http://unused.invalid:9090,{srv.url}")
        app.sidebar.radio(key="source").set_value("Prometheus").run()
        app.sidebar.selectbox(key="prom_url").set_value(srv.url)
        app.sidebar.text_input(key="prom_range").set_value(f"{start - 15:.0f},{end:.0f}")
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert not app.error, [e.value for e in app.error]
        said = app.success[0].value
        assert said.startswith(f"rebuilt from {srv.url}: 2,100 requests"), said
        facts = app.table[0].value
        rows = dict(zip(facts["statistic"], facts["value"], strict=True))
        assert "prompt/output pairing" in rows["reconstructed"] and rows["peak_replicas"] == "2"
        # fit the cluster's corrections on the same window, as fleetwise calibrate --prometheus-url does
        app.button(key="cal_run").click().run()
        assert not app.exception, [e.value for e in app.exception]
        assert not app.error, [e.value for e in app.error]
        assert any("bandwidth x" in m.value and "calm" in m.value for m in app.success)
        fit = app.table[1].value
        assert list(fit["window"]) == ["fit", "fit"] and "itl_mean" in fit.columns


def test_without_allowed_servers_the_source_says_how_to_allow_one(app: AppTest,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETWISE_PROMETHEUS_URLS", raising=False)
    app.sidebar.radio(key="source").set_value("Prometheus").run()
    assert not app.exception
    assert "FLEETWISE_PROMETHEUS_URLS" in " ".join(e.value for e in app.error)

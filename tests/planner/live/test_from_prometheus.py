"""A trace rebuilt from a real Prometheus holding a recorded vLLM run's history (issue 23).

The history: the Llama-3.1-8B vLLM 0.26 run on the H100 (2,100 requests over seven load levels, one
timeline), as two replicas' series every 5 s, loaded into Prometheus with ``promtool tsdb
create-blocks-from openmetrics``. The rebuilt trace is checked against the requests that produced it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.live.backfill import concat_levels, vllm_exposition
from planner.live.history import read_history
from planner.live.promql import PromClient
from planner.live.reconstruct import reconstruct
from tests.support.prometheus import PromServer, backfilled_prometheus, history_start_s
from traces.load import load_trace

RUN = (Path(__file__).resolve().parents[3] / "planner/perf/data/validation/H100-SXM/vllm-0.26.0/llama-3.1-8b"
       / "azure-conv/engine_requests.parquet")
SCRAPE_S = 5.0
KV_TOKENS = 28_123 * 16


@dataclass(frozen=True)
class History:
    server: PromServer
    truth: pl.DataFrame
    start_s: float
    end_s: float


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    tmp = tmp_path_factory.mktemp("history")
    truth = concat_levels(pl.read_parquet(RUN))
    start = history_start_s()
    text = vllm_exposition(truth, start_unix_s=start, scrape_s=SCRAPE_S, pods=2, model="llama-3.1-8b",
                           server={"block_size": "16", "num_gpu_blocks": "28123"}, kv_tokens=KV_TOKENS)
    end = start + float((truth["arrival_s"] + truth["e2e_s"]).max()) + 30.0
    with backfilled_prometheus(tmp, text) as srv:
        yield History(srv, truth, start, end)


def _counts(t: np.ndarray, width: float, horizon: float) -> np.ndarray:
    out, _ = np.histogram(t, np.arange(0.0, horizon + width, width))
    return out


def test_rebuilt_trace_matches_the_requests_behind_the_metrics(history: History) -> None:
    h = read_history(PromClient(history.server.url), '{model_name="llama-3.1-8b"}', history.start_s - 15.0,
                     history.end_s, 15.0)
    assert h.replicas.max() == 2 and dict(h.server)["num_gpu_blocks"] == "28123"
    assert np.nanmax(h.kv_usage) > 0.0 and h.running.max() > 0 and h.waiting.max() > 0
    trace, report = reconstruct(h, seed=0)
    truth = history.truth
    assert report.finished == truth.height
    assert abs(report.requests - truth.height) <= 0.01 * truth.height
    assert trace.meta.format == "prometheus" and "reconstructed" in dict(trace.meta.extra)
    # rate over time, on the true clock (the trace starts at 0 at its first rebuilt arrival)
    shift = float(dict(trace.meta.extra)["start_timestamp"]) - history.start_s
    t_rec = trace.df["arrival_s"].to_numpy() + shift
    t_true = truth["arrival_s"].to_numpy()
    horizon = float(max(t_true.max(), t_rec.max()))
    ca, cb = _counts(t_true, 60.0, horizon), _counts(t_rec, 60.0, horizon)
    assert np.abs(ca - cb).sum() <= 0.15 * ca.sum()  # per-minute counts: at most 15 % of requests misplaced
    assert np.corrcoef(ca, cb)[0, 1] > 0.95
    dispersion = (cb.var() / cb.mean()) / (ca.var() / ca.mean())  # burstiness at the minute scale
    assert 0.8 < dispersion < 1.25
    # lengths: means exact to the histograms' sums, quantiles within the 1-2-5 buckets' resolution
    for col, tol in (("input_tokens", 0.12), ("output_tokens", 0.15)):
        x = truth[col].to_numpy()
        y = trace.df[col].to_numpy()
        assert abs(y.mean() / x.mean() - 1.0) < 0.08, col
        for q in (50, 90):
            assert abs(np.percentile(y, q) / np.percentile(x, q) - 1.0) < tol, (col, q)


def test_cli_writes_the_rebuilt_trace_and_says_it_is_reconstructed(history: History,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "fleet.parquet"
    script = Path(sys.executable).parent / "fleetwise"  # as a user runs it: the venv's script
    res = subprocess.run(
        [str(script), "traces", "from-prometheus", "--url", history.server.url,
         "--range", f"{history.start_s - 15:.0f},{history.end_s:.0f}",
         "--selector", '{model_name="llama-3.1-8b"}', "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["format"] == "prometheus" and doc["peak_replicas"] == 2
    assert abs(doc["requests"] - history.truth.height) <= 21
    back = load_trace(out)
    extra = dict(back.meta.extra)
    assert back.num_requests == doc["requests"] and extra["origin_format"] == "prometheus"
    assert "reconstructed" in extra and extra["server.num_gpu_blocks"] == "28123"
    # no vLLM series in the range: one clear line, exit code 2
    bad = subprocess.run(
        [str(script), "traces", "from-prometheus", "--url", history.server.url, "--range",
         f"{history.start_s - 7200:.0f},{history.start_s - 3600:.0f}",
         "--out", str(tmp_path / "none.parquet")],
        capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "vllm:prompt_tokens_total" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr


def test_vllms_older_names_read_the_same(history: History, tmp_path: Path) -> None:
    """A fleet on an older vLLM (``time_per_output_token_seconds``, ``gpu_cache_usage_perc``) gives the same
    history as one on the new names."""
    text = vllm_exposition(history.truth, start_unix_s=history.start_s, scrape_s=SCRAPE_S, pods=2,
                           model="llama-3.1-8b", kv_tokens=KV_TOKENS, legacy_names=True)
    with backfilled_prometheus(tmp_path, text) as old_srv:
        old = read_history(PromClient(old_srv.url), "", history.start_s - 15.0, history.end_s, 15.0)
    new = read_history(PromClient(history.server.url), "", history.start_s - 15.0, history.end_s, 15.0)
    np.testing.assert_array_equal(old.itl.counts, new.itl.counts)
    np.testing.assert_allclose(old.itl.sums, new.itl.sums, rtol=1e-9)
    np.testing.assert_allclose(old.kv_usage, new.kv_usage, rtol=1e-9)
    assert old.itl.totals.sum() > 0 and np.nanmax(old.kv_usage) > 0

"""Per-cluster corrections fitted on a fleet's metrics (issue 23), checked on a later window.

Each history is a held-out vLLM 0.26 run on the H100 (one engine), its load levels one after another on
one timeline, served by a real Prometheus (``promtool`` backfill). The fit sees the first levels, the
back-test the later ones, as a user fits on the morning and checks on the afternoon.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.live.backfill import concat_levels, vllm_exposition
from planner.live.history import read_history
from planner.live.promql import PromClient
from planner.live.telemetry_fit import Correction, FleetSetup, back_test, fit_correction
from tests.support.prometheus import backfilled_prometheus, history_start_s

RUNS = Path(__file__).resolve().parents[3] / "planner/perf/data/validation/H100-SXM/vllm-0.26.0"


def _timeline(run: str) -> pl.DataFrame:
    return concat_levels(pl.read_parquet(RUNS / run / "engine_requests.parquet"), gap_s=30.0)


@pytest.mark.parametrize(
    ("run", "model", "weights", "mem", "first_test_level"),
    [
        ("qwen3-30b-a3b/azure-conv", "Qwen3-30B-A3B", "bf16", 0.95, 0.7),
        ("qwen3-32b-fp8/azure-conv", "Qwen3-32B", "fp8", 0.9, 0.8),
    ],
    ids=["moe", "fp8"],
)
def test_corrections_fitted_on_early_levels_halve_the_later_levels_p50_error(
    tmp_path: Path, run: str, model: str, weights: str, mem: float, first_test_level: float
) -> None:
    truth = _timeline(run)
    start = history_start_s()
    cut = start + float(truth.filter(pl.col("load_level") >= first_test_level)["arrival_s"].min()) - 15.0
    end = start + float((truth["arrival_s"] + truth["e2e_s"]).max()) + 10.0
    cat = load_catalog()
    setup = FleetSetup(
        model=cat.model(model), gpu=cat.gpu("H100-SXM"), weight_dtype=weights, mem_fraction=mem
    )
    with backfilled_prometheus(
        tmp_path, vllm_exposition(truth, start_unix_s=start, scrape_s=5.0, pods=1)
    ) as srv:
        client = PromClient(srv.url)
        fit = fit_correction(read_history(client, "", start - 5.0, cut, 5.0), setup)
        test = back_test(read_history(client, "", cut, end, 5.0), setup, fit.correction)
    assert fit.correction != Correction()
    before = abs(test.uncalibrated["ttft_p50"]) + abs(test.uncalibrated["itl_p50"])
    after = abs(test.calibrated["ttft_p50"]) + abs(test.calibrated["itl_p50"])
    assert after <= 0.5 * before, (fit.correction, test)
    # the means it was fitted on improve on the later window too
    assert abs(test.calibrated["itl_mean"]) < abs(test.uncalibrated["itl_mean"]) or abs(
        test.calibrated["ttft_mean"]
    ) < abs(test.uncalibrated["ttft_mean"])


def test_cli_fits_backtests_and_writes_the_corrections(tmp_path: Path) -> None:
    truth = _timeline("qwen3-30b-a3b/azure-conv")
    start = history_start_s()
    cut = start + float(truth.filter(pl.col("load_level") >= 0.7)["arrival_s"].min()) - 15.0
    end = start + float((truth["arrival_s"] + truth["e2e_s"]).max()) + 10.0
    out = tmp_path / "cluster.json"
    script = Path(sys.executable).parent / "fleetwise"
    with backfilled_prometheus(
        tmp_path, vllm_exposition(truth, start_unix_s=start, scrape_s=5.0, pods=1)
    ) as srv:
        res = subprocess.run(
            [
                str(script),
                "calibrate",
                "--prometheus-url",
                srv.url,
                "--range",
                f"{start - 5:.0f},{cut:.0f}",
                "--backtest-range",
                f"{cut:.0f},{end:.0f}",
                "--model",
                "Qwen3-30B-A3B",
                "--gpu",
                "H100-SXM",
                "--step",
                "5",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert res.returncode == 0, res.stderr
    assert "back-test" in res.stdout and "compute x" in res.stdout and "Traceback" not in res.stderr
    doc = json.loads(out.read_text())
    assert doc["replicas"] == 1 and doc["backtest"]["calibrated"]["itl_p50"] is not None
    assert set(doc["correction"]) == {"bandwidth", "compute", "step_add_s"}
    # the file carries the cluster into a replay, which says so
    runs = []
    for extra in ([], ["--correction", str(out)]):
        r = subprocess.run(
            [str(script), "replay", "--duration-s", "300", "--json", *extra],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    plain, corrected = runs
    assert "cluster_correction" not in plain and corrected["cluster_correction"]["file"] == str(out)
    assert corrected["classes"][0]["tpot_p50_s"] != plain["classes"][0]["tpot_p50_s"]

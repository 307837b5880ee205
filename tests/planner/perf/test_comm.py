"""The two-protocol collective model: fitting, the calibration round trip, and the shipped multi-GPU data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf, comm, multi_check
from planner.perf.calibrate import comm_errors, profile_dir, validation_dir
from planner.perf.calibration import PRIOR, CommFit, load_calibration, resolve_calibration

H200 = "H200-SXM"


def synthetic(fit: CommFit, link: float = 450.0) -> pl.DataFrame:
    rows = []
    for op in comm.OPS:
        for n in (2, 4, 8):
            for b in (4096 * 4**i for i in range(10)):
                rows.append({"op": op, "gpus": n, "bytes": b,
                             "time_s": float(comm.predict(op, n, b, fit, link))})
    return pl.DataFrame(rows)


def test_fit_recovers_known_protocols() -> None:
    truth = CommFit(base_s=12e-6, alpha_s=1.5e-6, ll_eff=0.3, simple_base_s=35e-6, simple_eff=0.75)
    df = synthetic(truth)
    got = comm.fit(df, 450.0, "all_reduce")
    pred = comm.predict("all_reduce", df["gpus"].to_numpy(), df["bytes"].to_numpy(), got, 450.0)
    sel = (df["op"] == "all_reduce").to_numpy()
    assert np.max(np.abs(pred[sel] / df["time_s"].to_numpy()[sel] - 1)) < 0.02
    assert got.simple_eff == pytest.approx(0.75, rel=0.05)


def test_protocol_switch_is_the_faster_one() -> None:
    f = CommFit(10e-6, 0.0, 0.2, 40e-6, 0.8)
    small = float(comm.predict("all_to_all", 2, 4096, f, 450))
    big = float(comm.predict("all_to_all", 2, 1 << 30, f, 450))
    assert small == pytest.approx(10e-6 + 0.5 * 4096 / (0.2 * 450e9))
    assert big == pytest.approx(40e-6 + 0.5 * (1 << 30) / (0.8 * 450e9))


def test_calibration_json_round_trip(tmp_path: Path) -> None:
    fit = CommFit(1e-5, 1e-6, 0.3, 3e-5, 0.7)
    cal = replace(PRIOR, allreduce=fit, alltoall=fit)
    path = tmp_path / "c.json"
    path.write_text(cal.to_json())
    back = load_calibration(path)
    assert back.allreduce == fit and back.allgather is None
    assert back.comm("all_gather") == CommFit(PRIOR.collective_base_s, PRIOR.alpha_s, PRIOR.link_eff,
                                              PRIOR.collective_base_s, PRIOR.link_eff)
    assert json.loads(path.read_text())["alltoall"]["simple_eff"] == 0.7


def test_fitted_allreduce_changes_tp_steps_only() -> None:
    """The collective fit moves TP>1 step times and leaves single-GPU steps alone."""
    cat = load_catalog()
    gpu, model = cat.gpu(H200), cat.model("Llama-3.1-70B")
    cal = resolve_calibration(gpu)
    slow = replace(cal, allreduce=CommFit(1e-3, 0.0, 0.5, 1e-3, 0.5))
    args = (np.array([0.0]), np.array([0.0]), np.array([64.0]), np.array([64 * 2048.0]))
    one = [float(build_replica_perf(cat.model("Llama-3.1-8B"), gpu, calibration=c,
                                    min_kv_tokens=0).step_time_s(*args)[0]) for c in (cal, slow)]
    assert one[0] == pytest.approx(one[1])
    tp4 = [float(build_replica_perf(model, gpu, Parallelism(tp=4), calibration=c,
                                    min_kv_tokens=0).step_time_s(*args)[0]) for c in (cal, slow)]
    assert tp4[1] > tp4[0] + 0.1  # 160 all-reduces x 1 ms


@pytest.fixture(scope="module")
def shipped() -> pl.DataFrame:
    df = comm.load_collectives(profile_dir() / H200)
    if df is None:
        pytest.fail("the H200 multi-GPU profile (collectives.parquet) is shipped data and must be present")
    return df


def test_shipped_collectives_within_target(shipped: pl.DataFrame) -> None:
    gpu = load_catalog().gpu(H200)
    cal = resolve_calibration(gpu)
    assert cal.allreduce is not None and cal.alltoall is not None
    table = multi_check.comm_table(shipped, cal, gpu.link_gbps)
    fitted = table.filter(pl.col("split") == "fit on all")
    assert fitted.height == 6
    assert fitted["median_err_pct"].max() <= 10.0
    rows = comm_errors(shipped, comm.fit_all(shipped, gpu.link_gbps), gpu.link_gbps)
    assert {r.family for r in rows} == {f"comm_{op}" for op in comm.OPS}


def test_shipped_tp_steps_within_target() -> None:
    cat = load_catalog()
    gpu = cat.gpu(H200)
    steps = multi_check.load_tp_steps(validation_dir() / H200)
    assert steps is not None
    pred = multi_check.tp_step_predictions(steps, cat, gpu, resolve_calibration(gpu))
    summary = multi_check.tp_step_summary(pred)
    assert set(summary["tp"].to_list()) == {2, 4}
    assert summary["median_ape"].max() <= multi_check.TP_TARGET_PCT


def test_h100_borrows_h200_collectives() -> None:
    cal = resolve_calibration(load_catalog().gpu("H100-SXM"))
    assert cal.allreduce is not None and "H200-SXM/collectives.parquet" in cal.source

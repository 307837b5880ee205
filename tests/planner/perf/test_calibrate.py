"""The fitter on a synthetic profile with known truth, file formats, and the shipped data's errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from planner.catalog.schema import Catalog
from planner.perf import build_replica_perf
from planner.perf.calibrate import (
    STEP_MODEL,
    errors_frame,
    evaluate_profile,
    fit_profile,
    holdout_mask,
    load_profile,
    profile_dir,
)
from planner.perf.calibration import (
    PRIOR,
    Calibration,
    calibration_dir,
    for_gpu,
    load_calibration,
    resolve_calibration,
)
from traces.errors import InputError


def _heldout(errors: pl.DataFrame) -> dict[str, float]:
    h = errors.filter(pl.col("split") == "heldout", pl.col("n") > 0)
    return dict(zip(h["family"].to_list(), h["median_ape"].to_list(), strict=True))


def test_fit_recovers_the_truth_on_held_out_shapes(synthetic_profile: Path, catalog: Catalog,
                                                   true_calibration: Calibration) -> None:
    TRUE = true_calibration
    gpu, model = catalog.gpu("H100-SXM"), catalog.model(STEP_MODEL)
    prof = load_profile(synthetic_profile)
    res = fit_profile(prof, gpu, model)
    held = _heldout(errors_frame(res.errors))
    # 2 % log-normal noise: a correct fit leaves ~1.3-2 % median error everywhere
    for fam in ("gemm_bf16", "gemm_fp8", "attn_prefill", "attn_decode", "elementwise", "step_all"):
        assert held[fam] < 3.5, (fam, held[fam])
    for fam in ("power_phase_prefill", "power_phase_decode"):
        assert held[fam] < 6.0, (fam, held[fam])
    cal = res.calibration
    assert cal.gemm_bf16.ec_max == pytest.approx(TRUE.gemm_bf16.ec_max, rel=0.05)
    assert cal.attention.decode_em == pytest.approx(TRUE.attention.decode_em, rel=0.05)
    assert cal.step_s == pytest.approx(TRUE.step_s, rel=0.15)
    assert cal.power.idle_w == pytest.approx(TRUE.power.idle_w)
    # the prior is measurably worse than the fit on the same held-out rows
    prior_held = _heldout(errors_frame(evaluate_profile(prof, gpu, model, replace(PRIOR, gpu=gpu.name))))
    assert prior_held["gemm_bf16"] > held["gemm_bf16"]


def test_holdout_split_is_deterministic_and_nonempty() -> None:
    keys = [f"{n},{k},bf16" for n in (1024, 4096, 6144, 14336) for k in (4096, 512)]
    a, b = holdout_mask(keys), holdout_mask(list(keys))
    assert a.tolist() == b.tolist()
    assert 0 < a.sum() < len(keys)
    assert holdout_mask(["only", "two"]).sum() >= 1


def test_calibrate_command_writes_a_loadable_calibration(synthetic_profile: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from planner.cli.main import main

    rc = main(["calibrate", "--gpu", "H100-SXM", "--profiles", str(synthetic_profile.parent),
               "--out", str(tmp_path)])
    assert rc == 0
    assert "gemm_bf16" in capsys.readouterr().out
    cal = load_calibration(tmp_path / "H100-SXM.json")
    assert cal.gpu == "H100-SXM"
    assert "fitted by planner.perf.calibrate" in cal.source
    assert cal.holdout_errors["gemm_bf16_median_ape"] < 3.5
    # round trip is exact
    assert load_calibration(tmp_path / "H100-SXM.json") == cal
    assert json.loads(cal.to_json())["gemm_bf16"]["p"] == cal.gemm_bf16.p


def test_uncalibrated_gpu_gets_the_reference_curves_rescaled(tmp_path: Path, catalog: Catalog,
                                                             true_calibration: Calibration) -> None:
    TRUE = true_calibration
    (tmp_path / "H100-SXM.json").write_text(replace(TRUE, source="fit").to_json(), encoding="utf-8")
    h200 = catalog.gpu("H200-SXM")
    cal = resolve_calibration(h200, folder=tmp_path)
    assert cal.gpu == "H200-SXM"
    assert "derived from H100-SXM" in cal.source
    assert cal.gemm_bf16 == TRUE.gemm_bf16  # fractions of peak carry over unchanged
    assert cal.power.idle_w == h200.idle_w
    a100 = catalog.gpu("A100-80GB-SXM")
    scaled = for_gpu(TRUE, a100)
    ratio = (a100.tdp_w - a100.idle_w) / (TRUE.power.tdp_w - TRUE.power.idle_w)
    assert scaled.power.compute_w == pytest.approx(TRUE.power.compute_w * ratio)


def test_bad_profile_and_calibration_files_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_profile(tmp_path / "nope")
    d = tmp_path / "H100-SXM"
    d.mkdir()
    pl.DataFrame({"m": [1], "n": [2], "k": [3], "time_s": [1e-5]}).write_parquet(d / "gemm.parquet")
    with pytest.raises(InputError, match="missing column 'dtype'") as exc:
        load_profile(d)
    assert "gemm.parquet" in str(exc.value)
    pl.DataFrame({"m": [1, 2], "n": [2, 2], "k": [3, 3], "dtype": ["bf16", "bf16"],
                  "time_s": [1e-5, 0.0]}).write_parquet(d / "gemm.parquet")
    with pytest.raises(InputError, match="row 2: field time_s"):
        load_profile(d)
    (tmp_path / "c.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not JSON"):
        load_calibration(tmp_path / "c.json")
    (tmp_path / "c.json").write_text('{"gemm_bf16": {}}', encoding="utf-8")
    with pytest.raises(InputError, match="malformed calibration"):
        load_calibration(tmp_path / "c.json")


SHIPPED = profile_dir() / "H100-SXM"
SHIPPED_CAL = calibration_dir() / "H100-SXM.json"


@pytest.mark.skipif(not (SHIPPED.is_dir() and SHIPPED_CAL.is_file()),
                    reason="the measured H100 profile and its calibration are not shipped yet")
def test_shipped_calibration_meets_its_error_bounds(catalog: Catalog) -> None:
    gpu, model = catalog.gpu("H100-SXM"), catalog.model(STEP_MODEL)
    cal = load_calibration(SHIPPED_CAL)
    held = _heldout(errors_frame(evaluate_profile(load_profile(SHIPPED), gpu, model, cal)))
    # issue #3 targets, all met on held-out shapes: every operator family <= 5 %, steps <= 10 %, power
    # per phase <= 10 % (graph-timed H100 profile of 2026-11-22)
    for fam in ("gemm_bf16", "gemm_fp8", "attn_prefill", "attn_decode", "elementwise"):
        assert held[fam] <= 5.0, (fam, held[fam])
    assert held["step_all"] <= 10.0
    assert held["power_phase_prefill"] <= 10.0
    assert held["power_phase_decode"] <= 10.0
    assert held["power_step_decode"] <= 10.0
    # the fitted curves stay physical: fractions of the catalog peaks in (0, 1]
    a = cal.attention
    for frac in (cal.gemm_bf16.ec_max, cal.gemm_bf16.em_max, cal.gemm_fp8.ec_max, a.prefill_ec, a.prefill_em,
                 a.decode_em, a.decode_em_nosplit, a.decode_ec, a.decode_unit_frac, cal.ew_em, cal.ew_em_silu,
                 cal.ew_em_rope, cal.ew_em_norm):
        assert 0.0 < frac <= 1.0
    # the shipped file is what the fitter produces from the shipped profile (reproducible)
    refit = fit_profile(load_profile(SHIPPED), gpu, model).calibration
    assert refit.gemm_bf16.ec_max == pytest.approx(cal.gemm_bf16.ec_max, rel=1e-6)
    perf = build_replica_perf(model, gpu)
    assert perf.calibration == cal

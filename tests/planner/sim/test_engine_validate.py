"""Engine profiles against the vLLM 0.26.0 measurements shipped for the H100 (Llama-3.1-8B, Azure lengths).

The data: ``planner/perf/data/validation/H100-SXM/vllm-0.26.0/`` (300 requests per level, open-loop at
the trace's own inter-arrival times; conversation levels 0.1-1.1 of the burst capacity, code levels 0.2
and 0.6). Fitted on conversation levels 0.1, 0.5 and 0.9; everything else is held out.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.perf.calibrate import predict_attention, profile_dir
from planner.perf.calibration import resolve_calibration
from planner.perf.engine_kernels import GPU_BOUND_S, fit_engine_attention
from planner.perf.engine_profile import (
    BARE,
    engine_perf_inputs,
    load_engine_profile,
    read_engine_profile,
    write_engine_profile,
)
from planner.perf.model import build_replica_perf
from planner.sim.config import EngineConfig, SimConfig
from planner.sim.engine_validate import (
    check,
    fit_engine_profile,
    load_dataset,
    robust_affine,
    split_levels,
    validation_root,
)
from planner.sim.replay import replay
from planner.sim.synth import azure_conv_like
from traces.errors import InputError

ROOT = validation_root() / "H100-SXM" / "vllm-0.26.0" / "llama-3.1-8b"
needs_data = pytest.mark.skipif(not (ROOT / "azure-conv" / "engine_meta.json").is_file(),
                                reason="no vLLM validation data shipped")


@pytest.fixture(scope="module")
def fitted() -> tuple[object, object, object, object]:
    cat = load_catalog()
    conv, code = load_dataset(ROOT / "azure-conv"), load_dataset(ROOT / "azure-code")
    model, gpu = cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM")
    return conv, code, fit_engine_profile(conv, model=model, gpu=gpu), cat


@needs_data
def test_vllm_hides_its_step_overhead_and_hands_tokens_over_a_step_late(fitted: tuple[object, ...]) -> None:
    conv, _, prof, _ = fitted
    assert split_levels(conv) == ([0.1, 0.5, 0.9], [0.3, 0.7, 1.1])  # type: ignore[arg-type]
    # CUDA graphs + async scheduling: far below the bare stack's ~2.2 ms per step
    assert prof.step_s is not None and prof.step_s < 5e-4  # type: ignore[attr-defined]
    # the decode steps match the kernels up to 128 sequences: no per-sequence cost worth the name
    assert prof.per_seq_s is not None and prof.per_seq_s < 2e-5  # type: ignore[attr-defined]
    # async scheduling is in the replay's scheduler (a new request waits for the step planned ahead);
    # the rest of the lag is the token's output processing: a step or two, little fixed time
    assert prof.async_scheduling  # type: ignore[attr-defined]
    assert 0.0 <= prof.output_delay_s < 0.01  # type: ignore[attr-defined]
    assert 0.5 <= prof.output_delay_steps <= 2.0  # type: ignore[attr-defined]
    # the profiler's GEMM loops ran power-throttled; the engine's GEMMs are fitted at full clock
    assert prof.gemm_bf16 is not None  # type: ignore[attr-defined]
    assert prof.fit["decode_steps"] > 10_000  # type: ignore[attr-defined]
    cal = resolve_calibration(load_catalog().gpu("H100-SXM"))
    # FA3's prefill curve (what vLLM runs), the profiled decode curve
    assert prof.attention is not None  # type: ignore[attr-defined]
    assert prof.attention.prefill_ec != cal.attention.prefill_ec  # type: ignore[attr-defined]
    assert prof.attention.decode_em == cal.attention.decode_em  # type: ignore[attr-defined]
    assert prof.gemm_bf16.ec_max > cal.gemm_bf16.ec_max + 0.15  # type: ignore[attr-defined]
    assert prof.idle_w is not None and 100.0 < prof.idle_w < 160.0  # type: ignore[attr-defined]


@needs_data
def test_fa3_prefill_attention_is_faster_than_the_profiled_kernel_at_long_prompts() -> None:
    gpu = load_catalog().gpu("H100-SXM")
    cal = resolve_calibration(gpu)
    att = fit_engine_attention(ROOT.parent / "kernels" / "attention.parquet",
                               profile_dir() / "H100-SXM" / "attention.parquet", gpu, cal)
    k = pl.read_parquet(ROOT.parent / "kernels" / "attention.parquet").filter(
        (pl.col("error") == "") & (pl.col("dtype") == "bf16") & (pl.col("time_s") >= GPU_BOUND_S)
        & (pl.col("phase") == "prefill")).drop("error")
    old = predict_attention(k, gpu, cal) / k["time_s"].to_numpy()
    new = predict_attention(k, gpu, replace(cal, attention=att)) / k["time_s"].to_numpy()
    assert k.height >= 20
    assert np.median(old) > 1.4  # the profiled curve: 1.4-2x FA3's time from 2k tokens on
    assert abs(np.median(new) - 1.0) < 0.15
    # decode alone (paged cache, as the engine reads it): the refit keeps the prefill curve untouched
    dec = fit_engine_attention(ROOT.parent / "kernels" / "attention.parquet",
                               profile_dir() / "H100-SXM" / "attention.parquet", gpu, cal, phases=("decode",))
    assert dec.prefill_ec == cal.attention.prefill_ec
    d = pl.read_parquet(ROOT.parent / "kernels" / "attention.parquet").filter(
        (pl.col("error") == "") & (pl.col("dtype") == "bf16") & (pl.col("time_s") >= GPU_BOUND_S)
        & (pl.col("phase") == "decode")).drop("error")
    ape = np.abs(predict_attention(d, gpu, replace(cal, attention=dec)) / d["time_s"].to_numpy() - 1)
    assert d.height >= 30 and np.median(ape) <= 0.10


@needs_data
def test_profile_beats_the_bare_model_on_held_out_light_load(fitted: tuple[object, ...]) -> None:
    conv, code, prof, cat = fitted
    kw = {"models": cat.models, "gpus": cat.gpus}  # type: ignore[attr-defined]
    ours = {(r.trace, r.level): r for r in check([(conv, True), (code, False)], prof, **kw)}  # type: ignore[arg-type]
    bare = {(r.trace, r.level): r for r in check([(conv, True), (code, False)], BARE, **kw)}  # type: ignore[arg-type]
    assert ours[("azure-conv", 0.3)].held_out and ours[("azure-code", 0.2)].held_out
    assert not ours[("azure-conv", 0.1)].held_out
    for key in (("azure-conv", 0.3), ("azure-code", 0.2)):
        e = ours[key].errors
        assert abs(e["ttft_p50"]) <= 0.10 and abs(e["tpot_p50"]) <= 0.10, (key, e)
        assert abs(e["ttft_p99"]) <= 0.20 and abs(e["tpot_p99"]) <= 0.20, (key, e)
        assert abs(e["energy_per_token"]) <= 0.10, (key, e)
    # the bare model (2.2 ms/step, no hand-over) is a third slow on decode and fast on TTFT
    assert bare[("azure-conv", 0.3)].errors["tpot_p50"] > 0.25
    assert bare[("azure-conv", 0.3)].errors["ttft_p50"] < -0.15
    # decode under heavy prompt load: right once the prompt steps throttle at the 700 W limit (the bare
    # model, whose curves were fitted on throttled loops, has no such term and reads 0.3 high)
    assert abs(ours[("azure-conv", 1.1)].errors["tpot_p50"]) <= 0.10
    assert prof.throttle_exp > 0  # type: ignore[attr-defined]


@needs_data
def test_shipped_profile_is_the_fit_of_the_shipped_data(fitted: tuple[object, ...]) -> None:
    _, _, prof, _ = fitted
    shipped = load_engine_profile("vllm", "H100-SXM")
    assert math.isclose(shipped.output_delay_s, prof.output_delay_s, abs_tol=5e-4)  # type: ignore[attr-defined]
    assert shipped.output_delay_steps == prof.output_delay_steps  # type: ignore[attr-defined]
    assert math.isclose(shipped.step_s or 0.0, prof.step_s or 0.0, abs_tol=5e-5)  # type: ignore[attr-defined]
    h200 = load_engine_profile("vllm", "H200-SXM")
    assert h200.gpu == "H100-SXM" and "unmeasured" in h200.source


@needs_data
def test_bench_validate_json_has_every_level_with_signed_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "replay", "--validate", "--engine", "vllm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["engine"] == "vllm"
    rows = [r for r in doc["levels"] if r["variant"] == "llama-3.1-8b"]
    assert {r["trace"] for r in rows} == {"azure-conv", "azure-code"}
    assert len(rows) == 12 and all(r["requests"] == 300 for r in rows)  # code: two runs (azure-code-2)
    for r in doc["levels"]:
        for k in ("gpu", "model", "variant", "level", "held_out", "ttft_p50_err", "ttft_p99_err",
                  "tpot_p50_err", "tpot_p99_err", "throughput_err", "energy_per_token_err"):
            assert k in r
    assert sum(not r["held_out"] for r in rows) == 3
    # the calibration model's held-out levels meet issue 17's targets but TTFT p50 (code at 0.6: +11 %)
    for r in rows:
        if r["held_out"] and r["level"] > 0:
            for k in ("tpot_p50", "tpot_p99", "ttft_p99", "throughput", "energy_per_token"):
                assert abs(r[f"{k}_err"]) <= doc["targets"][k], (r["trace"], r["level"], k)


@needs_data
def test_one_profile_carries_to_models_and_precisions_it_was_not_fitted_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The H100 profile is fitted on Llama-3.1-8B in bf16, its fp8 terms on the fp8 Llama's 0.3 level and
    its MoE terms on Qwen3-30B-A3B's 0.3 and 1.0 levels; Qwen3-32B with fp8 weights is held out whole."""
    assert main(["bench", "replay", "--validate", "--engine", "vllm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    variants = {r["variant"] for r in doc["levels"]}
    assert variants == {"llama-3.1-8b", "llama-3.1-8b-fp8-kvfp8", "llama-3.1-8b-noprefix", "qwen3-30b-a3b",
                        "qwen3-32b-fp8"}
    fit = doc["profiles"][0]["fit"]
    assert fit["fp8"]["fit_levels"] == [0.3] and fit["moe"]["fit_levels"] == [0.3, 1.0]
    by = {(r["variant"], r["level"]): r for r in doc["levels"]}
    for lv in (0.3, 0.8):  # fp8 weights on a model no fp8 term was fitted on
        r = by[("qwen3-32b-fp8", lv)]
        assert r["held_out"] and abs(r["ttft_p50_err"]) <= 0.10 and abs(r["tpot_p50_err"]) <= 0.10, r
    r = by[("llama-3.1-8b-fp8-kvfp8", 0.8)]
    assert r["held_out"] and abs(r["tpot_p50_err"]) <= 0.10 and abs(r["throughput_err"]) <= 0.05, r
    r = by[("qwen3-30b-a3b", 0.7)]
    assert r["held_out"] and abs(r["tpot_p50_err"]) <= 0.10 and abs(r["ttft_p50_err"]) <= 0.10, r
    r = by[("llama-3.1-8b-noprefix", 0.7)]
    assert r["held_out"] and abs(r["tpot_p50_err"]) <= 0.10 and abs(r["ttft_p50_err"]) <= 0.10, r
    mem = {m["variant"]: m for m in doc["memory"]}
    for v in ("llama-3.1-8b", "llama-3.1-8b-fp8-kvfp8", "qwen3-32b-fp8"):  # dense models: KV within 3 %
        assert abs(mem[v]["kv_tokens_err"]) <= 0.03, mem[v]


def test_output_delay_shifts_every_token_the_client_sees() -> None:
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    tr = azure_conv_like(300, rate_rps=4.0, seed=3)
    a = replay(tr, perf, config=SimConfig(replicas=1, engine=EngineConfig())).requests
    b = replay(tr, perf, config=SimConfig(replicas=1, engine=EngineConfig(output_delay_s=0.02))).requests
    np.testing.assert_allclose(b["ttft_s"].to_numpy() - a["ttft_s"].to_numpy(), 0.02, atol=1e-9)
    np.testing.assert_allclose(b["tpot_s"].fill_null(0).to_numpy(), a["tpot_s"].fill_null(0).to_numpy())
    with pytest.raises(InputError, match="output_delay_s"):
        EngineConfig(output_delay_s=-1.0)


def test_profile_file_roundtrip_and_bad_files(tmp_path: Path) -> None:
    prof = replace(BARE, engine="vllm", gpu="H100-SXM", step_s=1e-4, per_seq_s=0.0, output_delay_s=0.01)
    write_engine_profile(prof, tmp_path / "vllm" / "H100-SXM.json")
    back = load_engine_profile("vllm", "H100-SXM", root=tmp_path)
    assert back == prof
    cal = resolve_calibration(load_catalog().gpu("H100-SXM"))
    assert back.apply(cal).step_s == 1e-4 and back.apply(cal).gemm_bf16 == cal.gemm_bf16
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"engine": "vllm", "gpu": "H100-SXM", "step_s": -1, "per_seq_s": 0,
                               "output_delay_s": 0}))
    with pytest.raises(InputError, match="step_s must be >= 0"):
        read_engine_profile(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        read_engine_profile(bad)
    with pytest.raises(InputError, match="unknown engine"):
        load_engine_profile("tgi", "H100-SXM", root=tmp_path)


@needs_data
def test_profile_engine_from_a_raw_run_writes_a_profile_replay_can_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a run as `fleetwise profile --engine vllm` leaves it: the engine's run, FA3 timings in attention/
    raw = tmp_path / "run"
    shutil.copytree(ROOT.parent / "raw" / "llama-3.1-8b", raw)
    shutil.copytree(ROOT.parent / "raw" / "attention", raw / "attention")
    assert main(["profile", "--engine", "vllm", "--from-run", str(raw), "--out", str(tmp_path)]) in (0, None)
    path = tmp_path / "engines" / "vllm" / "H100-SXM.json"
    mine = read_engine_profile(path)
    shipped = load_engine_profile("vllm", "H100-SXM")
    assert math.isclose(mine.output_delay_s, shipped.output_delay_s, abs_tol=5e-4)
    assert mine.attention == shipped.attention and mine.throttle_exp == shipped.throttle_exp
    assert (tmp_path / "validation" / "H100-SXM" / "vllm-0.26.0" / "llama-3.1-8b" / "azure-code"
            / "engine_requests.parquet").is_file()
    capsys.readouterr()
    assert main(["replay", "--trace", "default", "--engine-profile", str(path), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["replay", "--trace", "default", "--engine", "bare", "--json"]) == 0
    bare = json.loads(capsys.readouterr().out)
    assert ours != bare
    assert main(["replay", "--trace", "default", "--engine", "vllm", "--calibration", str(tmp_path),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ours


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed: would measure")
def test_profile_engine_without_vllm_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["profile", "--engine", "vllm", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "vLLM is not installed here" in err and "Traceback" not in err
    rc = main(["replay", "--trace", "default", "--engine", "tgi"])
    assert rc == 2 and "unknown engine 'tgi'" in capsys.readouterr().err


@pytest.mark.slow
@needs_data
def test_plan_with_the_vllm_profile_scores_and_verifies_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--gpus", "H100-SXM", "--engine", "vllm", "--time-limit-s", "2", "--json"]
    assert main(argv) in (0, None)
    doc = json.loads(capsys.readouterr().out)
    text = json.dumps(doc)
    assert "vllm 0.26.0 profile" in text  # the plan says which engine its numbers rest on
    assert main(["plan", "--gpus", "H100-SXM", "--engine", "tgi"]) == 2


def test_robust_affine_follows_the_bulk_not_the_prefill_tail() -> None:
    rng = np.random.default_rng(0)
    b = rng.integers(1, 200, size=5000).astype(np.float64)
    y = 1e-4 + 2e-6 * b + rng.normal(0.0, 1e-4, size=b.size)
    # intervals that carry a prompt chunk's time: more of them, and longer, at larger batches
    tail = rng.random(b.size) < b / 800
    y[tail] += rng.uniform(0.01, 0.2, size=int(tail.sum()))
    c0, c1 = robust_affine(b, y)
    assert abs(c1 - 2e-6) < 1e-6 and abs(c0 - 1e-4) < 1e-4
    ls = np.linalg.lstsq(np.column_stack([np.ones_like(b), b]), y, rcond=None)[0]
    assert ls[1] > 10 * c1  # what plain least squares made of the same samples


@needs_data
def test_h200_decode_attention_under_the_vllm_profile_runs_at_the_hbm3e_ratio() -> None:
    # measured outside the repo (issue 17): engine kernels on the H200 run decode attention at the
    # HBM3e roofline, about 1.4x the H100; the H200's own profiled fit made it no faster
    cat = load_catalog()
    model = cat.model("Llama-3.1-8B")

    def attn(gpu: str, engine: str) -> float:
        _, cal, spec = engine_perf_inputs(engine, cat.gpu(gpu))
        perf = build_replica_perf(model, spec, calibration=cal, min_kv_tokens=1)
        return perf.breakdown(0.0, 0.0, 64.0, 64.0 * 4096.0).families_s["attn_decode"]

    ratio = attn("H100-SXM", "vllm") / attn("H200-SXM", "vllm")
    assert 1.3 < ratio < 1.5
    assert attn("H100-SXM", "bare") / attn("H200-SXM", "bare") < 1.05  # the bare fit's gap, kept visible


@needs_data
def test_kernel_curves_carry_only_to_gpus_of_the_measured_architecture() -> None:
    cat = load_catalog()
    h200, _, _ = engine_perf_inputs("vllm", cat.gpu("H200-SXM"))
    a100, cal, _ = engine_perf_inputs("vllm", cat.gpu("A100-80GB-SXM"))
    assert h200.attention is not None and h200.throttle_exp > 0  # Hopper -> Hopper
    assert a100.attention is None and a100.gemm_bf16 is None and a100.throttle_exp == 0.0
    assert "kernel curves not carried (hopper -> ampere" in a100.source
    assert a100.async_scheduling and a100.output_delay_steps == h200.output_delay_steps  # engine terms stay
    assert cal.attention == resolve_calibration(cat.gpu("A100-80GB-SXM")).attention

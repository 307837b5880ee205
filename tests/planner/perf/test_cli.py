"""``fleetwise perf`` and ``fleetwise bench perf`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import planner.bench.perf_accuracy as bp
from planner.cli.main import main
from planner.perf.calibrate import profile_dir
from planner.perf.calibration import calibration_dir


def test_perf_json_decode(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["perf", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--decode-batch", "64",
               "--context", "2048", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory"]["kv_bytes_per_token_per_gpu"] == 131072
    assert out["memory"]["weights_gb_per_gpu"] == pytest.approx(16.06, abs=0.1)
    assert out["step_s"] == pytest.approx(sum(out["breakdown_s"].values()), rel=1e-9)
    assert "attn_decode" in out["breakdown_s"]
    assert 0 < out["power_w_per_gpu"] <= 700


def test_perf_table_prefill_with_clock(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["perf", "--model", "Mixtral-8x7B", "--gpu", "H100-SXM", "--tp", "4", "--ep", "2",
               "--prefill-tokens", "2048", "--context", "1024", "--clock-mhz", "1400"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "experts" in text and "ep_alltoall" in text and "KV" in text and "1400 MHz" in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--tp", "3", "--decode-batch", "4"],
         "does not divide"),
        (["--model", "Llama-3.1-8B", "--gpu", "H100-SXM"], "exactly one of"),
        (["--model", "Nope", "--gpu", "H100-SXM", "--decode-batch", "4"], "unknown model"),
        (["--model", "Llama-3.1-70B", "--gpu", "H100-SXM", "--decode-batch", "4"], "does not fit"),
    ],
)
def test_perf_bad_input_is_one_line_exit_2(argv: list[str], needle: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_perf_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "--help"]) == 0
    assert "fleetwise perf --model" in capsys.readouterr().out


SHIPPED = (profile_dir() / "H100-SXM").is_dir() and (calibration_dir() / "H100-SXM.json").is_file()


@pytest.mark.skipif(not SHIPPED, reason="the measured H100 profile and its calibration are not shipped yet")
def test_bench_perf_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "perf", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    fams = {r["family"] for r in out["heldout"]}
    assert {"gemm_bf16", "step_all"} <= fams
    assert out["compositions_per_s"] > 1e5


def test_bench_perf_on_a_synthetic_profile(synthetic_profile: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--profiles", str(synthetic_profile.parent), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(bp, "profile_dir", lambda: synthetic_profile.parent)
    monkeypatch.setattr(bp, "calibration_dir", lambda: tmp_path)
    assert main(["bench", "perf"]) == 0
    text = capsys.readouterr().out
    assert "gemm_bf16" in text and "compositions/s" in text and "power_phase_decode" in text
    assert "miss" not in text  # synthetic truth with 2 % noise meets every target

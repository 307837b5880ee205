"""Speculative decoding in expectation: off is main's model bit for bit, on shortens light-load decode
steps by about E / (1 + overhead) and less at saturation, and bad settings are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.perf import Parallelism, build_replica_perf
from planner.perf import kernel as kn
from planner.perf.model import RooflinePerf
from planner.perf.spec_decode import DEFAULTS, SpecDecode, SpecMethod, expected_tokens, parse_spec_decode
from traces.errors import InputError

GOLDEN = Path(__file__).parent / "data" / "spec_off_golden.npz"
"""Step seconds and watts of main's model (before speculative decoding) on the grid below."""

CASES = [("Llama-3.1-8B", "H100-SXM", {}, "bf16"),
         ("Llama-3.1-70B", "H100-SXM", {"tp": 4, "pp": 2}, "bf16"),
         ("DeepSeek-V3", "H200-SXM", {"tp": 8, "ep": 8}, "fp8"),
         ("DeepSeek-V3", "H200-SXM", {"tp": 8, "ep": 8, "dp_attention": True}, "fp8")]


def _perf(i: int, spec: SpecDecode | None = None) -> RooflinePerf:
    m, g, par, wd = CASES[i]
    cat = load_catalog()
    return build_replica_perf(cat.model(m), cat.gpu(g), Parallelism(**par), weight_dtype=wd,  # type: ignore[arg-type]
                              kv_dtype="bf16", spec_decode=spec)


def _grid() -> tuple[np.ndarray, ...]:
    pt = np.array([0.0, 512.0, 4096.0])
    ds = np.array([0.0, 1.0, 7.0, 64.0, 256.0])
    ctx = np.array([100.0, 3000.0])
    p, d, c = np.meshgrid(pt, ds, ctx, indexing="ij")
    return p, p * (c + (p + 1) / 2), d, d * c


@pytest.mark.parametrize("i", range(len(CASES)))
def test_off_is_bit_identical_to_main(i: int) -> None:
    gold = np.load(GOLDEN)
    perf = _perf(i)
    assert np.array_equal(perf.step_time_s(*_grid()), gold[f"t{i}"])
    assert np.array_equal(perf.step_power_w(*_grid()), gold[f"w{i}"])
    assert not perf.params[kn.H_SPEC_Q:kn.HEADER].any()  # the appended slots say "off"


def test_header_slots_appended() -> None:
    assert (kn.H_SPEC_Q, kn.H_SPEC_E, kn.H_SPEC_DRAFT, kn.HEADER) == (81, 82, 83, 84)
    assert len(kn.H_NAMES) == kn.HEADER and kn.H_NAMES[-3:] == ("SPEC_Q", "SPEC_E", "SPEC_DRAFT")


@pytest.mark.parametrize(("k", "a"), [(1, 0.85), (3, 0.75), (5, 0.5), (4, 0.0), (2, 0.99)])
def test_expected_tokens_formula(k: int, a: float) -> None:
    assert expected_tokens(k, a) == pytest.approx((1 - a ** (k + 1)) / (1 - a))
    assert 1.0 <= expected_tokens(k, a) <= k + 1


def test_defaults_have_sources() -> None:
    for method, d in DEFAULTS.items():
        assert d.sources and 0.0 < d.acceptance < 1.0 and d.k >= 1
        assert parse_spec_decode(method.value).acceptance == d.acceptance
    assert DEFAULTS[SpecMethod.NGRAM].draft_layers == 0.0
    assert "2412.19437" in DEFAULTS[SpecMethod.MTP].sources[0]


def test_light_load_tpot_drops_by_about_e_and_gain_shrinks_at_saturation() -> None:
    spec = parse_spec_decode("eagle")
    off, on = _perf(0), _perf(0, spec)
    e = spec.expected_tokens
    light = float(off.step_time_s(0, 0, 1, 2048)) / float(on.step_time_s(0, 0, 1, 2048))
    # the verify step costs 1 + overhead (k+1 rows, the draft head) of a plain step, so the gain is E/(1+o)
    assert e / 1.6 < light < e
    heavy = float(off.step_time_s(0, 0, 256, 256 * 200)) / float(on.step_time_s(0, 0, 256, 256 * 200))
    assert heavy < light - 0.3  # a compute-bound verify of 4 x 256 rows gains less


def test_ngram_has_no_draft_cost_and_mtp_on_deepseek() -> None:
    ng = parse_spec_decode("ngram:k=3:accept=0.5")
    assert _perf(0, ng).params[kn.H_SPEC_DRAFT] == 0.0
    mtp = parse_spec_decode("mtp")
    off, on = _perf(2), _perf(2, mtp)
    gain = float(off.step_time_s(0, 0, 8, 8 * 2000)) / float(on.step_time_s(0, 0, 8, 8 * 2000))
    assert 1.3 < gain < mtp.expected_tokens  # DeepSeek reports 1.8x TPS at 85-90 % acceptance
    assert on.kv_capacity_tokens < off.kv_capacity_tokens  # the MTP block's weights take KV room


def test_prefill_is_not_divided() -> None:
    off, on = _perf(0), _perf(0, parse_spec_decode("eagle"))
    pairs = 2048 * (2048 + 1) / 2
    assert float(on.step_time_s(2048, pairs, 0, 0)) == float(off.step_time_s(2048, pairs, 0, 0))
    # a mixed step keeps its whole prefill chunk: never below the chunk alone
    assert float(on.step_time_s(2048, pairs, 32, 32 * 1000)) > float(off.step_time_s(2048, pairs, 0, 0))


def test_power_is_the_verify_steps_and_energy_is_spread_over_e() -> None:
    on = _perf(0, parse_spec_decode("eagle"))
    undivided = on.params.copy()
    undivided[kn.H_SPEC_E] = 1.0  # the verify step as it runs, one per E tokens
    args = (0.0, 0.0, 64.0, 64.0 * 2000)
    t_v = kn.step_time(undivided, *args)
    t = float(on.step_time_s(*args))
    assert t == pytest.approx(t_v / on.params[kn.H_SPEC_E], rel=1e-12)
    assert float(on.step_power_w(*args)) == pytest.approx(kn.step_power(undivided, *args), rel=1e-9)
    bd = on.breakdown(*args)
    assert bd.total_s == pytest.approx(sum(bd.families_s.values()), rel=1e-9)


def test_clock_and_calibration_keep_the_setting() -> None:
    on = _perf(0, parse_spec_decode("eagle:k=2:accept=0.6"))
    slow = on.at_clock(1200.0)
    assert slow.spec_decode == on.spec_decode and slow.params[kn.H_SPEC_Q] == 3.0
    again = on.with_calibration(on.calibration)
    assert np.array_equal(again.params, on.params)


def test_decode_step_stays_affine_in_kv() -> None:
    on = _perf(0, parse_spec_decode("eagle"))
    a, b = on.decode_affine(16)
    assert float(on.step_time_s(0, 0, 16, 40_000)) == pytest.approx(a + b * 40_000, rel=1e-9)


@pytest.mark.parametrize("text", ["medusa", "mtp:k=0", "eagle:k=x", "mtp:accept=1.0", "ngram:foo=1", "mtp:k"])
def test_bad_option_is_one_line_exit_2(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError):
        parse_spec_decode(text)
    rc = main(["perf", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--decode-batch", "4",
               "--spec-decode", text])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "--spec-decode" in err and "Traceback" not in err


def test_perf_json_reports_e(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["perf", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--decode-batch", "8", "--context",
               "2048", "--spec-decode", "eagle:k=3:accept=0.75", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spec_decode"]["expected_tokens_per_step"] == pytest.approx(2.734375)
    assert out["spec_decode"]["method"] == "eagle" and out["spec_decode"]["sources"]


def test_replay_spec_refuses_a_bad_setting() -> None:
    from dashboards.scenario import ReplaySpec, replay_inputs

    with pytest.raises(InputError):
        ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", spec_decode="mtp:k=99")
    perf, _, _ = replay_inputs(ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", spec_decode="ngram"))
    assert perf.spec_decode == parse_spec_decode("ngram")  # type: ignore[attr-defined]


def test_replay_reports_spec_and_shortens_tpot(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["replay", "--trace", "default", "--duration-s", "300", "--load-factor", "0.5", "--json"]
    assert main(base) == 0
    off = json.loads(capsys.readouterr().out)
    assert "spec_decode" not in off
    assert main([*base, "--spec-decode", "eagle"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert on["spec_decode"]["expected_tokens_per_step"] == pytest.approx(2.734375)
    assert on["completed"] == off["completed"]
    assert on["classes"][0]["tpot_p50_s"] < off["classes"][0]["tpot_p50_s"] / 1.5
    assert main([*base, "--spec-decode", "eagle:accept=x"]) == 2
    assert "--spec-decode" in capsys.readouterr().err


def test_mtp_needs_a_model_that_ships_an_mtp_module() -> None:
    from traces.errors import InputError

    with pytest.raises(InputError, match="ships no multi-token-prediction module"):
        _perf(0, parse_spec_decode("mtp"))
    assert load_catalog().model("DeepSeek-V3").mtp_layers == 1

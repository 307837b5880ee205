"""Throttling at the power limit in the step model (``Calibration.throttle_exp``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from planner.catalog import load_catalog
from planner.perf import kernel as kn
from planner.perf.engine_profile import engine_perf_inputs
from planner.perf.model import build_replica_perf


def _perfs(exp: float) -> tuple[object, object]:
    cat = load_catalog()
    gpu, model = cat.gpu("H100-SXM"), cat.model("Llama-3.1-8B")
    # the vLLM profile's calibration: GEMMs at full clock, so prompt steps would pass the 700 W limit
    _, cal, gpu = engine_perf_inputs("vllm", gpu)
    off = build_replica_perf(model, gpu, calibration=replace(cal, throttle_exp=0.0))
    on = build_replica_perf(model, gpu, calibration=replace(cal, throttle_exp=exp))
    return off, on


def test_prompt_steps_slow_to_hold_the_limit_and_decode_steps_do_not() -> None:
    off, on = _perfs(2.0)
    prompt = (4096.0, 4096.0 * 2048.0, 8.0, 8.0 * 1500.0)
    decode = (0.0, 0.0, 32.0, 32.0 * 1500.0)
    t_off, t_on = float(off.step_time_s(*prompt)), float(on.step_time_s(*prompt))  # type: ignore[attr-defined]
    assert t_on > 1.01 * t_off
    b = on.breakdown(*prompt)  # type: ignore[attr-defined]
    assert abs(b.total_s - t_on) < 1e-12 and abs(b.power_w - 700.0) < 1e-6
    assert abs(sum(b.families_s.values()) - t_on) < 1e-9
    # a decode step is far below the limit: untouched, and the same through every entry point
    assert float(on.step_time_s(*decode)) == float(off.step_time_s(*decode))  # type: ignore[attr-defined]
    out = np.zeros(kn.OUT_SIZE)
    kn.step_eval(on.params, *decode, out)  # type: ignore[attr-defined]
    assert out[kn.OUT_CLOCK] == 1.0
    kn.step_eval(on.params, *prompt, out)  # type: ignore[attr-defined]
    assert 0.3 < out[kn.OUT_CLOCK] < 1.0
    fn, prm = on.kernel()  # type: ignore[attr-defined]
    assert abs(fn(prm, *prompt) - t_on) < 1e-12  # type: ignore[operator]


def test_a_flatter_power_curve_throttles_deeper() -> None:
    prompt = (8192.0, 8192.0 * 4096.0, 0.0, 0.0)
    steep = float(_perfs(4.0)[1].step_time_s(*prompt))  # type: ignore[attr-defined]
    flat = float(_perfs(1.0)[1].step_time_s(*prompt))  # type: ignore[attr-defined]
    base = float(_perfs(1.0)[0].step_time_s(*prompt))  # type: ignore[attr-defined]
    assert base < steep < flat

"""The engine-kernel terms an engine profile sets (fp8 activation quantization and fp8-KV attention,
grouped expert GEMMs) and the device memory an engine sizes its KV cache against."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.catalog import load_catalog
from planner.perf.calibration import resolve_calibration
from planner.perf.engine_profile import load_engine_profile
from planner.perf.model import build_replica_perf
from planner.perf.vllm_data import precisions, variant
from traces.errors import InputError


def _perf(model: str, cal: object, **kw: object) -> object:
    cat = load_catalog()
    return build_replica_perf(cat.model(model), cat.gpu("H100-SXM"), calibration=cal,  # type: ignore[arg-type]
                              min_kv_tokens=1, **kw)  # type: ignore[arg-type]


def test_moe_terms_slow_expert_gemms_and_leave_dense_models_alone() -> None:
    cal = resolve_calibration(load_catalog().gpu("H100-SXM"))
    moe = replace(cal, moe_compute_slowdown=1.8, moe_launch_s=10e-6)
    dense0, dense1 = _perf("Llama-3.1-8B", cal), _perf("Llama-3.1-8B", moe)
    for args in ((8192.0, 8192.0**2 / 2, 0.0, 0.0), (0.0, 0.0, 16.0, 16 * 1300.0)):
        assert dense1.step_time_s(*args) == pytest.approx(dense0.step_time_s(*args))  # type: ignore[attr-defined]
    m0, m1 = _perf("Qwen3-30B-A3B", cal), _perf("Qwen3-30B-A3B", moe)
    prompt = (8192.0, 8192.0**2 / 2, 0.0, 0.0)
    decode = (0.0, 0.0, 4.0, 4 * 1300.0)
    # prompt steps are compute-bound: the slowdown shows; small decode steps pay the launches
    # (48 layers x 2 grouped GEMMs x 10 us = 0.96 ms) and almost nothing else
    assert m1.step_time_s(*prompt) > 1.15 * m0.step_time_s(*prompt)  # type: ignore[attr-defined]
    extra = m1.step_time_s(*decode) - m0.step_time_s(*decode)  # type: ignore[attr-defined]
    assert 0.9e-3 < extra < 1.1e-3


def test_fp8_kv_slowdown_acts_on_fp8_kv_decode_only() -> None:
    cal = resolve_calibration(load_catalog().gpu("H100-SXM"))
    slow = replace(cal, kv_fp8_attn_slowdown=2.0)
    decode = (0.0, 0.0, 64.0, 64 * 4000.0)
    bf16_kv = [_perf("Llama-3.1-8B", c, weight_dtype="fp8").step_time_s(*decode)  # type: ignore[attr-defined]
               for c in (cal, slow)]
    assert bf16_kv[0] == pytest.approx(bf16_kv[1])
    fp8_kv = [_perf("Llama-3.1-8B", c, weight_dtype="fp8", kv_dtype="fp8").step_time_s(*decode)  # type: ignore[attr-defined]
              for c in (cal, slow)]
    assert fp8_kv[1] > fp8_kv[0] * 1.1
    # at slowdown 2 an fp8 cache is read in the time of a bf16 one
    assert fp8_kv[1] == pytest.approx(bf16_kv[0], rel=0.02)


def test_shipped_vllm_profile_carries_fitted_fp8_and_moe_terms() -> None:
    prof = load_engine_profile("vllm", "H100-SXM")
    cal = prof.apply(resolve_calibration(load_catalog().gpu("H100-SXM")))
    assert prof.gemm_fp8 is not None and cal.gemm_fp8 == prof.gemm_fp8
    # the fp8 GEMM at full clock reaches more of the peak than the profiler's power-throttled loops
    assert prof.gemm_fp8.ec_max > resolve_calibration(load_catalog().gpu("H100-SXM")).gemm_fp8.ec_max
    assert cal.moe_compute_slowdown == prof.moe_compute_slowdown > 1.0
    assert cal.moe_launch_s == prof.moe_launch_s > 0.0
    assert prof.fit["fp8"]["model"] == "Llama-3.1-8B" and prof.fit["moe"]["model"] == "Qwen3-30B-A3B"


def test_kv_capacity_is_sized_against_the_memory_cuda_reports() -> None:
    cat = load_catalog()
    h100 = cat.gpu("H100-SXM")
    assert h100.memory_bytes == pytest.approx(79.18 * 2**30)
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), h100, calibration=resolve_calibration(h100))
    # vLLM 0.26.0 allocated 28,123 blocks of 16 tokens at gpu_memory_utilization 0.9 (shipped run)
    assert perf.kv_capacity_tokens == pytest.approx(28_123 * 16, rel=0.03)
    # a GPU without a measured figure falls back to its datasheet GB
    assert replace(h100, cuda_memory_gib=0.0).memory_bytes == 80e9


def test_run_variant_names_what_its_engine_changed() -> None:
    base = {"model": "llama-3.1-8b", "engine_args": {"enable_prefix_caching": True}}
    assert variant(base) == "llama-3.1-8b" and precisions(base) == ("bf16", "bf16")
    fp8 = {"model": "llama-3.1-8b", "engine_args": {"quantization": "fp8", "kv_cache_dtype": "fp8"}}
    assert variant(fp8) == "llama-3.1-8b-fp8-kvfp8" and precisions(fp8) == ("fp8", "fp8")
    nopc = {"model": "qwen3-32b", "engine_args": {"quantization": "fp8", "enable_prefix_caching": False}}
    assert variant(nopc) == "qwen3-32b-fp8-noprefix"
    with pytest.raises(InputError, match="quantization"):
        precisions({"model": "x", "engine_args": {"quantization": "awq"}})

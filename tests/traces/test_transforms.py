"""Trace transforms: pure, re-based at 0, canonical, and they keep what their docstrings promise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace, TraceMeta
from traces.stats import describe
from traces.synth import synthesize
from traces.synth_spec import GammaArrivals, IndependentLengths, LognormalLengths, SynthSpec, TenantSpec
from traces.transforms import compress_time, filter_trace, merge_tenants, scale_rate, slice_time
from traces.validate import validate_trace


@pytest.fixture(scope="module")
def conv(shared_traces: Path) -> RequestTrace:
    return load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")


@pytest.fixture(scope="module")
def mooncake(shared_traces: Path) -> RequestTrace:
    return load_trace(shared_traces / "mooncake" / "synthetic_trace.jsonl")


@pytest.fixture(scope="module")
def tenants_trace() -> RequestTrace:
    lengths = IndependentLengths(LognormalLengths(6.0, 0.7, 8192), LognormalLengths(4.0, 0.8, 1024))
    spec = SynthSpec(
        arrivals=GammaArrivals(4.0, 1.5),
        lengths=lengths,
        duration_s=600.0,
        seed=2,
        tenants=TenantSpec(count=3, block_size=16),
        model="m-a",
    )
    return synthesize(spec)


def test_slice_time(conv: RequestTrace) -> None:
    before = conv.df.clone()
    part = slice_time(conv, 600.0, 1200.0)
    validate_trace(part)
    src = conv.df["arrival_s"]
    expected = conv.df.filter((src >= 600.0) & (src < 1200.0))
    assert part.num_requests == expected.height
    assert part.df["arrival_s"][0] == 0.0
    rebased = expected["arrival_s"].to_numpy() - expected["arrival_s"][0]
    assert np.allclose(part.df["arrival_s"].to_numpy(), rebased)
    assert part.df["input_tokens"].equals(expected["input_tokens"])
    assert conv.df.equals(before)  # inputs are never modified
    assert ("transform", "slice_time(start_s=600.0, end_s=1200.0)") in part.meta.extra
    with pytest.raises(InputError, match="end_s"):
        slice_time(conv, 10.0, 5.0)


def test_compress_time_keeps_cv_exactly(conv: RequestTrace) -> None:
    fast = compress_time(conv, 4.0)
    validate_trace(fast)
    a, b = describe(conv), describe(fast)
    assert b.requests == a.requests
    assert b.mean_rate_rps == pytest.approx(4 * a.mean_rate_rps)
    assert b.interarrival_cv == pytest.approx(a.interarrival_cv, rel=1e-9)
    assert b.duration_s == pytest.approx(a.duration_s / 4)
    with pytest.raises(InputError, match="factor"):
        compress_time(conv, 0.0)


@pytest.mark.parametrize("factor", [2.0, 3.0, 1.5])
def test_scale_up_keeps_duration_and_shape(conv: RequestTrace, factor: float) -> None:
    up = scale_rate(conv, factor, seed=1)
    validate_trace(up)
    a, b = describe(conv), describe(up)
    assert b.requests == pytest.approx(factor * a.requests, rel=0.01)
    assert b.duration_s == pytest.approx(a.duration_s, rel=0.02)
    assert b.mean_rate_rps == pytest.approx(factor * a.mean_rate_rps, rel=0.02)
    # The minute-scale swell of the conversation hour survives the superposition.
    assert b.peak_to_mean == pytest.approx(a.peak_to_mean, abs=0.08)
    assert b.input_tokens.mean == pytest.approx(a.input_tokens.mean, rel=0.02)
    corr = np.corrcoef(
        describe(conv).series["requests"].to_numpy()[:-1],
        b.series["requests"].to_numpy()[: a.series.height - 1],
    )[0, 1]
    assert corr > 0.9


def test_scale_down_thins(conv: RequestTrace) -> None:
    down = scale_rate(conv, 0.5, seed=3)
    validate_trace(down)
    assert down.num_requests == pytest.approx(conv.num_requests / 2, rel=0.03)
    assert describe(down).peak_to_mean == pytest.approx(describe(conv).peak_to_mean, abs=0.1)
    assert scale_rate(conv, 0.5, seed=3).df.equals(down.df)  # seeded
    assert not scale_rate(conv, 0.5, seed=4).df.equals(down.df)


def test_scale_up_remaps_unique_prefix_blocks(mooncake: RequestTrace) -> None:
    base = describe(mooncake).prefix_hit_ratio
    up = scale_rate(mooncake, 2.0, seed=0)
    hit = describe(up).prefix_hit_ratio
    assert base is not None and hit is not None
    # Unremapped copies would re-hit every block of their original: at least (base + 1) / 2 = 0.82.
    # Keeping only shared blocks shared adds hits on popular content and nothing else.
    assert base < hit < (base + 1) / 2 - 0.05
    assert up.meta.block_size == mooncake.meta.block_size == 512
    lengths = up.df["prefix_hashes"].list.len()
    assert (lengths.to_numpy() == -(-up.df["input_tokens"].to_numpy() // 512)).all()


def test_scale_up_suffixes_sessions() -> None:
    df = pl.DataFrame(
        {
            "arrival_s": [0.0, 1.0, 2.0],
            "input_tokens": [1, 2, 3],
            "output_tokens": [1, 1, 1],
            "session_id": ["a", "a", "b"],
        },
        schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32},
    )
    up = scale_rate(RequestTrace(df, TraceMeta("mem", "canonical")), 2.0, max_shift_s=0.0)
    assert sorted(up.df["session_id"].to_list()) == ["a", "a", "a#1", "a#1", "b", "b#1"]


def test_merge_tenants(conv: RequestTrace, mooncake: RequestTrace, tenants_trace: RequestTrace) -> None:
    merged = merge_tenants([conv, tenants_trace], names=["chat", "api"])
    validate_trace(merged)
    assert merged.num_requests == conv.num_requests + tenants_trace.num_requests
    tenants = merged.df["tenant"].value_counts().sort("tenant")
    assert tenants["tenant"].to_list() == ["api/tenant-00", "api/tenant-01", "api/tenant-02", "chat"]
    assert merged.df.filter(pl.col("tenant") == "chat")["model"].null_count() == conv.num_requests
    assert merged.meta.block_size == 16

    twice = merge_tenants([mooncake, mooncake])
    assert twice.df["tenant"].unique().sort().to_list() == [mooncake.meta.source, mooncake.meta.source + "#1"]
    # Hash ids of the second copy are remapped: the two tenants share no cache blocks.
    s = describe(twice)
    assert s.prefix_hit_ratio == pytest.approx(describe(mooncake).prefix_hit_ratio)
    shared = describe(merge_tenants([mooncake, mooncake], keep_hashes=True)).prefix_hit_ratio
    assert shared is not None and shared > 0.8

    with pytest.raises(InputError, match="block sizes"):
        merge_tenants([mooncake, tenants_trace])
    with pytest.raises(InputError, match="names"):
        merge_tenants([conv, conv], names=["x", "x"])


def test_filter_trace(tenants_trace: RequestTrace, conv: RequestTrace) -> None:
    f = filter_trace(tenants_trace, tenants=["tenant-01"], min_input_tokens=300, max_output_tokens=100)
    validate_trace(f)
    df = f.df
    assert df.height > 0
    assert set(df["tenant"].to_list()) == {"tenant-01"}
    assert df["input_tokens"].min() >= 300 and df["output_tokens"].max() <= 100  # type: ignore[operator]
    expected = tenants_trace.df.filter(
        (pl.col("tenant") == "tenant-01") & (pl.col("input_tokens") >= 300) & (pl.col("output_tokens") <= 100)
    )
    assert df.height == expected.height
    assert filter_trace(tenants_trace, models=["other"]).num_requests == 0
    with pytest.raises(InputError) as err:
        filter_trace(conv, models=["GPT-4"])
    assert err.value.field == "model"

"""Synthetic traces: arrival processes hit their rate and CV, lengths their statistics, seeds reproduce,
and the bundled default trace regenerates bit-identically and looks like the published Azure conv numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from traces.default import DEFAULT_TRACE_PATH, default_spec, default_trace, write_default
from traces.errors import InputError
from traces.load import load_trace
from traces.stats import describe
from traces.synth import synthesize, weibull_shape_for_cv
from traces.synth_config import load_spec, parse_config
from traces.synth_spec import (
    EmpiricalLengths,
    GammaArrivals,
    IndependentLengths,
    LognormalLengths,
    MMPPArrivals,
    PoissonArrivals,
    ProfileModulation,
    QuantileLengths,
    SinusoidModulation,
    SynthSpec,
    TenantSpec,
    WeibullArrivals,
)
from traces.validate import validate_trace
from traces.write import write_parquet

SHORT = IndependentLengths(
    LognormalLengths(mu=5.0, sigma=0.5, max_tokens=4096), LognormalLengths(mu=4.0, sigma=0.5, max_tokens=1024)
)


def gaps_cv(arrivals: np.ndarray) -> float:
    d = np.diff(arrivals)
    return float(d.std() / d.mean())


def spec(arrivals: object, *, duration: float = 2000.0, seed: int = 0, **kw: object) -> SynthSpec:
    return SynthSpec(arrivals=arrivals, lengths=SHORT, duration_s=duration, seed=seed, **kw)  # type: ignore[arg-type]


def test_poisson_hits_rate_and_unit_cv() -> None:
    t = synthesize(spec(PoissonArrivals(rate=20.0)))
    a = t.df["arrival_s"].to_numpy()
    assert a[0] == 0.0 and np.all(np.diff(a) >= 0) and a[-1] < 2000.0
    assert t.num_requests / 2000.0 == pytest.approx(20.0, rel=0.02)
    assert gaps_cv(a) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("kind", [GammaArrivals, WeibullArrivals])
@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_renewal_processes_hit_rate_and_cv(kind: type[GammaArrivals | WeibullArrivals], cv: float) -> None:
    t = synthesize(spec(kind(rate=20.0, cv=cv), duration=5000.0, seed=3))
    a = t.df["arrival_s"].to_numpy()
    # Rate: count of a renewal process has relative sd cv / sqrt(n) (n = 1e5 here).
    assert t.num_requests / 5000.0 == pytest.approx(20.0, rel=max(0.02, 5 * cv / math.sqrt(1e5)))
    assert gaps_cv(a) == pytest.approx(cv, rel=0.08)


@pytest.mark.parametrize("cv", [0.3, 1.0, 2.5, 10.0])
def test_weibull_shape_solves_the_cv(cv: float) -> None:
    k = weibull_shape_for_cv(cv)
    got = math.sqrt(math.exp(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)) - 1)
    assert got == pytest.approx(cv, rel=1e-9)
    assert weibull_shape_for_cv(1.0) == pytest.approx(1.0, rel=1e-9)


def test_mmpp_long_run_rate_and_burstiness() -> None:
    a = MMPPArrivals(rates=(2.0, 30.0), mean_sojourn_s=(40.0, 10.0))
    assert a.mean_rate == pytest.approx((2 * 40 + 30 * 10) / 50)
    t = synthesize(spec(a, duration=40_000.0, seed=5))
    assert t.num_requests / 40_000.0 == pytest.approx(a.mean_rate, rel=0.05)
    arr = t.df["arrival_s"].to_numpy()
    assert gaps_cv(arr) > 1.5  # on/off bursts are far burstier than Poisson
    counts = np.bincount((arr // 5.0).astype(int))
    # Windows in the low state see ~10 requests, in the high state ~150: both must occur.
    assert (counts < 25).mean() > 0.5 and (counts > 100).mean() > 0.1


def test_sinusoid_modulation_follows_the_curve_and_keeps_the_mean() -> None:
    m = SinusoidModulation(amplitude=0.6, period_s=1000.0, phase_s=-250.0)  # minimum at t=0, peak at 500
    t = synthesize(spec(PoissonArrivals(rate=50.0), duration=10_000.0, seed=1, modulation=m))
    a = t.df["arrival_s"].to_numpy()
    assert t.num_requests / 10_000.0 == pytest.approx(50.0, rel=0.02)
    phase = (a % 1000.0) // 125.0  # 8 bins per period
    counts = np.bincount(phase.astype(int), minlength=8) / (10 * 125.0)
    centers = (np.arange(8) + 0.5) * 125.0
    expected = 50.0 * (1 - 0.6 * np.cos(2 * np.pi * centers / 1000.0))
    # Bin averages of a sinusoid are slightly flattened: sinc(1/8) ~ 0.974.
    assert np.allclose(counts, 50.0 + (expected - 50.0) * 0.974, rtol=0.05)


def test_profile_modulation_sets_relative_levels() -> None:
    m = ProfileModulation(levels=(1.0, 3.0), period_s=200.0)
    t = synthesize(spec(GammaArrivals(rate=10.0, cv=1.5), duration=20_000.0, seed=2, modulation=m))
    a = t.df["arrival_s"].to_numpy()
    second_half = ((a % 200.0) >= 100.0).sum()
    assert second_half / (a.size - second_half) == pytest.approx(3.0, rel=0.06)
    assert t.num_requests / 20_000.0 == pytest.approx(10.0, rel=0.03)


def test_seeded_reproducible_and_streams_independent() -> None:
    base = spec(GammaArrivals(rate=5.0, cv=2.0), duration=500.0, seed=11, tenants=TenantSpec(count=3))
    assert synthesize(base).df.equals(synthesize(base).df)
    other_seed = synthesize(SynthSpec(**{**base.__dict__, "seed": 12}))
    assert not other_seed.df.equals(synthesize(base).df)
    longer = IndependentLengths(
        LognormalLengths(mu=7.0, sigma=1.0, max_tokens=8192),
        LognormalLengths(mu=3.0, sigma=1.0, max_tokens=512),
    )
    other_lengths = SynthSpec(**{**base.__dict__, "lengths": longer})
    # A different length model leaves the arrival times as they were.
    assert synthesize(other_lengths).df["arrival_s"].equals(synthesize(base).df["arrival_s"])


def test_lognormal_from_mean_median_and_clipping() -> None:
    d = LognormalLengths.from_mean_median(211.0, 129.0, max_tokens=100_000)
    t = synthesize(
        SynthSpec(arrivals=PoissonArrivals(200.0), lengths=IndependentLengths(d, d), duration_s=500.0)
    )
    x = t.df["input_tokens"].to_numpy()
    assert np.median(x) == pytest.approx(129.0, rel=0.02)
    assert x.mean() == pytest.approx(211.0, rel=0.04)
    clipped = LognormalLengths(mu=6.0, sigma=2.0, max_tokens=700, min_tokens=5)
    t2 = synthesize(
        SynthSpec(
            arrivals=PoissonArrivals(50.0), lengths=IndependentLengths(clipped, clipped), duration_s=200.0
        )
    )
    y = t2.df["output_tokens"].to_numpy()
    assert y.min() >= 5 and y.max() == 700
    with pytest.raises(InputError, match="mean >= median"):
        LognormalLengths.from_mean_median(100.0, 200.0, max_tokens=1000)


def test_quantile_fit_matches_mean_median_p99() -> None:
    d = QuantileLengths.fit(mean=1155, median=1020, p99=4142, min_tokens=16, max_tokens=16_384)
    assert d.mean == pytest.approx(1155, rel=1e-6)
    t = synthesize(
        SynthSpec(arrivals=PoissonArrivals(400.0), lengths=IndependentLengths(d, d), duration_s=500.0)
    )
    s = describe(t)
    assert s.input_tokens.mean == pytest.approx(1155, rel=0.02)
    assert s.input_tokens.median == pytest.approx(1020, rel=0.02)
    assert s.input_tokens.p99 == pytest.approx(4142, rel=0.03)
    with pytest.raises(InputError, match="field mean"):
        QuantileLengths.fit(mean=5000, median=100, p99=200, min_tokens=1, max_tokens=300)


def test_empirical_lengths_resample_real_pairs_jointly(shared_traces: Path) -> None:
    src = load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    lengths = EmpiricalLengths.from_trace(src)
    t = synthesize(SynthSpec(arrivals=PoissonArrivals(10.0), lengths=lengths, duration_s=1000.0, seed=4))
    pairs = set(zip(src.df["input_tokens"].to_list(), src.df["output_tokens"].to_list(), strict=True))
    got = list(zip(t.df["input_tokens"].to_list(), t.df["output_tokens"].to_list(), strict=True))
    assert all(p in pairs for p in got)
    assert describe(t).output_tokens.mean == pytest.approx(211.1, rel=0.08)


def test_prefix_hashes_share_system_prompts_only() -> None:
    ten = TenantSpec(count=4, zipf_s=1.0, prompts_per_tenant=2, prompt_tokens=(100, 300), block_size=16)
    t = synthesize(spec(PoissonArrivals(5.0), duration=400.0, seed=9, tenants=ten))
    assert t.meta.block_size == 16
    df = t.df
    blocks = df["prefix_hashes"].list.len().to_numpy()
    assert np.array_equal(blocks, -(-df["input_tokens"].to_numpy() // 16))
    # Leading blocks are shared (the system prompt); every later block is unique to its request.
    flat = df.select(pl.col("prefix_hashes").explode()).to_series().drop_nulls()
    counts = flat.value_counts()
    shared = set(counts.filter(pl.col("count") > 1)["prefix_hashes"].to_list())
    for hashes in df["prefix_hashes"].head(50).to_list():
        is_shared = [h in shared for h in hashes]
        assert is_shared == sorted(is_shared, reverse=True)  # a shared run, then unique blocks
        assert sum(is_shared) <= 300 // 16
    assert set(df["tenant"].unique().to_list()) <= {f"tenant-{i:02d}" for i in range(4)}
    # Zipf(1): tenant-00 gets about twice the requests of tenant-01.
    by = df.group_by("tenant").len().sort("tenant")["len"].to_list()
    assert by[0] > 1.4 * by[1]
    hit = describe(t).prefix_hit_ratio
    # Prompts of ~150 tokens mostly inside 100..300-token system prompts: most blocks are hits.
    assert hit is not None and 0.3 < hit < 0.95


@pytest.mark.parametrize(
    "arrivals",
    [
        PoissonArrivals(3.0),
        GammaArrivals(3.0, 3.0),
        WeibullArrivals(3.0, 0.7),
        MMPPArrivals((0.5, 8.0), (30.0, 5.0)),
    ],
)
def test_output_is_canonical(arrivals: object) -> None:
    t = synthesize(
        spec(
            arrivals,
            duration=300.0,
            tenants=TenantSpec(count=2),
            model="llama-3-8b",
            modulation=SinusoidModulation(amplitude=0.5, period_s=100.0),
        )
    )
    validate_trace(t)
    assert t.df.columns == ["arrival_s", "input_tokens", "output_tokens", "model", "tenant", "prefix_hashes"]
    assert t.meta.format == "synthetic"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(PoissonArrivals(-1.0)), "arrival.rate"),
        (spec(GammaArrivals(1.0, 0.0)), "arrival.cv"),
        (spec(PoissonArrivals(1.0), duration=0.0), "duration_s"),
        (spec(PoissonArrivals(1.0), modulation=SinusoidModulation(amplitude=1.0)), "diurnal.amplitude"),
        (spec(PoissonArrivals(1.0), modulation=ProfileModulation(levels=(1.0, 0.0))), "diurnal.profile"),
        (spec(MMPPArrivals((0.0, 0.0), (1.0, 1.0))), "arrival.mmpp.rates"),
        (spec(MMPPArrivals((1.0, 2.0), (1e-6, 1e-6))), "arrival.mmpp.mean_sojourn_s"),
        (spec(PoissonArrivals(1.0), tenants=TenantSpec(count=0)), "tenants.count"),
    ],
)
def test_bad_parameters_name_the_field(bad: SynthSpec, field: str) -> None:
    with pytest.raises(InputError) as err:
        synthesize(bad)
    assert err.value.field == field


def test_yaml_spec_round_trip_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "spec.yaml"
    good.write_text(
        "duration_s: 120\nseed: 3\narrival: {kind: weibull, rate: 4, cv: 1.7}\n"
        "diurnal: {profile: [1, 2, 1], period_s: 60}\n"
        "lengths:\n  input: {dist: lognormal, mean: 500, median: 400, max: 8192}\n"
        "  output: {dist: quantile, mean: 211, median: 129, p99: 601, min: 4, max: 1024}\n"
        "tenants: {count: 3, block_size: 64}\nmodel: m\n",
        encoding="utf-8",
    )
    s = load_spec(good)
    assert s.arrivals == WeibullArrivals(rate=4.0, cv=1.7)
    assert isinstance(s.modulation, ProfileModulation) and s.modulation.levels == (1.0, 2.0, 1.0)
    assert s.tenants is not None and s.tenants.block_size == 64
    validate_trace(synthesize(s))

    cases = {
        "duration_s: 10\narrival: {kind: gamma, rate: 1, cvv: 2}\n": ("arrival.cvv", "Extra inputs"),
        "duration_s: 10\narrival: {kind: gamma, rate: 1}\n": ("arrival", "needs a cv"),
        "duration_s: 10\narrival: {rate: 1}\nlengths: {input: {dist: lognormal, mean: 5, median: 4}, "
        "output: {dist: lognormal, mu: 1, sigma: 1, max: 9}}\n": ("lengths.input.max", "Field required"),
        "duration_s: -1\narrival: {rate: 1}\n": ("duration_s", "greater than 0"),
    }
    for text, (field, msg) in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as err:
            load_spec(bad)
        assert err.value.field == field, text
        assert msg in str(err.value) and str(bad) in str(err.value)

    broken = tmp_path / "broken.yaml"
    broken.write_text("duration_s: 10\narrival: {rate: 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML") as err:
        load_spec(broken)
    assert err.value.row is not None
    with pytest.raises(InputError, match="no length model"):
        parse_config({"duration_s": 1, "arrival": {"rate": 1}}).to_spec()


def test_write_parquet_round_trips_through_the_loader(tmp_path: Path) -> None:
    t = synthesize(spec(PoissonArrivals(5.0), duration=100.0, tenants=TenantSpec(count=2, block_size=32)))
    path = write_parquet(t, tmp_path / "sub" / "t.parquet")
    back = load_trace(path)
    assert back.df.equals(t.df)
    assert back.meta.block_size == 32 and dict(back.meta.extra)["origin_format"] == "synthetic"


def test_default_trace_regenerates_bit_identically(tmp_path: Path) -> None:
    fresh = write_default(tmp_path / "default_trace.parquet")
    assert DEFAULT_TRACE_PATH.stat().st_size < 1_000_000
    assert fresh.read_bytes() == DEFAULT_TRACE_PATH.read_bytes(), (
        "bundled default trace is stale: run `fleetwise traces default --write`"
    )


def test_default_trace_matches_published_azure_conv_shape() -> None:
    t = default_trace()
    validate_trace(t)
    assert t.meta.block_size == 64 and t.df.columns[-2:] == ["tenant", "prefix_hashes"]
    s = describe(t)
    # Published (DATA.md, Azure conv 2023): 5.53 req/s, peak/mean 1.52, input 1,155/1,020/4,142,
    # output 211/129/601.
    assert s.mean_rate_rps == pytest.approx(5.53, rel=0.01)
    assert s.peak_to_mean == pytest.approx(1.52, abs=0.05)
    assert 1.0 < s.interarrival_cv < 1.2
    assert s.input_tokens.mean == pytest.approx(1155, rel=0.02)
    assert s.input_tokens.median == pytest.approx(1020, rel=0.02)
    assert s.input_tokens.p99 == pytest.approx(4142, rel=0.02)
    assert s.output_tokens.mean == pytest.approx(211, rel=0.02)
    assert s.output_tokens.median == pytest.approx(129, rel=0.02)
    assert s.output_tokens.p99 == pytest.approx(601, rel=0.02)
    assert 3500 < s.duration_s <= 3600
    assert s.tenants == 16 and s.prefix_hit_ratio is not None and 0.1 < s.prefix_hit_ratio < 0.5
    assert synthesize(default_spec()).df.equals(t.df)

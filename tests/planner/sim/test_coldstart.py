"""Cold starts: the default mixture refitted on the Alibaba GenAI load latencies, the lognormal option,
and every run defaulting to the same mixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.autoscale.compare import CompareConfig
from planner.sim.coldstart import (
    FITTED_COLD_START,
    LOGNORMAL_COLD_START,
    ColdStartDistribution,
    ColdStartShape,
    LognormalMixture,
    cold_start_for,
    fit_lognormal_mixture,
    rescaled,
)
from planner.sim.config import AutoscaleConfig
from traces.errors import InputError


def _seconds(shared_traces: Path) -> np.ndarray:
    path = shared_traces / "alibaba_genai" / "basemodel_update_latency_anon.csv"
    return pl.read_csv(path)["value"].to_numpy().astype(np.float64) / 1000.0  # values are ms


def test_shipped_mixture_matches_a_refit(shared_traces: Path) -> None:
    fit = fit_lognormal_mixture(_seconds(shared_traces))
    shipped = FITTED_COLD_START
    np.testing.assert_allclose(fit.weights, shipped.weights, atol=1e-4)
    np.testing.assert_allclose(fit.mu, shipped.mu, atol=1e-4)
    np.testing.assert_allclose(fit.sigma, shipped.sigma, atol=1e-4)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_mixture_quantiles_within_ten_percent_of_the_data(shared_traces: Path, q: float) -> None:
    data = float(np.quantile(_seconds(shared_traces), q))
    model = FITTED_COLD_START.quantile(q)
    assert model == pytest.approx(data, rel=0.10)
    sampled = float(np.quantile(FITTED_COLD_START.sample(np.random.default_rng(3), 200_000), q))
    assert sampled == pytest.approx(data, rel=0.10)


def test_one_lognormal_misses_the_median_the_mixture_gets(shared_traces: Path) -> None:
    s = _seconds(shared_traces)
    one = fit_lognormal_mixture(s, components=1)
    assert abs(one.quantile(0.5) / float(np.median(s)) - 1) > 0.3  # why the mixture exists


def test_sampling_is_seeded_and_positive() -> None:
    a = FITTED_COLD_START.sample(np.random.default_rng(1), 1000)
    b = FITTED_COLD_START.sample(np.random.default_rng(1), 1000)
    np.testing.assert_array_equal(a, b)
    assert (a > 0).all()


def test_bad_mixtures_are_input_errors() -> None:
    with pytest.raises(InputError, match="sum to 1"):
        LognormalMixture(weights=(0.5, 0.6), mu=(1.0, 2.0), sigma=(0.1, 0.1))
    with pytest.raises(InputError, match="equal"):
        LognormalMixture(weights=(1.0,), mu=(1.0, 2.0), sigma=(0.1,))
    with pytest.raises(InputError, match="too few"):
        fit_lognormal_mixture(np.array([1.0, 2.0]), components=3)


def test_every_run_defaults_to_the_fitted_mixture() -> None:
    assert AutoscaleConfig(policy=lambda ctx: None).cold_start is FITTED_COLD_START  # type: ignore[arg-type,return-value]
    assert CompareConfig().cold_start is FITTED_COLD_START
    assert cold_start_for(ColdStartShape.MIXTURE) is FITTED_COLD_START
    assert cold_start_for(ColdStartShape.LOGNORMAL) is LOGNORMAL_COLD_START


def test_rescaled_mixture_keeps_its_shape() -> None:
    big = rescaled(FITTED_COLD_START, 360.0)
    assert isinstance(big, LognormalMixture)
    assert big.quantile(0.5) == pytest.approx(360.0, rel=1e-3)
    ratio = FITTED_COLD_START.quantile(0.9) / FITTED_COLD_START.quantile(0.5)
    assert big.quantile(0.9) / big.quantile(0.5) == pytest.approx(ratio, rel=1e-3)
    draws = big.sample(np.random.default_rng(0), 20_000)
    assert float(np.median(draws)) == pytest.approx(360.0, rel=0.05)


def test_lognormal_option_and_bad_inputs() -> None:
    ln = cold_start_for(ColdStartShape.LOGNORMAL, median_s=60.0, sigma=0.2)
    assert isinstance(ln, ColdStartDistribution) and ln.median_s == pytest.approx(60.0)
    with pytest.raises(InputError, match="lognormal only"):
        cold_start_for(ColdStartShape.MIXTURE, sigma=0.3)
    with pytest.raises(InputError):
        cold_start_for(ColdStartShape.LOGNORMAL, sigma=0.0)
    with pytest.raises(InputError):
        rescaled(FITTED_COLD_START, -1.0)


def test_shipped_lognormal_matches_a_refit(shared_traces: Path) -> None:
    path = shared_traces / "alibaba_genai" / "basemodel_update_latency_anon.csv"
    seconds = pl.read_csv(path)["value"].to_numpy() / 1000.0
    logs = np.log(seconds[seconds > 0])
    assert logs.mean() == pytest.approx(LOGNORMAL_COLD_START.mu, abs=1e-3)
    assert logs.std(ddof=1) == pytest.approx(LOGNORMAL_COLD_START.sigma, abs=1e-3)
    draws = LOGNORMAL_COLD_START.sample(np.random.default_rng(0), 50_000)
    assert np.median(draws) == pytest.approx(np.median(seconds), rel=0.5)  # bimodal data: median only roughly

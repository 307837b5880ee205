"""The default cold start: a lognormal mixture refitted on the Alibaba GenAI load latencies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.sim.coldstart import DEFAULT_COLD_START_MIXTURE, LognormalMixture, fit_lognormal_mixture
from traces.errors import InputError


def _seconds(shared_traces: Path) -> np.ndarray:
    path = shared_traces / "alibaba_genai" / "basemodel_update_latency_anon.csv"
    return pl.read_csv(path)["value"].to_numpy().astype(np.float64) / 1000.0  # values are ms


def test_shipped_mixture_matches_a_refit(shared_traces: Path) -> None:
    fit = fit_lognormal_mixture(_seconds(shared_traces))
    shipped = DEFAULT_COLD_START_MIXTURE
    np.testing.assert_allclose(fit.weights, shipped.weights, atol=1e-4)
    np.testing.assert_allclose(fit.mu, shipped.mu, atol=1e-4)
    np.testing.assert_allclose(fit.sigma, shipped.sigma, atol=1e-4)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_mixture_quantiles_within_ten_percent_of_the_data(shared_traces: Path, q: float) -> None:
    data = float(np.quantile(_seconds(shared_traces), q))
    model = DEFAULT_COLD_START_MIXTURE.quantile(q)
    assert model == pytest.approx(data, rel=0.10)
    sampled = float(np.quantile(DEFAULT_COLD_START_MIXTURE.sample(np.random.default_rng(3), 200_000), q))
    assert sampled == pytest.approx(data, rel=0.10)


def test_one_lognormal_misses_the_median_the_mixture_gets(shared_traces: Path) -> None:
    s = _seconds(shared_traces)
    one = fit_lognormal_mixture(s, components=1)
    assert abs(one.quantile(0.5) / float(np.median(s)) - 1) > 0.3  # why the mixture exists


def test_sampling_is_seeded_and_positive() -> None:
    a = DEFAULT_COLD_START_MIXTURE.sample(np.random.default_rng(1), 1000)
    b = DEFAULT_COLD_START_MIXTURE.sample(np.random.default_rng(1), 1000)
    np.testing.assert_array_equal(a, b)
    assert (a > 0).all()


def test_bad_mixtures_are_input_errors() -> None:
    with pytest.raises(InputError, match="sum to 1"):
        LognormalMixture(weights=(0.5, 0.6), mu=(1.0, 2.0), sigma=(0.1, 0.1))
    with pytest.raises(InputError, match="equal"):
        LognormalMixture(weights=(1.0,), mu=(1.0, 2.0), sigma=(0.1,))
    with pytest.raises(InputError, match="too few"):
        fit_lognormal_mixture(np.array([1.0, 2.0]), components=3)

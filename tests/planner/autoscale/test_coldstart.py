"""Cold starts: the loop defaults to the simulator's fitted mixture; the lognormal stays an option."""

from __future__ import annotations

import numpy as np
import pytest

from planner.autoscale.coldstart import (
    DEFAULT_COLD_START,
    FITTED_COLD_START,
    ColdStartDistribution,
    ColdStartShape,
    cold_start_for,
    rescaled,
)
from planner.autoscale.compare import CompareConfig
from planner.autoscale.loop import LoopConfig
from planner.sim.coldstart import DEFAULT_COLD_START_MIXTURE, LognormalMixture
from traces.errors import InputError


def test_loop_and_comparison_default_to_the_simulators_mixture() -> None:
    assert LoopConfig().cold_start is DEFAULT_COLD_START_MIXTURE
    assert CompareConfig().cold_start is DEFAULT_COLD_START_MIXTURE
    assert cold_start_for(ColdStartShape.MIXTURE) is FITTED_COLD_START
    assert cold_start_for(ColdStartShape.LOGNORMAL) is DEFAULT_COLD_START


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

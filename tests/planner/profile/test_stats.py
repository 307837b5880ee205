"""Statistics helpers: medians, rotation counts, rates."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from planner.profile import stats


@given(st.lists(st.floats(min_value=1e-9, max_value=1.0), min_size=1, max_size=50))
def test_median_lies_between_min_and_max(values: list[float]) -> None:
    med = stats.median(values)
    assert min(values) <= med <= max(values)


def test_median_ignores_one_outlier() -> None:
    assert stats.median([1.0, 1.0, 1.0, 1.0, 1000.0]) == 1.0
    assert math.isnan(stats.median([]))


@given(st.integers(min_value=1, max_value=1 << 34), st.integers(min_value=1 << 20, max_value=1 << 27))
def test_rotation_spans_three_l2s_within_the_cap(nbytes: int, l2: int) -> None:
    n = stats.rotation_count(nbytes, l2, cap=64)
    assert 2 <= n <= 64
    if n < 64:
        assert n * nbytes >= 3 * l2


@given(st.floats(min_value=1e-7, max_value=10.0))
def test_repeats_stay_within_bounds(first: float) -> None:
    reps = stats.repeats_for(first, target_s=0.03, lo=5, hi=60)
    assert 5 <= reps <= 60


def test_rates() -> None:
    assert stats.gemm_tflops(8192, 8192, 8192, 1e-3) == 2 * 8192**3 / 1e-3 / 1e12
    assert stats.copy_gbps(10**9, 0.5) == 4.0
    assert math.isnan(stats.gemm_tflops(1, 1, 1, 0.0))

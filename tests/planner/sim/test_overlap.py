"""Per-bin interval overlap (replica lifetimes into the time series) equals its definition."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.sim.cluster_result import overlap as _overlap

_intervals = st.lists(st.tuples(st.floats(0, 100), st.floats(-5, 60), st.booleans()), max_size=25)


@settings(max_examples=200, deadline=None)
@given(_intervals, st.floats(0.5, 10.0), st.floats(0.1, 12.0))
def test_overlap_matches_the_clipped_sum(rows: list[tuple[float, float, bool]], step: float,
                                         width: float) -> None:
    a = np.array([r[0] for r in rows], dtype=np.float64)
    b = np.array([np.inf if r[2] else r[0] + r[1] for r in rows], dtype=np.float64)  # inf: still running
    t0 = np.arange(0.0, 130.0, step)
    t1 = t0 + width
    want = (np.clip(np.minimum(b[None, :], t1[:, None]) - np.maximum(a[None, :], t0[:, None]), 0.0, None)
            .sum(axis=1) if rows else np.zeros(t0.size))
    np.testing.assert_allclose(_overlap(a, b, t0, t1), want, atol=1e-7)

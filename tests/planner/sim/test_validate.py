"""The simulator against the real engine's validation data (transformers continuous batching, H100)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.catalog import load_catalog
from planner.sim.validate import THRESHOLDS, validate_replay

FOLDER = Path(__file__).resolve().parents[3] / "planner" / "perf" / "data" / "validation" / "H100-SXM"

# The shipped data: two device calls merged (planner/profile/merge_engine.py), 21-164 requests per level;
# fitted on levels 0.25, 0.75 and 1.5, checked on 0.5 and 1.0 (the bounds: 10 % p50, 20 % p99).


@pytest.mark.slow
@pytest.mark.skipif(not (FOLDER / "engine_requests.parquet").is_file(), reason="no validation data shipped")
def test_replay_matches_the_engine_on_held_out_levels() -> None:
    cat = load_catalog()
    rep = validate_replay(FOLDER, model=cat.model("Llama-3.1-8B"), gpu=cat.gpu("H100-SXM"))
    checks = [lv for lv in rep.levels if lv.split == "check"]
    fits = [lv for lv in rep.levels if lv.split == "fit"]
    assert len(checks) >= 2 and len(fits) >= 3
    assert all(lv.requests >= 50 for lv in checks)  # enough requests for a p99 that is not one outlier
    assert rep.terms[0] > 0.01  # this engine costs tens of ms per step (no CUDA graphs)
    for lv in checks:
        for metric, bound in THRESHOLDS.items():
            assert abs(lv.errors[metric]) <= bound, (lv.level, metric, lv.errors[metric])
    assert rep.passed

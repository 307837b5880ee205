"""The simulator against the real engine's validation data (transformers continuous batching, H100)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.catalog import load_catalog
from planner.sim.validate import THRESHOLDS, validate_replay

FOLDER = Path(__file__).resolve().parents[3] / "planner" / "perf" / "data" / "validation" / "H100-SXM"

# What the replay reaches on the held-out load levels today (relative error, see the module docstring).
# The issue asks for 10 % (p50) / 20 % (p99); TPOT p50 and p99 and TTFT p50 come close, TTFT p99 does
# not: the levels hold 24-66 requests, so their p99 is one or two requests (the measured level-0.25
# p99 is a single 0.8 s outlier among 0.1-0.3 s TTFTs).
REACHED = {"ttft_p50": 0.25, "tpot_p50": 0.20, "ttft_p99": 0.60, "tpot_p99": 0.25}


@pytest.mark.slow
@pytest.mark.skipif(not (FOLDER / "engine_requests.parquet").is_file(), reason="no validation data shipped")
def test_replay_matches_the_engine_on_held_out_levels() -> None:
    cat = load_catalog()
    rep = validate_replay(FOLDER, model=cat.model("Llama-3.1-8B"), gpu=cat.gpu("H100-SXM"))
    checks = [lv for lv in rep.levels if lv.split == "check"]
    fits = [lv for lv in rep.levels if lv.split == "fit"]
    assert len(checks) >= 3 and len(fits) >= 3
    assert all(t > 0 for t in rep.terms[:2])  # the engine costs time per step and per sequence
    for lv in checks:
        for metric, bound in REACHED.items():
            assert abs(lv.errors[metric]) <= bound, (lv.level, metric, lv.errors[metric])
    # the summary is honest about the thresholds
    assert rep.passed == all(abs(lv.errors[m]) <= THRESHOLDS[m] for lv in checks for m in THRESHOLDS)

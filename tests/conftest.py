"""Shared fixtures: where the real public traces live (``../shared/data/traces``), skipping when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "data" / "traces"


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The shared real-trace folder; tests using it skip with a reason on a fresh user clone."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not found at {SHARED_TRACES} (they live in ../shared, outside the repo)")
    return SHARED_TRACES

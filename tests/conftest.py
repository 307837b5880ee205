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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the numba engines once, in this process, before any test starts subprocesses or Ray workers.

    With an empty on-disk cache (a fresh clone, as in CI) several processes would otherwise compile and
    write the same cache entries at once; numba's cache is not built for that (its index is read, changed
    and rewritten). A tiny replay and a tiny closed loop (the cluster path) fill the cache first, so later
    processes only read.
    """
    from planner.autoscale.closed_loop import LoopConfig, run_policy, static_policy
    from planner.catalog import load_catalog
    from planner.perf import build_replica_perf
    from planner.sim import replay
    from planner.sim.config import SimConfig
    from planner.sim.synth import azure_conv_like

    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    trace = azure_conv_like(200, rate_rps=5.0, seed=1)
    replay(trace, perf, config=SimConfig(replicas=2))
    run_policy(trace, perf, static_policy(2), config=LoopConfig(initial_replicas=2, max_replicas=2))

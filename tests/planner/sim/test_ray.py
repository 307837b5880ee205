"""Shards as Ray tasks (one local Ray start; marked slow because Ray start-up takes a while)."""

from __future__ import annotations

import pytest

from planner.sim import RouterName, SimConfig, replay
from planner.sim.testing import LinearPerf, poisson_trace


@pytest.mark.slow
def test_ray_shards_equal_in_process_shards() -> None:
    pytest.importorskip("ray")
    from planner.sim.ray_runner import ray_map_shards

    trace = poisson_trace(3000, 60.0, 9)
    perf = LinearPerf()
    for router in (RouterName.LEAST_OUTSTANDING, RouterName.HASH):
        cfg = SimConfig(replicas=4, shards=2, router=router)
        local = replay(trace, perf, config=cfg)
        on_ray = replay(trace, perf, config=cfg, map_shards=ray_map_shards(num_cpus=2))
        assert local.requests.equals(on_ray.requests)
    one = replay(trace, perf, config=SimConfig(replicas=4, router=RouterName.HASH))
    assert one.requests.equals(on_ray.requests)  # hash routing: the shard count does not matter

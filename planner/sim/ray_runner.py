"""Run a replay's shards (or a sweep's scenarios) as Ray tasks.

Shards are stateless ``@ray.remote`` tasks (``max_retries``: a shard whose worker dies is simply run
again; being a pure function of its inputs, the re-run gives the same answer). Results do not depend on
how many workers run the shards, only on ``SimConfig.shards`` (and, for the ``hash`` router, not even on
that). The embedded default is a small local Ray without dashboard or log forwarding;
``address`` connects to an existing cluster instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from planner.catalog.schema import GPUSpec
from planner.perf.api import ReplicaPerf
from planner.sim.config import SimConfig
from planner.sim.replay import EngineSetup, MapShards, ShardOutput, ShardTask, replay, simulate_shard
from planner.sim.result import SimResult
from traces.schema import RequestTrace

MAX_RETRIES = 3
"""Times a shard task is re-run after its worker dies."""


def ensure_ray(*, address: str | None = None, num_cpus: int | None = None) -> Any:
    """Start (or connect to) Ray once per process and return the ``ray`` module."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or 2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    return ray


def ray_map_shards(*, address: str | None = None, num_cpus: int | None = None,
                   on_done: Callable[[int, int], None] | None = None) -> MapShards:
    """A ``map_shards`` for :func:`planner.sim.replay.replay` that runs each shard as a Ray task.

    Args:
        address: Ray cluster address; None starts a local Ray with ``num_cpus`` workers.
        num_cpus: local workers (default 2).
        on_done: called with ``(shards finished, shards)`` as results come back (progress bar).
    """

    def run(tasks: Sequence[ShardTask], setup: EngineSetup, config: SimConfig) -> list[ShardOutput]:
        ray = ensure_ray(address=address, num_cpus=num_cpus)
        remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(simulate_shard)
        setup_ref = ray.put(setup)
        pending = [remote.remote(t, setup_ref, config) for t in tasks]
        done: list[ShardOutput] = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done.extend(ray.get(ready))
            if on_done is not None:
                on_done(len(done), len(tasks))
        return sorted(done, key=lambda o: o.index)

    return run


def _replay_task(trace: RequestTrace, perf: ReplicaPerf, config: SimConfig, gpu: GPUSpec | None) -> SimResult:
    return replay(trace, perf, config=config, gpu=gpu)


def ray_sweep(trace: RequestTrace, scenarios: Sequence[tuple[ReplicaPerf, SimConfig]], *,
              gpu: GPUSpec | None = None, address: str | None = None,
              num_cpus: int | None = None) -> list[SimResult]:
    """Replay ``trace`` once per ``(perf, config)`` scenario, each a Ray task; results in input order."""
    ray = ensure_ray(address=address, num_cpus=num_cpus)
    remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_replay_task)
    trace_ref = ray.put(trace)
    results: list[SimResult] = ray.get([remote.remote(trace_ref, p, c, gpu) for p, c in scenarios])
    return results

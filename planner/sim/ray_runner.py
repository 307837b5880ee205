"""Run a replay's shards (or a sweep's scenarios) as Ray tasks, on this machine or on a cluster.

Shards are stateless ``@ray.remote`` tasks (:func:`planner.ray_runtime.map_tasks`): a shard whose worker
or node dies is run again, by Ray (``max_retries``) and, if Ray gives up, by the driver. Being a pure
function of its inputs (the routing hashes and seeds are computed on the driver before the shards are cut),
the re-run gives the same answer wherever it runs. Results do not depend on how many workers or nodes run
the shards, only on ``SimConfig.shards`` (and, for the ``hash`` router, not even on that). The embedded
default is a small local Ray without dashboard or log forwarding; ``address`` joins an existing cluster
instead (``host:port``, ``ray://host:10001``, ``auto``: see :mod:`planner.ray_runtime`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from planner.catalog.schema import GPUSpec
from planner.perf.api import ReplicaPerf
from planner.ray_runtime import MAX_RETRIES, init_ray, map_tasks
from planner.sim.config import SimConfig
from planner.sim.replay import EngineSetup, MapShards, ShardOutput, ShardTask, replay, simulate_shard
from planner.sim.result import SimResult
from traces.schema import RequestTrace

__all__ = ["MAX_RETRIES", "ensure_ray", "ray_map_shards", "ray_sweep"]

LOCAL_CPUS = 2
"""Workers of the embedded local Ray when none is given."""


def ensure_ray(*, address: str | None = None, num_cpus: int | None = None) -> Any:
    """Start (or join) Ray once per process and return the ``ray`` module; it stays up until exit.

    Args:
        address: cluster address (see :mod:`planner.ray_runtime`); None starts a local Ray (or joins
            ``RAY_ADDRESS`` when set).
        num_cpus: local workers (default 2); ignored when joining a cluster.

    Raises:
        InputError: bad or unreachable address.
    """
    import ray

    if not ray.is_initialized():
        init_ray(address, num_cpus=num_cpus or LOCAL_CPUS)
    return ray


def ray_map_shards(*, address: str | None = None, num_cpus: int | None = None,
                   on_done: Callable[[int, int], None] | None = None) -> MapShards:
    """A ``map_shards`` for :func:`planner.sim.replay.replay` that runs each shard as a Ray task.

    Args:
        address: Ray cluster address; None starts a local Ray with ``num_cpus`` workers.
        num_cpus: local workers (default 2).
        on_done: called with ``(shards finished, shards)`` as results come back (progress bar).

    >>> callable(ray_map_shards(address="10.0.0.5:6379"))  # nothing is started until it is called
    True
    """

    def run(tasks: Sequence[ShardTask], setup: EngineSetup, config: SimConfig) -> list[ShardOutput]:
        ray = ensure_ray(address=address, num_cpus=num_cpus)
        setup_ref = ray.put(setup)
        done = map_tasks(simulate_shard, [(t, setup_ref, config) for t in tasks], on_done=on_done)
        return sorted(done, key=lambda o: o.index)

    return run


def _replay_task(trace: RequestTrace, perf: ReplicaPerf, config: SimConfig, gpu: GPUSpec | None) -> SimResult:
    return replay(trace, perf, config=config, gpu=gpu)


def ray_sweep(trace: RequestTrace, scenarios: Sequence[tuple[ReplicaPerf, SimConfig]], *,
              gpu: GPUSpec | None = None, address: str | None = None,
              num_cpus: int | None = None) -> list[SimResult]:
    """Replay ``trace`` once per ``(perf, config)`` scenario, each a Ray task; results in input order.

    Each scenario carries its own seed in its ``SimConfig``, so a scenario re-run after a lost node
    returns the same result.
    """
    ray = ensure_ray(address=address, num_cpus=num_cpus)
    trace_ref = ray.put(trace)
    return map_tasks(_replay_task, [(trace_ref, p, c, gpu) for p, c in scenarios])

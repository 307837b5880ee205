"""Run the planner's sweeps as Ray tasks: one scoring task per GPU type, one replay task per window slice.

Local embedded Ray by default, a cluster by address (:func:`planner.ray_runtime.ray_session`); the core
(:func:`planner.plan.sizing.plan_fleet`) is the same code with in-process maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from planner.catalog import GPUSpec, ModelSpec
from planner.plan.sizing import PlanReport, PlanRequest, plan_fleet
from planner.plan.verify import ReplayOut, ReplayTask, run_replay
from planner.ray_runtime import ray_session
from solvers.capacity import LengthMix, ScoringOptions, score_gpu
from traces.schema import RequestTrace


def score_on_ray(model: ModelSpec, gpus: Sequence[GPUSpec], mix: LengthMix,
                 options: ScoringOptions) -> list[pl.DataFrame]:
    """One stateless Ray task per GPU type (call inside a Ray session)."""
    import ray

    task = ray.remote(score_gpu)
    return list(ray.get([task.remote(model, g, mix, options) for g in gpus]))


def replay_on_ray(tasks: Sequence[ReplayTask]) -> list[ReplayOut]:
    """One stateless Ray task per replay slice (call inside a Ray session)."""
    import ray

    task = ray.remote(run_replay)
    return list(ray.get([task.remote(t) for t in tasks]))


def plan_on_ray(trace: RequestTrace, request: PlanRequest, *, address: str | None = None) -> PlanReport:
    """Same result as :func:`planner.plan.sizing.plan_fleet`, with the sweeps on Ray."""
    with ray_session(address):
        return plan_fleet(trace, request, score_map=score_on_ray, replay_map=replay_on_ray)

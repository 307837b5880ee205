"""Run the planner's sweeps as Ray tasks: one scoring task per GPU type, one replay task per window slice.

Local embedded Ray by default, a cluster by address (:func:`planner.ray_runtime.ray_session`: ``host:port``,
``ray://host:10001`` or ``auto``); the core (:func:`planner.plan.sizing.plan_fleet`) is the same code with
in-process maps. Every task is a pure function of its arguments (the replay seed travels in the task), so
a task re-run after its node died (:func:`planner.ray_runtime.map_tasks`) gives the same answer and the
report does not depend on which node ran what.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from planner.catalog import GPUSpec, ModelSpec
from planner.plan.sizing import PlanReport, PlanRequest, plan_fleet
from planner.plan.verify import ReplayOut, ReplayTask, run_replay
from planner.ray_runtime import map_tasks, ray_session
from solvers.capacity import LengthMix, ScoringOptions, score_gpu
from traces.schema import RequestTrace


def score_on_ray(model: ModelSpec, gpus: Sequence[GPUSpec], mix: LengthMix,
                 options: ScoringOptions) -> list[pl.DataFrame]:
    """One stateless Ray task per GPU type (call inside a Ray session)."""
    return map_tasks(score_gpu, [(model, g, mix, options) for g in gpus])


def replay_on_ray(tasks: Sequence[ReplayTask]) -> list[ReplayOut]:
    """One stateless Ray task per replay slice (call inside a Ray session)."""
    return map_tasks(run_replay, [(t,) for t in tasks])


def plan_on_ray(trace: RequestTrace, request: PlanRequest, *, address: str | None = None) -> PlanReport:
    """Same result as :func:`planner.plan.sizing.plan_fleet`, with the sweeps on Ray.

    Args:
        trace: the request trace.
        request: what to plan.
        address: Ray cluster (see :mod:`planner.ray_runtime`); None: ``RAY_ADDRESS`` or a local Ray.

    Raises:
        InputError: bad trace or request, or a bad or unreachable Ray address.
    """
    with ray_session(address):
        return plan_fleet(trace, request, score_map=score_on_ray, replay_map=replay_on_ray)

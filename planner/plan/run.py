"""Run the planner's candidate sweep as Ray tasks (local embedded Ray by default, a cluster by address)."""

from __future__ import annotations

from planner.plan.sizing import Candidate, PlanProblem, PlanResult, choose, evaluate_gpu
from planner.ray_runtime import ray_session


def solve_on_ray(problem: PlanProblem, *, address: str | None = None) -> PlanResult:
    """Same result as :func:`planner.plan.sizing.solve`, one Ray task per GPU type."""
    import ray

    with ray_session(address):
        task = ray.remote(evaluate_gpu)
        refs = [task.remote(problem, g) for g in problem.gpus]
        per_gpu: list[list[Candidate]] = ray.get(refs)
    cands = [c for group in per_gpu for c in group]
    return PlanResult(
        best=choose(cands),
        candidates=tuple(cands),
        demand=problem.demand,
        hours=problem.demand.duration_s / 3600.0,
    )

"""Capacity planning: from a trace, a model and SLOs to a fleet (GPU type, layout, replicas, cost)."""

from planner.plan.sizing import (
    SLO,
    Candidate,
    Demand,
    PlanProblem,
    PlanResult,
    demand_from_trace,
    evaluate_candidate,
    solve,
)

__all__ = [
    "SLO",
    "Candidate",
    "Demand",
    "PlanProblem",
    "PlanResult",
    "demand_from_trace",
    "evaluate_candidate",
    "solve",
]

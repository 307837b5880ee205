"""Capacity planning: from a trace, a model and SLOs to a fleet (GPU type, layout, replicas per window, cost).

The search and the optimisation live in :mod:`solvers.capacity`; this package wires them to a trace,
verifies the plan by replay and runs the sweeps on Ray.
"""

from planner.plan.sizing import CostLine, PlanReport, PlanRequest, build_problem, plan_fleet, window_length
from planner.plan.verify import Verification

__all__ = ["CostLine", "PlanReport", "PlanRequest", "Verification", "build_problem", "plan_fleet",
           "window_length"]

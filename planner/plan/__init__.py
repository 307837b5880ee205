"""Capacity planning: from a trace, a model and SLOs to a fleet (GPU type, layout, replicas per window, cost).

The search and the optimisation live in :mod:`solvers.capacity`; this package wires them to a trace,
verifies the plan by replay and runs the sweeps on Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from planner.plan.sizing import (
        CostLine,
        PlanReport,
        PlanRequest,
        build_problem,
        plan_fleet,
        window_length,
    )
    from planner.plan.verify import Verification

lazy_exports(__name__, {
    "CostLine": "planner.plan.sizing",
    "PlanReport": "planner.plan.sizing",
    "PlanRequest": "planner.plan.sizing",
    "build_problem": "planner.plan.sizing",
    "plan_fleet": "planner.plan.sizing",
    "window_length": "planner.plan.sizing",
    "Verification": "planner.plan.verify",
})

__all__ = ["CostLine", "PlanReport", "PlanRequest", "Verification", "build_problem", "plan_fleet",
           "window_length"]

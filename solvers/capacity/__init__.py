"""Configuration and fleet sizing: candidates scored under the SLO, a CP-SAT plan per time window.

Pipeline: :func:`length_mix` and :func:`demand_windows` read the trace; :func:`score_gpu` /
:func:`score_candidates` build the long candidate table (GPU x TP x PP x EP x batch caps x role) with
goodput per replica from the queueing estimate; :func:`select_configs` prunes it; :func:`solve` chooses
configurations and replicas per window under inventory, power and P/D limits.

>>> from solvers.capacity import CapacityProblem, Config, Role, Window, solve
>>> c = Config("a", "H100-SXM", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=2.0,
...            power_w=600)
>>> solve(CapacityProblem(configs=(c,), windows=(Window(0.0, 1800.0, 15.0),))).objective_usd
2.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from solvers.capacity.demand import LengthMix, demand_windows, length_mix
    from solvers.capacity.exhaustive import exhaustive
    from solvers.capacity.problem import (
        SLO,
        Allocation,
        Binding,
        CapacityPlan,
        CapacityProblem,
        Config,
        Disaggregation,
        PowerBasis,
        Role,
        SolveParams,
        Window,
        started,
    )
    from solvers.capacity.scoring import (
        SCORE_SCHEMA,
        OperatingPoint,
        Prediction,
        ScoringOptions,
        candidate_count,
        goodput,
        predict,
        score_candidates,
        score_gpu,
        select_configs,
    )
    from solvers.capacity.solve import bindings, explain, solve
    from solvers.status import SolveStatus

lazy_exports(__name__, {
    "LengthMix": "solvers.capacity.demand",
    "demand_windows": "solvers.capacity.demand",
    "length_mix": "solvers.capacity.demand",
    "exhaustive": "solvers.capacity.exhaustive",
    "Allocation": "solvers.capacity.problem",
    "Binding": "solvers.capacity.problem",
    "CapacityPlan": "solvers.capacity.problem",
    "CapacityProblem": "solvers.capacity.problem",
    "Config": "solvers.capacity.problem",
    "Disaggregation": "solvers.capacity.problem",
    "Role": "solvers.capacity.problem",
    "SolveParams": "solvers.capacity.problem",
    "Window": "solvers.capacity.problem",
    "started": "solvers.capacity.problem",
    "SCORE_SCHEMA": "solvers.capacity.scoring",
    "SLO": "solvers.capacity.problem",
    "OperatingPoint": "solvers.capacity.scoring",
    "PowerBasis": "solvers.capacity.problem",
    "Prediction": "solvers.capacity.scoring",
    "ScoringOptions": "solvers.capacity.scoring",
    "candidate_count": "solvers.capacity.scoring",
    "goodput": "solvers.capacity.scoring",
    "predict": "solvers.capacity.scoring",
    "score_candidates": "solvers.capacity.scoring",
    "score_gpu": "solvers.capacity.scoring",
    "select_configs": "solvers.capacity.scoring",
    "bindings": "solvers.capacity.solve",
    "explain": "solvers.capacity.solve",
    "solve": "solvers.capacity.solve",
    "SolveStatus": "solvers.status",
})

__all__ = [
    "SCORE_SCHEMA",
    "SLO",
    "Allocation",
    "Binding",
    "CapacityPlan",
    "CapacityProblem",
    "Config",
    "Disaggregation",
    "LengthMix",
    "OperatingPoint",
    "PowerBasis",
    "Prediction",
    "Role",
    "ScoringOptions",
    "SolveParams",
    "SolveStatus",
    "Window",
    "bindings",
    "candidate_count",
    "demand_windows",
    "exhaustive",
    "explain",
    "goodput",
    "length_mix",
    "predict",
    "score_candidates",
    "score_gpu",
    "select_configs",
    "solve",
    "started",
]

"""MoE expert placement: balance expert load over GPUs with redundant replicas (beats DeepSeek's EPLB).

>>> import numpy as np
>>> from solvers.experts import Cluster, PlacementProblem, SolveParams, solve, eplb_placement
>>> from solvers.experts import MoEShape, synthetic_loads
>>> w = synthetic_loads(MoEShape(layers=2, experts=32, groups=4), sigma=1.0, seed=0)[0]
>>> cluster = Cluster(num_gpus=8, gpus_per_node=4, num_slots=40)
>>> ours = solve(PlacementProblem(loads=w, cluster=cluster), params=SolveParams(processes=1))
>>> greedy = eplb_placement(w, cluster, hierarchical=False)
>>> bool(ours.imbalance <= greedy.layer_imbalance(w).mean())
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from solvers.experts.eplb_greedy import eplb_placement, rebalance_experts
    from solvers.experts.groups import assign_groups
    from solvers.experts.loads import (
        MoEShape,
        Skew,
        moe_shape_of,
        read_loads,
        synthetic_loads,
        validate_loads,
    )
    from solvers.experts.placement import Cluster, EplbPlan, Placement, load_plan, make_placement, save_plan
    from solvers.experts.problem import (
        Balance,
        LayerReport,
        Locality,
        PlacementProblem,
        PlacementSolution,
        SolveParams,
    )
    from solvers.experts.solve import solve
    from solvers.status import SolveStatus

lazy_exports(__name__, {
    "eplb_placement": "solvers.experts.eplb_greedy",
    "rebalance_experts": "solvers.experts.eplb_greedy",
    "assign_groups": "solvers.experts.groups",
    "MoEShape": "solvers.experts.loads",
    "Skew": "solvers.experts.loads",
    "moe_shape_of": "solvers.experts.loads",
    "read_loads": "solvers.experts.loads",
    "synthetic_loads": "solvers.experts.loads",
    "validate_loads": "solvers.experts.loads",
    "Cluster": "solvers.experts.placement",
    "EplbPlan": "solvers.experts.placement",
    "Placement": "solvers.experts.placement",
    "load_plan": "solvers.experts.placement",
    "make_placement": "solvers.experts.placement",
    "save_plan": "solvers.experts.placement",
    "Balance": "solvers.experts.problem",
    "LayerReport": "solvers.experts.problem",
    "Locality": "solvers.experts.problem",
    "PlacementProblem": "solvers.experts.problem",
    "PlacementSolution": "solvers.experts.problem",
    "SolveParams": "solvers.experts.problem",
    "solve": "solvers.experts.solve",
    "SolveStatus": "solvers.status",
})

__all__ = [
    "Balance",
    "Cluster",
    "EplbPlan",
    "LayerReport",
    "Locality",
    "MoEShape",
    "Placement",
    "PlacementProblem",
    "PlacementSolution",
    "Skew",
    "SolveParams",
    "SolveStatus",
    "assign_groups",
    "eplb_placement",
    "load_plan",
    "make_placement",
    "moe_shape_of",
    "read_loads",
    "rebalance_experts",
    "save_plan",
    "solve",
    "synthetic_loads",
    "validate_loads",
]

"""``solve(problem, params) -> solution``: expert placement for every layer, in parallel.

Per layer (layers are independent, so they run in ``params.processes`` worker processes):

1. **Locality.** Global: any GPU. Node-local (``NODE``/``HOME``): expert groups are assigned to nodes
   by a tiny exact CP-SAT model (equal groups per node, minimise the busiest node); ``NODE`` keeps
   every replica on its group's node, ``HOME`` at least one.
2. **Replica counts** by EPLB's ``argmax w/c`` greedy, capped at one replica per GPU (per node's GPUs
   when node-local), which minimises the heaviest replica.
3. **Packing.** A no-duplicate longest-first packing, then swap local search on the busiest GPU; if the
   result is not within ``gap_tolerance`` of the lower bound, CP-SAT (:mod:`solvers.experts.cpsat`) with
   that plan as hint. The better plan wins, so CP-SAT is never worse than the heuristic.
4. **Incremental** (``problem.current`` given): start from the current plan, adapt replica counts, swap
   replicas preferring those that copy fewest experts until the layer reaches the balance target, then
   let CP-SAT minimise the copies under that target. A layer whose target is out of reach falls back to
   a fresh plan. This is the per-layer statement (``Balance.LAYER``).
5. **Aggregate incremental** (``Balance.AGGREGATE``, the default): the re-plan must keep
   ``sum_l max_l`` (the step time) within the reference plan's, not every layer. Each layer builds its
   trade-off curve (unchanged; fewest copies for a ladder of targets, the per-layer target among them),
   an exact knapsack over layers (:mod:`solvers.experts.aggregate`) takes one plan per layer, and
   CP-SAT cuts the chosen plans' copies with the time left. Node-local layers can then keep their
   groups where they are (a group that changes node copies all its replicas) while others balance
   better; the forced copies of *any* plan within the budget are bounded by the same knapsack over
   each layer's group-move frontier (:func:`~solvers.experts.groups.move_frontier`).

The lower bound per layer is ``max(total / GPUs, heaviest replica under the greedy counts, busiest node
/ its GPUs)``; the node term uses the exact group assignment, so for node-local it is a bound given
that every replica stays on its group's node (``NODE``).

Work, not wall time: every budget is deterministic, so the same problem and parameters give the same
plan on any machine and under any load (the MPC does the same). Each layer gets an equal share of
``max_time_in_seconds`` as CP-SAT *deterministic* time (:func:`~solvers.experts.cpsat.solve_layer`); the
heuristics run to fixed iteration caps (:data:`~solvers.experts.layer.COUNT_TRIALS`, the whole of
:data:`~solvers.experts.replan.LADDER`). Wall time is only measured and reported; a loaded machine takes
longer, it does not answer differently.

Modules: :mod:`~solvers.experts.layer` (one layer's search), :mod:`~solvers.experts.replan` (aggregate
re-plans), :mod:`~solvers.experts.pool` (layers in parallel processes).
"""

from __future__ import annotations

import time

import numpy as np

from solvers.experts.eplb_greedy import eplb_placement
from solvers.experts.heuristic import improve
from solvers.experts.layer import (
    STATUS_RANK,
    LayerTask,
    solve_task,
)
from solvers.experts.placement import placement_from_matrices
from solvers.experts.pool import mapper
from solvers.experts.problem import (
    Balance,
    Locality,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
)
from solvers.experts.replan import (
    solve_aggregate,
)

_RESERVE_S = 0.8
"""Budget kept aside for process start and result assembly when sharing it among layers."""
_GENERATION_SHARE = 0.85
"""Aggregate re-plans: share of the time budget spent building every layer's candidate plans; the rest
goes to CP-SAT cutting the copies of the chosen ones."""


def solve(problem: PlacementProblem, *, params: SolveParams | None = None) -> PlacementSolution:
    """Place every layer's experts and replicas; see the module docstring for the method.

    Args:
        problem: loads, cluster, locality, optional current placement.
        params: time budget, workers, seed, processes.

    Returns:
        The plan with its balance, moves, status, bound and wall time.

    >>> from solvers.experts.loads import MoEShape, synthetic_loads
    >>> from solvers.experts.placement import Cluster
    >>> w = synthetic_loads(MoEShape(layers=2, experts=16), sigma=1.0, seed=3)[0]
    >>> sol = solve(PlacementProblem(loads=w, cluster=Cluster(4, 4, 20)), params=SolveParams(processes=1))
    >>> sol.imbalance < 1.05, sol.placement.duplicates()
    (True, 0)
    """
    params = params or SolveParams()
    started = time.perf_counter()
    loads = np.asarray(problem.loads, dtype=np.float64)
    layers = loads.shape[0]
    targets: list[float | None] = [None] * layers
    if problem.current is not None:
        if problem.max_imbalance is not None:
            targets = [problem.max_imbalance] * layers
        else:
            fresh = eplb_placement(
                loads,
                problem.cluster,
                num_groups=problem.num_groups,
                hierarchical=problem.locality is Locality.NODE,
            )
            targets = [float(v) for v in fresh.layer_imbalance(loads)]
    processes = max(1, min(params.processes, layers))
    usable = max(params.max_time_in_seconds - _RESERVE_S, 0.1)
    aggregate = problem.current is not None and problem.balance is Balance.AGGREGATE
    share = _GENERATION_SHARE if aggregate else 1.0
    _warm_up()
    left = usable * share
    tasks = [
        LayerTask(
            w=loads[i],
            cluster=problem.cluster,
            num_groups=problem.num_groups,
            locality=problem.locality,
            x0=None if problem.current is None else problem.current.expert_gpu_matrix(i) > 0,
            target_imbalance=targets[i],
            time_limit_s=left * processes / layers,
            params=params,
        )
        for i in range(layers)
    ]
    with mapper(processes) as run:
        if aggregate:
            assert problem.current is not None
            means = loads.sum(axis=1) / problem.cluster.num_gpus
            if problem.max_imbalance is not None:
                budget = problem.max_imbalance * float(means.sum())
            else:
                budget = float(np.dot([t or 1.0 for t in targets], means))
            return solve_aggregate(
                tasks, budget, problem.current, run, polish_s=usable * (1 - share), started=started
            )
        results = run(solve_task, tasks)
    placement = placement_from_matrices([x for x, _ in results], problem.cluster, previous=problem.current)
    reports = tuple(r for _, r in results)
    imb = placement.layer_imbalance(loads)
    moves = None if problem.current is None else int(placement.moves_from(problem.current).sum())
    status = max((r.status for r in reports), key=lambda s: STATUS_RANK[s])
    bound = float(np.mean([r.lower_bound for r in reports]))
    floors = [r.min_moves for r in reports]
    return PlacementSolution(
        placement=placement,
        status=status,
        objective=float(moves) if moves is not None else float(imb.mean()),
        bound=None if moves is not None else bound,
        imbalance=float(imb.mean()),
        worst_imbalance=float(imb.max()),
        moves=moves,
        wall_s=time.perf_counter() - started,
        layers=reports,
        remote_share=float(np.mean([r.remote_share for r in reports])),
        imbalance_bound=bound,
        moves_bound=None if moves is None or None in floors else sum(f for f in floors if f is not None),
        aggregate_imbalance=placement.aggregate_imbalance(loads),
        balance=None if problem.current is None else Balance.LAYER,
    )


def _warm_up() -> None:
    """Compile (or load from numba's cache) the swap kernel once, before workers fork."""
    improve(np.eye(2, dtype=bool), np.ones(2), np.ones(2, dtype=np.int64), np.ones((2, 2), dtype=bool))




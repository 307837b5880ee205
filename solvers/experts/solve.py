"""``solve(problem, params) -> solution``: expert placement for every layer, in parallel.

Per layer (layers are independent, so they run in ``params.processes`` worker processes):

1. **Locality.** Global: any GPU. Node-local: expert groups are assigned to nodes by a tiny exact
   CP-SAT model (equal groups per node, minimise the busiest node), each expert may only use its node.
2. **Replica counts** by EPLB's ``argmax w/c`` greedy, capped at one replica per GPU (per node's GPUs
   when node-local), which minimises the heaviest replica.
3. **Packing.** A no-duplicate longest-first packing, then swap local search on the busiest GPU; if the
   result is not within ``gap_tolerance`` of the lower bound, CP-SAT (:mod:`solvers.experts.cpsat`) with
   that plan as hint. The better plan wins, so CP-SAT is never worse than the heuristic.
4. **Incremental** (``problem.current`` given): start from the current plan, adapt replica counts, swap
   replicas preferring those that copy fewest experts until the layer reaches the balance target, then
   let CP-SAT minimise the copies under that target. A layer whose target is out of reach falls back to
   a fresh plan.

The lower bound per layer is ``max(total / GPUs, heaviest replica under the greedy counts, busiest node
/ its GPUs)``; the node term uses the exact group assignment, so for node-local it is a bound given
that every replica stays on its group's node.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model

from solvers.experts import cpsat
from solvers.experts.eplb_greedy import eplb_placement
from solvers.experts.heuristic import adapt_counts, capped_counts, improve, lpt_pack
from solvers.experts.placement import Cluster, placement_from_matrices
from solvers.experts.problem import (
    LayerReport,
    Locality,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
    SolveStatus,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_STATUS_RANK = {s: i for i, s in enumerate((SolveStatus.OPTIMAL, SolveStatus.FEASIBLE, SolveStatus.UNKNOWN,
                                            SolveStatus.INFEASIBLE, SolveStatus.MODEL_INVALID))}
_STARTUP_S = 0.6
"""Wall time kept aside for process start and result assembly when sharing the budget among layers."""


@dataclass(frozen=True, eq=False)
class _LayerTask:
    w: FloatArray
    cluster: Cluster
    num_groups: int
    locality: Locality
    x0: BoolArray | None
    target_imbalance: float | None
    time_limit_s: float
    params: SolveParams


def solve(problem: PlacementProblem, *, params: SolveParams | None = None) -> PlacementSolution:
    """Place every layer's experts and replicas; see the module docstring for the method.

    Args:
        problem: loads, cluster, locality, optional current placement.
        params: time budget, workers, seed, processes.

    Returns:
        The plan with its balance, moves, status, bound and wall time.

    >>> from solvers.experts.loads import MoEShape, synthetic_loads
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
            fresh = eplb_placement(loads, problem.cluster, num_groups=problem.num_groups,
                                   hierarchical=problem.locality is Locality.NODE)
            targets = [float(v) for v in fresh.layer_imbalance(loads)]
    processes = max(1, min(params.processes, layers))
    per_layer = max(0.05, (params.max_time_in_seconds - _STARTUP_S) * processes / layers * 0.85)
    tasks = [
        _LayerTask(
            w=loads[i],
            cluster=problem.cluster,
            num_groups=problem.num_groups,
            locality=problem.locality,
            x0=None if problem.current is None else problem.current.expert_gpu_matrix(i) > 0,
            target_imbalance=targets[i],
            time_limit_s=per_layer,
            params=params,
        )
        for i in range(layers)
    ]
    if processes == 1:
        results = [_solve_task(t) for t in tasks]
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            results = list(pool.map(_solve_task, tasks, chunksize=max(1, layers // (4 * processes))))
    placement = placement_from_matrices([x for x, _ in results], problem.cluster, previous=problem.current)
    reports = tuple(r for _, r in results)
    imb = placement.layer_imbalance(loads)
    moves = None if problem.current is None else int(placement.moves_from(problem.current).sum())
    status = max((r.status for r in reports), key=lambda s: _STATUS_RANK[s])
    bound = float(np.mean([r.lower_bound for r in reports]))
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
    )


def _solve_task(task: _LayerTask) -> tuple[BoolArray, LayerReport]:
    started = time.perf_counter()
    w = task.w
    c = task.cluster
    caps = np.asarray(c.slots_per_gpu, dtype=np.int64)
    mean = float(w.sum()) / c.num_gpus
    allowed, counts, node_bound = _locality(task, caps)
    q_max = float((w / counts).max())
    lower = max(mean, q_max, node_bound)
    if task.x0 is not None and task.target_imbalance is not None:
        return _incremental(task, allowed, counts, caps, lower, started)
    x, status, method = _fresh(task, allowed, counts, caps, lower)
    imb = float(((w / counts) @ x).max()) / mean
    report = LayerReport(status=status, imbalance=imb, lower_bound=lower / mean, moves=None, method=method,
                         wall_s=time.perf_counter() - started)
    return x, report


def _fresh(task: _LayerTask, allowed: BoolArray, counts: IntArray, caps: IntArray,
           lower: float) -> tuple[BoolArray, SolveStatus, str]:
    """Greedy start, local search, then CP-SAT when a gap to the bound remains."""
    w = task.w
    q = w / counts
    x = improve(lpt_pack(w, counts, caps, allowed), w, counts, allowed)
    best = float((q @ x).max())
    if best <= lower * (1 + 1e-9):
        return x, SolveStatus.OPTIMAL, "greedy+swap (at bound)"
    if not task.params.use_cpsat or best <= lower * (1 + task.params.gap_tolerance):
        return x, SolveStatus.FEASIBLE, "greedy+swap"
    res = cpsat.solve_layer(w, counts, caps, allowed, hint=x, time_limit_s=task.time_limit_s,
                            num_workers=task.params.num_workers, random_seed=task.params.random_seed)
    if res.x is not None and float((q @ res.x).max()) < best:
        return res.x, res.status, "cp-sat"
    status = res.status if res.status is SolveStatus.OPTIMAL else SolveStatus.FEASIBLE
    return x, status, "greedy+swap (cp-sat no better)"


def _incremental(task: _LayerTask, allowed: BoolArray, counts: IntArray, caps: IntArray, lower: float,
                 started: float) -> tuple[BoolArray, LayerReport]:
    """Fewest copies that reach the balance target, starting from the current plan."""
    assert task.x0 is not None and task.target_imbalance is not None
    w, x0 = task.w, task.x0
    mean = float(w.sum()) / task.cluster.num_gpus
    target = max(task.target_imbalance * mean, lower)
    candidates: list[tuple[int, BoolArray, IntArray]] = []
    old_counts = x0.sum(axis=1).astype(np.int64)
    local_ok = bool((allowed | ~x0).all())
    for cnt in ([old_counts, counts] if local_ok else [counts]):
        if local_ok and (cnt == old_counts).all():
            start = x0
        elif local_ok:
            start = adapt_counts(x0, w, cnt, allowed)
        else:
            start = lpt_pack(w, cnt, caps, allowed)
        x = improve(start, w, cnt, allowed, target=target, x0=x0)
        if float(((w / cnt) @ x).max()) <= target * (1 + 1e-9):
            candidates.append((int((x & ~x0).sum()), x, cnt))
    method = "incremental swap"
    status = SolveStatus.FEASIBLE
    if candidates:
        moves, x, cnt = min(candidates, key=lambda t: t[0])
        if task.params.use_cpsat and moves > 0:
            res = cpsat.solve_layer(w, cnt, caps, allowed, hint=x, time_limit_s=task.time_limit_s,
                                    num_workers=task.params.num_workers, random_seed=task.params.random_seed,
                                    x0=x0, max_load=target)
            if res.x is not None and int((res.x & ~x0).sum()) <= moves \
                    and float(((w / cnt) @ res.x).max()) <= target * (1 + 1e-6):
                x, moves, status, method = res.x, int((res.x & ~x0).sum()), res.status, "incremental cp-sat"
        elif moves == 0:
            status, method = SolveStatus.OPTIMAL, "unchanged"
    else:
        x, status, method = _fresh(task, allowed, counts, caps, lower)
        cnt, method = counts, "fresh (target out of reach incrementally)"
    q = w / cnt
    report = LayerReport(status=status, imbalance=float((q @ x).max()) / mean, lower_bound=lower / mean,
                         moves=int((x & ~x0).sum()), method=method, wall_s=time.perf_counter() - started)
    return x, report


def _locality(task: _LayerTask, caps: IntArray) -> tuple[BoolArray, IntArray, float]:
    """Allowed GPUs per expert, replica counts, and the node-level lower bound on the busiest GPU."""
    w, c = task.w, task.cluster
    n = w.shape[0]
    if task.locality is Locality.GLOBAL:
        return (np.ones((n, c.num_gpus), dtype=bool), capped_counts(w, c.num_slots, c.num_gpus), 0.0)
    home = _group_homes(task)
    group_size = n // task.num_groups
    expert_node = np.repeat(home, group_size)
    allowed = expert_node[:, None] == c.node_of_gpu[None, :]
    counts = np.ones(n, dtype=np.int64)
    bound = 0.0
    node_slots = c.slots_per_node
    for node in range(c.num_nodes):
        mine = np.flatnonzero(expert_node == node)
        counts[mine] = capped_counts(w[mine], node_slots[node], c.gpus_per_node)
        bound = max(bound, float(w[mine].sum()) / c.gpus_per_node)
    return allowed, counts, bound


def _group_homes(task: _LayerTask) -> IntArray:
    """Node of every expert group: kept from the current plan when it is node-local, else solved."""
    c = task.cluster
    n = task.w.shape[0]
    group_size = n // task.num_groups
    per_node = task.num_groups // c.num_nodes
    if task.x0 is not None:
        node_hits = np.zeros((task.num_groups, c.num_nodes), dtype=np.int64)
        for e, g in zip(*np.nonzero(task.x0), strict=True):
            node_hits[e // group_size, c.node_of_gpu[g]] += 1
        homes = node_hits.argmax(axis=1)
        pure = (node_hits > 0).sum(axis=1) == 1
        if pure.all() and (np.bincount(homes, minlength=c.num_nodes) == per_node).all():
            return homes.astype(np.int64)
    return assign_groups(task.w.reshape(task.num_groups, group_size).sum(axis=1), c.num_nodes,
                         time_limit_s=min(task.time_limit_s, 1.0), random_seed=task.params.random_seed)


def assign_groups(group_loads: FloatArray, num_nodes: int, *, time_limit_s: float = 1.0,
                  random_seed: int = 0) -> IntArray:
    """Groups to nodes, equal count per node, minimising the busiest node (a tiny exact CP-SAT model).

    >>> assign_groups(np.array([5.0, 4.0, 3.0, 2.0]), 2).tolist()
    [0, 1, 1, 0]
    """
    # --- data
    n = group_loads.shape[0]
    per_node = n // num_nodes
    q, _ = cpsat.scaled_loads(group_loads, np.ones(n, dtype=np.int64))
    # --- model and variables
    model = cp_model.CpModel()
    y = {(i, k): model.new_bool_var(f"y_{i}_{k}") for i in range(n) for k in range(num_nodes)}
    busiest = model.new_int_var(0, int(q.sum()), "busiest_node")
    # --- constraints
    for i in range(n):
        # Each group lives on exactly one node.
        model.add_exactly_one(y[i, k] for k in range(num_nodes))
    for k in range(num_nodes):
        # Every node hosts the same number of groups (its slots are sized for that many experts).
        model.add(sum(y[i, k] for i in range(n)) == per_node)
        # A node's tokens bound the busiest-node load.
        model.add(sum(int(q[i]) * y[i, k] for i in range(n)) <= busiest)
    # Symmetry: nodes are interchangeable, so the heaviest group goes to node 0.
    model.add(y[int(np.argmax(q)), 0] == 1)
    # --- objective
    model.minimize(busiest)
    # --- solve
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = random_seed
    code = solver.solve(model)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return np.arange(n, dtype=np.int64) // per_node  # contiguous fallback, always valid
    return np.array([next(k for k in range(num_nodes) if solver.boolean_value(y[i, k])) for i in range(n)],
                    dtype=np.int64)


__all__ = ["assign_groups", "solve"]

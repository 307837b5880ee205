"""Expert groups on nodes: the assignment, the node-local lower bound, and the fewest-moves re-assignment.

Under the strict node-local rule (EPLB's hierarchical policy, :attr:`Locality.NODE`), every replica of an
expert lives on the node its group is assigned to, and each node hosts ``p = groups / nodes`` groups. A
layer then splits into independent node problems, and a node ``k`` holding the group set ``S`` can never
run its busiest GPU below

``f(S, k) = max( W(S) / gpus_per_node ,  R(S, s_k) )``

where ``W(S)`` is the tokens of ``S``, ``s_k`` the node's slots and ``R(S, s)`` the smallest possible
heaviest replica, ``min_c max_e w_e / c_e`` over replica counts ``1 <= c_e <= gpus_per_node`` with
``sum c_e = s`` (EPLB's ``argmax w/c`` greedy reaches it; every slot holds a replica, no GPU holds two of
one expert). So for any plan, ``max GPU >= min over assignments of max_k f(S_k, k)``: the bound
:func:`node_local_bound` computes exactly, by a dynamic programme over subsets of groups
(:func:`_partitions`), and divides by the mean GPU load.

The same programme re-assigns groups in incremental mode (:func:`regroup`): fewest replicas moved
(a group that changes node copies all its replicas), subject to every node's ``f`` staying within the
balance target. Kept as Pareto sets instead of single values, it gives the whole trade-off between
copies forced by group moves and the balance they allow (:func:`move_frontier`), which bounds the moves
of re-plans held to an aggregate balance over layers (:mod:`solvers.experts.aggregate`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model

from solvers.experts.heuristic import capped_counts
from solvers.experts.placement import Cluster
from solvers.experts.problem import Locality

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

MAX_EXACT_GROUPS = 12
"""Up to this many groups the subset programme is exact and fast (DeepSeek-V3 has 8)."""


def heaviest_replica(w: FloatArray, num_slots: int, max_count: int) -> float:
    """``R``: the smallest possible heaviest replica load of these experts in ``num_slots`` slots.

    Slots beyond ``len(w) * max_count`` cannot hold distinct replicas, so they are not counted.

    >>> heaviest_replica(np.array([6.0, 3.0, 1.0]), 5, 2)
    3.0
    """
    n = w.shape[0]
    slots = min(max(num_slots, n), n * max_count)
    return float((w / capped_counts(w, slots, max_count)).max())


def _partitions(
    num_groups: int,
    num_nodes: int,
    node_value: Callable[[tuple[int, ...], int], tuple[float, float]],
    *,
    combine_sum: bool,
) -> tuple[tuple[float, float], list[tuple[int, ...]]] | None:
    """Best split of groups into nodes, ``num_groups / num_nodes`` each, by a DP over used-group masks.

    ``node_value(S, k)`` returns ``(primary, secondary)`` for group set ``S`` on node ``k`` (``inf``
    primary: forbidden). Primaries add up (``combine_sum``) or take the max; secondaries take the max and
    only break ties. Returns the value and the group set of every node, or None when all are forbidden.
    """
    per_node = num_groups // num_nodes
    best: dict[int, tuple[tuple[float, float], list[tuple[int, ...]]]] = {0: ((0.0, 0.0), [])}
    for k in range(num_nodes):
        nxt: dict[int, tuple[tuple[float, float], list[tuple[int, ...]]]] = {}
        for mask, (val, sets) in best.items():
            free = [i for i in range(num_groups) if not mask >> i & 1]
            # Nodes with equal value functions are interchangeable; the lowest free group goes to node k
            # only when that does not lose optimality, so we enumerate every subset (exactness first).
            for subset in itertools.combinations(free, per_node):
                prim, sec = node_value(subset, k)
                if math.isinf(prim):
                    continue
                cand = (
                    (val[0] + prim) if combine_sum else max(val[0], prim),
                    max(val[1], sec),
                )
                new_mask = mask
                for i in subset:
                    new_mask |= 1 << i
                old = nxt.get(new_mask)
                if old is None or cand < old[0]:
                    nxt[new_mask] = (cand, [*sets, subset])
        best = nxt
        if not best:
            return None
    return best[(1 << num_groups) - 1]


def node_floor(
    w: FloatArray, group_size: int, subset: tuple[int, ...], slots: int, gpus_per_node: int
) -> float:
    """``f(S, k)``: the busiest GPU a node holding groups ``subset`` with ``slots`` slots cannot beat."""
    idx = np.concatenate([np.arange(g * group_size, (g + 1) * group_size) for g in subset])
    ws = w[idx]
    return max(float(ws.sum()) / gpus_per_node, heaviest_replica(ws, slots, gpus_per_node))


def node_local_bound(loads: FloatArray, cluster: Cluster, num_groups: int) -> FloatArray:
    """Per layer, a lower bound on max/mean GPU load of *any* plan under the strict node-local rule.

    The bound is ``min over group->node assignments of max_k f(S_k, k)`` over the mean GPU load (see the
    module docstring), computed exactly for up to :data:`MAX_EXACT_GROUPS` groups. Beyond that it falls
    back to the weaker ``max(busiest node of the best assignment's CP-SAT bound, R over all slots)``.
    If it is above a target, no node-local plan reaches that target on that layer.

    Args:
        loads: ``[layers, experts]`` expert loads.
        cluster: GPUs, GPUs per node, slots.
        num_groups: expert groups; must be a multiple of the node count.

    Returns:
        ``[layers]`` bounds, each >= 1.

    >>> w = np.array([[8.0, 8.0, 1.0, 1.0]])  # groups {0,1} and {2,3}, one group per node
    >>> node_local_bound(w, Cluster(num_gpus=4, gpus_per_node=2, num_slots=6), 2).tolist()
    [1.7777777777777777]
    """
    layers, n = loads.shape
    group_size = n // num_groups
    gpn = cluster.gpus_per_node
    out = np.ones(layers)
    for layer in range(layers):
        w = np.asarray(loads[layer], dtype=np.float64)
        mean = float(w.sum()) / cluster.num_gpus
        if mean <= 0:
            continue
        if num_groups <= MAX_EXACT_GROUPS:
            res = _partitions(
                num_groups, cluster.num_nodes, _floor_fn(w, cluster, group_size), combine_sum=False
            )
            floor = res[0][0] if res is not None else math.inf
        else:
            node_load = _busiest_node_bound(w.reshape(num_groups, group_size).sum(axis=1), cluster.num_nodes)
            floor = max(node_load / gpn, heaviest_replica(w, cluster.num_slots, gpn))
        out[layer] = max(1.0, floor / mean)
    return out


def lower_bound(loads: FloatArray, cluster: Cluster, *, num_groups: int, locality: Locality) -> FloatArray:
    """Per layer, a lower bound on max/mean GPU load that no plan under ``locality`` can beat.

    ``NODE``: :func:`node_local_bound`. ``GLOBAL`` and ``HOME`` (whose plans are also global plans):
    the smallest possible heaviest replica with at most one replica per GPU, over the mean GPU load.

    >>> w = np.array([[8.0, 8.0, 1.0, 1.0]])
    >>> c = Cluster(num_gpus=4, gpus_per_node=2, num_slots=6)
    >>> lower_bound(w, c, num_groups=2, locality=Locality.GLOBAL).tolist()
    [1.0]
    """
    if locality is Locality.NODE:
        return node_local_bound(loads, cluster, num_groups)
    out = np.ones(loads.shape[0])
    for layer in range(loads.shape[0]):
        w = np.asarray(loads[layer], dtype=np.float64)
        mean = float(w.sum()) / cluster.num_gpus
        if mean > 0:
            out[layer] = max(1.0, heaviest_replica(w, cluster.num_slots, cluster.num_gpus) / mean)
    return out


def _floor_fn(
    w: FloatArray, cluster: Cluster, group_size: int
) -> Callable[[tuple[int, ...], int], tuple[float, float]]:
    """``(S, k) -> (f(S, k), 0)`` with a cache (nodes with equal slots share values)."""
    cache: dict[tuple[tuple[int, ...], int], float] = {}
    slots = cluster.slots_per_node

    def value(subset: tuple[int, ...], k: int) -> tuple[float, float]:
        key = (subset, slots[k])
        if key not in cache:
            cache[key] = node_floor(w, group_size, subset, slots[k], cluster.gpus_per_node)
        return cache[key], 0.0

    return value


def _busiest_node_bound(group_loads: FloatArray, num_nodes: int) -> float:
    """A valid lower bound on the busiest node's tokens over equal-count group assignments (CP-SAT bound)."""
    _, bound = _assign(group_loads, num_nodes, time_limit_s=1.0, random_seed=0)
    return bound


def assign_groups(
    group_loads: FloatArray, num_nodes: int, *, time_limit_s: float = 1.0, random_seed: int = 0
) -> IntArray:
    """Groups to nodes, equal count per node, minimising the busiest node (a tiny CP-SAT model).

    The greedy longest-first packing is the hint and the fallback when CP-SAT has no answer in time.

    >>> assign_groups(np.array([5.0, 4.0, 3.0, 2.0]), 2).tolist()
    [0, 1, 1, 0]
    """
    homes, _ = _assign(group_loads, num_nodes, time_limit_s=time_limit_s, random_seed=random_seed)
    return homes


def _greedy_groups(group_loads: FloatArray, num_nodes: int) -> IntArray:
    """Longest-first: each group to the lightest node that still has room (EPLB's balanced packing)."""
    per_node = group_loads.shape[0] // num_nodes
    home = np.zeros(group_loads.shape[0], dtype=np.int64)
    load = np.zeros(num_nodes)
    count = np.zeros(num_nodes, dtype=np.int64)
    for i in np.argsort(-group_loads, kind="stable"):
        k = int(np.argmin(np.where(count < per_node, load, np.inf)))
        home[i] = k
        load[k] += group_loads[i]
        count[k] += 1
    return home


def _assign(
    group_loads: FloatArray, num_nodes: int, *, time_limit_s: float, random_seed: int
) -> tuple[IntArray, float]:
    """CP-SAT for :func:`assign_groups`; returns the assignment and a valid bound on the busiest node."""
    # --- data
    n = group_loads.shape[0]
    per_node = n // num_nodes
    greedy = _greedy_groups(group_loads, num_nodes)
    scale = 1_000_000 / max(float(group_loads.max()), 1e-300)
    q = np.rint(group_loads * scale).astype(np.int64)
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
    # Symmetry: nodes are interchangeable, so the heaviest group goes to node 0 (the greedy does too).
    model.add(y[int(np.argmax(q)), 0] == 1)
    # --- objective
    model.minimize(busiest)
    for (i, k), var in y.items():
        model.add_hint(var, bool(greedy[i] == k))
    # --- solve
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = random_seed
    code = solver.solve(model)
    # Rounding: each group's integer load is off by at most half a unit.
    slack = 0.5 * per_node / scale
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return greedy, max(float(group_loads.sum()) / num_nodes, float(group_loads.max()))
    homes = np.array(
        [next(k for k in range(num_nodes) if solver.boolean_value(y[i, k])) for i in range(n)], dtype=np.int64
    )
    bound = max(float(solver.best_objective_bound) / scale - slack, float(group_loads.sum()) / num_nodes)
    return homes, bound


def regroup(
    w: FloatArray,
    cluster: Cluster,
    num_groups: int,
    old_home: IntArray,
    move_cost: FloatArray,
    *,
    max_gpu_load: float,
) -> IntArray | None:
    """Group->node assignment that moves the fewest replicas while every node can still reach the target.

    A group that leaves its node copies all its replicas (``move_cost[group]``); a node is allowed only
    if its floor ``f(S, k)`` (module docstring) is at most ``max_gpu_load``. Ties go to the assignment
    whose busiest floor is lowest. Exact for up to :data:`MAX_EXACT_GROUPS` groups.

    Args:
        w: one layer's expert loads.
        cluster: GPUs, nodes, slots.
        num_groups: expert groups.
        old_home: node of every group in the current plan.
        move_cost: replicas a group copies when it changes node.
        max_gpu_load: the busiest-GPU load the re-plan must reach.

    Returns:
        The node of every group, or None when no assignment can reach the target (or too many groups).

    >>> w = np.array([4.0, 4.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])  # groups of 8, 2, 6, 2 tokens
    >>> c = Cluster(num_gpus=2, gpus_per_node=1, num_slots=8)  # 2 nodes of 1 GPU
    >>> old = np.array([0, 1, 0, 1])  # nodes carry 14 and 4 tokens: over a target of 10
    >>> regroup(w, c, 4, old, np.array([2.0, 5.0, 2.0, 2.0]), max_gpu_load=10.0).tolist()
    [0, 1, 1, 0]
    """
    found = _regroup(w, cluster, num_groups, old_home, move_cost, max_gpu_load=max_gpu_load)
    return None if found is None else found[0]


def forced_moves(
    w: FloatArray,
    cluster: Cluster,
    num_groups: int,
    old_home: IntArray,
    move_cost: FloatArray,
    *,
    max_gpu_load: float,
) -> float | None:
    """Fewest expert copies any node-local plan reaching ``max_gpu_load`` must make (a lower bound).

    When a group leaves its node, every GPU it leaves has as many experts to receive as it lost, so
    the copies are at least the moved groups' current replicas (``move_cost``); a plan reaching the
    target must use an assignment whose node floors are within it. The cheapest such assignment
    (:func:`regroup`) bounds the copies of every plan. None when no assignment can reach the target.

    >>> w = np.array([4.0, 4.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])
    >>> c = Cluster(num_gpus=2, gpus_per_node=1, num_slots=8)
    >>> forced_moves(w, c, 4, np.array([0, 1, 0, 1]), np.array([2.0, 5.0, 2.0, 2.0]), max_gpu_load=10.0)
    4.0
    """
    found = _regroup(w, cluster, num_groups, old_home, move_cost, max_gpu_load=max_gpu_load)
    return None if found is None else found[1]


@dataclass(frozen=True)
class GroupMove:
    """One point of a layer's trade-off between group moves and balance (:func:`move_frontier`).

    Attributes:
        copies: replicas copied because their group changes node (a lower bound on the plan's copies).
        floor: the busiest GPU no plan under this assignment can beat (``max_k f(S_k, k)``, tokens).
        home: node of every group.
    """

    copies: int
    floor: float
    home: tuple[int, ...]


def move_frontier(
    w: FloatArray,
    cluster: Cluster,
    num_groups: int,
    old_home: IntArray,
    move_cost: FloatArray,
) -> list[GroupMove]:
    """Every useful trade-off of one layer between forced copies and the busiest GPU's floor.

    Each group->node assignment forces the copies of the groups it moves (``move_cost``, see
    :func:`forced_moves`) and lets no plan beat ``max_k f(S_k, k)`` on the busiest GPU. The Pareto
    front over all assignments, copies ascending and floors strictly descending, is computed exactly by
    the subset programme with a Pareto set per state. Any strict node-local plan of the layer copies at
    least the ``copies`` of some front point and runs its busiest GPU at least at its ``floor``; the
    first point whose floor is within a target is what :func:`regroup` returns for that target. Empty
    for more than :data:`MAX_EXACT_GROUPS` groups (no bound claimed).

    >>> w = np.array([4.0, 4.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])  # groups of 8, 2, 6, 2 tokens
    >>> c = Cluster(num_gpus=2, gpus_per_node=1, num_slots=8)
    >>> [(p.copies, p.floor, p.home) for p in
    ...  move_frontier(w, c, 4, np.array([0, 1, 0, 1]), np.array([2.0, 5.0, 2.0, 2.0]))]
    [(0, 14.0, (0, 1, 0, 1)), (4, 10.0, (0, 1, 1, 0))]
    """
    if num_groups > MAX_EXACT_GROUPS:
        return []
    group_size = w.shape[0] // num_groups
    per_node = num_groups // cluster.num_nodes
    floor_of = _floor_fn(w, cluster, group_size)
    cost = [round(float(v)) for v in move_cost]
    # A state's front: (copies, floor, group set of every node so far).
    Point = tuple[int, float, tuple[tuple[int, ...], ...]]
    fronts: dict[int, list[Point]] = {0: [(0, 0.0, ())]}
    for k in range(cluster.num_nodes):
        grown: dict[int, list[Point]] = {}
        for mask, front in fronts.items():
            free = [i for i in range(num_groups) if not mask >> i & 1]
            for subset in itertools.combinations(free, per_node):
                floor = floor_of(subset, k)[0]
                extra = sum(cost[i] for i in subset if old_home[i] != k)
                new_mask = mask | sum(1 << i for i in subset)
                grown.setdefault(new_mask, []).extend(
                    (c + extra, max(f, floor), (*sets, subset)) for c, f, sets in front
                )
        fronts = {mask: _front(points) for mask, points in grown.items()}
    out = []
    for copies, floor, sets in fronts.get((1 << num_groups) - 1, []):
        home = [0] * num_groups
        for k, subset in enumerate(sets):
            for g in subset:
                home[g] = k
        out.append(GroupMove(copies=copies, floor=floor, home=tuple(home)))
    return out


_P = TypeVar("_P", bound=tuple[int, float, tuple[tuple[int, ...], ...]])


def _front(points: list[_P]) -> list[_P]:
    """Pareto front: copies ascending, each point with a strictly lower floor (ties: first found)."""
    out: list[_P] = []
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if not out or p[1] < out[-1][1]:
            out.append(p)
    return out


def _regroup(
    w: FloatArray,
    cluster: Cluster,
    num_groups: int,
    old_home: IntArray,
    move_cost: FloatArray,
    *,
    max_gpu_load: float,
) -> tuple[IntArray, float] | None:
    if num_groups > MAX_EXACT_GROUPS:
        return None
    n = w.shape[0]
    group_size = n // num_groups
    limit = max_gpu_load * (1 + 1e-9)
    floor_of = _floor_fn(w, cluster, group_size)

    def value(subset: tuple[int, ...], k: int) -> tuple[float, float]:
        floor = floor_of(subset, k)[0]
        if floor > limit:
            return math.inf, 0.0
        return float(sum(move_cost[i] for i in subset if old_home[i] != k)), floor

    res = _partitions(num_groups, cluster.num_nodes, value, combine_sum=True)
    if res is None:
        return None
    home = np.zeros(num_groups, dtype=np.int64)
    for k, subset in enumerate(res[1]):
        home[list(subset)] = k
    return home, res[0][0]


__all__ = [
    "GroupMove",
    "assign_groups",
    "forced_moves",
    "heaviest_replica",
    "lower_bound",
    "move_frontier",
    "node_floor",
    "node_local_bound",
    "regroup",
]

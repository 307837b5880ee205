"""One layer's placement search: the layer task, its locality layout, the greedy start, local search,
count search and CP-SAT on a window of GPUs, fresh or incremental from the current plan.

:func:`solvers.experts.solve.solve` runs :func:`solve_task` per layer (per-layer balance) and
:mod:`solvers.experts.replan` builds aggregate re-plans from the same searches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from solvers.experts import cpsat
from solvers.experts.groups import (
    GroupMove,
    assign_groups,
    forced_moves,
    lower_bound,
    regroup,
)
from solvers.experts.heuristic import capped_counts, counts_near, home_counts, improve, lpt_pack, repair
from solvers.experts.placement import Cluster
from solvers.experts.problem import (
    LayerReport,
    Locality,
    SolveParams,
)
from solvers.status import SolveStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

STATUS_RANK = {
    s: i
    for i, s in enumerate(
        (
            SolveStatus.OPTIMAL,
            SolveStatus.FEASIBLE,
            SolveStatus.UNKNOWN,
            SolveStatus.INFEASIBLE,
            SolveStatus.MODEL_INVALID,
        )
    )
}
COUNT_TRIALS = 256
"""Count search: re-packs tried at most per layer (each moves one replica between two experts)."""
MIN_CPSAT_S = 0.03
"""Below this much time left, CP-SAT is not started (the heuristic plan stands)."""
REGROUP_MARGINS = (0.0, 0.003, 0.01)
"""Node-local re-plans: if the cheapest group re-assignment leaves too little room to pack within the
target, the next asks each node's floor to sit this far below it."""


@dataclass(frozen=True, eq=False)
class LayerTask:
    w: FloatArray
    cluster: Cluster
    num_groups: int
    locality: Locality
    x0: BoolArray | None
    target_imbalance: float | None
    time_limit_s: float
    """CP-SAT deterministic time for this layer (each of its CP-SAT calls)."""
    params: SolveParams


@dataclass(frozen=True, eq=False)
class Layout:
    """A layer's locality rule made concrete."""

    allowed: BoolArray
    counts: IntArray
    caps: IntArray
    lower: float
    home: IntArray | None
    node_of: IntArray
    expert_node: IntArray | None


def cpsat_time(task: LayerTask) -> float:
    """The layer's CP-SAT deterministic time (the same whatever ran before it)."""
    return task.time_limit_s


def solve_task(task: LayerTask) -> tuple[BoolArray, LayerReport]:
    started = time.perf_counter()
    mean = float(task.w.sum()) / task.cluster.num_gpus
    if task.x0 is not None and task.target_imbalance is not None:
        reached = at_target(task)
        if reached is None:
            # Out of reach from the current plan: plan afresh, homes too.
            lay = make_layout(replace(task, x0=None))
            x, counts, status, _ = plan_fresh(replace(task, x0=None), lay, lay.counts)
            method = "fresh (target out of reach incrementally)"
        else:
            lay, (x, counts, status, method) = reached
    else:
        lay = make_layout(task)
        x, counts, status, method = plan_fresh(task, lay, lay.counts)
    q = task.w / counts
    report = LayerReport(
        status=status,
        imbalance=float((q @ x).max()) / mean,
        lower_bound=float(
            lower_bound(task.w[None, :], task.cluster, num_groups=task.num_groups, locality=task.locality)[0]
        ),
        moves=None if task.x0 is None else int((x & ~task.x0).sum()),
        method=method,
        wall_s=time.perf_counter() - started,
        remote_share=remote_share(x, q, lay),
        min_moves=layer_forced_moves(task),
    )
    return x, report


def at_target(
    task: LayerTask, *, front: Sequence[GroupMove] = ()
) -> tuple[Layout, tuple[BoolArray, IntArray, SolveStatus, str]] | None:
    """Fewest copies reaching ``task.target_imbalance`` from the current plan, or None if out of reach.

    Node-local: the cheapest group re-assignment first, then ones that leave the nodes more room; read
    off the layer's move frontier when given (the same answer as :func:`regroup`, without its programme).
    """
    for margin in REGROUP_MARGINS:
        homes = front_homes(task, front, margin) if front else incremental_homes(task, margin=margin)
        lay = make_layout(task, homes=homes)
        found = incremental(task, lay)
        if found is not None:
            return lay, found
        if task.locality is not Locality.NODE:
            break
    return None


def front_homes(task: LayerTask, front: Sequence[GroupMove], margin: float) -> IntArray | None:
    """The fewest-copies assignment of the frontier whose floor is within the target (see regroup)."""
    assert task.target_imbalance is not None
    limit = task.target_imbalance * float(task.w.sum()) / task.cluster.num_gpus / (1 + margin)
    for point in front:
        if point.floor <= limit * (1 + 1e-9):
            return np.asarray(point.home, dtype=np.int64)
    return None


def remote_share(x: BoolArray, q: FloatArray, lay: Layout) -> float:
    if lay.home is None:
        return 0.0
    off_home = lay.node_of[None, :] != lay.home[:, None]
    return float((q[:, None] * (x & off_home)).sum() / (q[:, None] * x).sum())


def pack(task: LayerTask, lay: Layout, counts: IntArray) -> tuple[BoolArray, float]:
    w = task.w
    start = lpt_pack(w, counts, lay.caps, lay.allowed, home=lay.home, node_of=lay.node_of)
    x = improve(start, w, counts, lay.allowed, home=lay.home, node_of=lay.node_of)
    return x, float(((w / counts) @ x).max())


def count_search(
    task: LayerTask, lay: Layout, counts: IntArray, x: BoolArray, best: float
) -> tuple[IntArray, BoolArray, float]:
    """Move one replica from one expert to another while re-packing balances better.

    The ``argmax w/c`` counts minimise the heaviest replica, not the busiest GPU: with few slots per GPU
    a different split can pack much better (small layers show it most). Candidates: experts that can
    lose a replica x the heaviest replicas that can gain one; stops after :data:`COUNT_TRIALS` re-packs
    or when no move gains.
    """
    w, c = task.w, task.cluster
    trials = 0
    cap = c.gpus_per_node if task.locality is Locality.NODE else c.num_gpus
    same_node: BoolArray = np.asarray((lay.allowed[:, None, :] & lay.allowed[None, :, :]).any(axis=2))
    improved = True
    while improved and trials < COUNT_TRIALS:
        improved = False
        q = w / counts
        givers = np.flatnonzero(counts > 1)
        takers = [int(e) for e in np.argsort(-q, kind="stable")[:16] if counts[e] < cap]
        for a_raw in givers[np.argsort(q[givers], kind="stable")]:
            a = int(a_raw)
            for b in takers:
                if a == b or not same_node[a, b] or trials >= COUNT_TRIALS:
                    continue
                trials += 1
                trial = counts.copy()
                trial[a] -= 1
                trial[b] += 1
                tx, tbest = pack(task, lay, trial)
                if tbest < best * (1 - 1e-9):
                    counts, x, best, improved = trial, tx, tbest, True
                    break
            if improved:
                break
    return counts, x, best


def plan_fresh(
    task: LayerTask, lay: Layout, counts: IntArray
) -> tuple[BoolArray, IntArray, SolveStatus, str]:
    """Greedy start, local search (packing, then counts), then CP-SAT when a gap to the bound remains."""
    w = task.w
    x, best = pack(task, lay, counts)
    if best <= lay.lower * (1 + 1e-9):
        return x, counts, SolveStatus.OPTIMAL, "greedy+swap (at bound)"
    if best > lay.lower * (1 + task.params.gap_tolerance):
        counts, x, best = count_search(task, lay, counts, x, best)
    q = w / counts
    budget = cpsat_time(task)
    if (
        not task.params.use_cpsat
        or best <= lay.lower * (1 + task.params.gap_tolerance)
        or budget < MIN_CPSAT_S
    ):
        return x, counts, SolveStatus.FEASIBLE, "greedy+swap"
    res_x, status = cpsat_window(task, lay, x, counts, budget)
    if res_x is not None and float((q @ res_x).max()) < best * (1 - 1e-12):
        return res_x, counts, status, "cp-sat"
    if status is SolveStatus.OPTIMAL and cpsat_gpus(x, q, task.params.window_gpus).size == x.shape[1]:
        return x, counts, SolveStatus.OPTIMAL, "greedy+swap (cp-sat proved optimal)"
    return x, counts, SolveStatus.FEASIBLE, "greedy+swap (cp-sat no better)"


def cpsat_gpus(x: BoolArray, q: FloatArray, size: int) -> IntArray:
    """GPUs CP-SAT may re-pack: the busiest and the lightest ``size / 2`` each (all when few)."""
    load = q @ x
    if size >= load.size:
        return np.arange(load.size, dtype=np.int64)
    order = np.argsort(-load, kind="stable")
    return np.sort(np.concatenate([order[: size // 2], order[load.size - (size - size // 2) :]]))


def cpsat_window(
    task: LayerTask,
    lay: Layout,
    x: BoolArray,
    counts: IntArray,
    budget: float,
    *,
    x0: BoolArray | None = None,
    max_load: float | None = None,
) -> tuple[BoolArray | None, SolveStatus]:
    """CP-SAT on a window of GPUs (large-neighbourhood search): the other GPUs keep their replicas.

    A model over all 64 GPUs x 256 experts spends its whole budget in presolve; a window of the busiest
    and lightest GPUs is small enough to solve well and is where balance is won. The replicas on the
    window are re-packed among its GPUs with the same per-replica loads, so the result is never worse
    than ``x`` (which is the hint).
    """
    q = task.w / counts
    gpus = cpsat_gpus(x, q, task.params.window_gpus)
    sub = x[:, gpus]
    experts = np.flatnonzero(sub.any(axis=1))
    cnt_sub = sub[experts].sum(axis=1).astype(np.int64)
    res = cpsat.solve_layer(
        q[experts] * cnt_sub,
        cnt_sub,
        sub[experts].sum(axis=0).astype(np.int64),
        lay.allowed[np.ix_(experts, gpus)],
        hint=sub[experts],
        time_limit_s=budget,
        num_workers=task.params.num_workers,
        random_seed=task.params.random_seed,
        x0=None if x0 is None else x0[np.ix_(experts, gpus)],
        max_load=max_load,
        home=None if lay.home is None else home_needed(lay, x, experts, gpus),
        node_of=lay.node_of[gpus] if lay.home is not None else None,
    )
    if res.x is None:
        return None, res.status
    out = x.copy()
    out[np.ix_(experts, gpus)] = res.x
    return out, res.status


def home_needed(lay: Layout, x: BoolArray, experts: IntArray, gpus: IntArray) -> IntArray:
    """Home nodes for experts that have no home replica outside the window (others need none: -1)."""
    assert lay.home is not None
    outside = np.ones(x.shape[1], dtype=bool)
    outside[gpus] = False
    at_home_outside = (x[experts] & outside[None, :] & (lay.node_of[None, :] == lay.home[experts, None])).any(
        1
    )
    return np.where(at_home_outside, -1, lay.home[experts]).astype(np.int64)


def incremental(task: LayerTask, lay: Layout) -> tuple[BoolArray, IntArray, SolveStatus, str] | None:
    """Fewest copies that reach the balance target, starting from the current plan.

    The objective is lexicographic: the busiest GPU within the target first, then fewest copies. Two
    count vectors are tried (the counts running now, refitted to the nodes' slots, and the fresh greedy
    counts); each starts from the current plan with what the locality rule still allows kept
    (:func:`~solvers.experts.heuristic.repair`), and the swap search prefers swaps that copy nothing.
    None when neither reaches the target.
    """
    assert task.x0 is not None and task.target_imbalance is not None
    w, x0, c = task.w, task.x0, task.cluster
    mean = float(w.sum()) / c.num_gpus
    target = max(task.target_imbalance * mean, lay.lower)
    caps = np.asarray(c.slots_per_gpu, dtype=np.int64)
    if task.locality is Locality.NODE:
        assert lay.expert_node is not None
        near = counts_near(w, x0.sum(axis=1), lay.expert_node, np.asarray(c.slots_per_node), c.gpus_per_node)
    else:
        near = counts_near(
            w, x0.sum(axis=1), np.zeros(w.shape[0], dtype=np.int64), np.array([c.num_slots]), c.num_gpus
        )
    candidates: list[tuple[int, BoolArray, IntArray]] = []
    for cnt in (near, lay.counts):
        start = repair(x0, w, cnt, caps, lay.allowed, home=lay.home, node_of=lay.node_of)
        x = improve(start, w, cnt, lay.allowed, target=target, x0=x0, home=lay.home, node_of=lay.node_of)
        if float(((w / cnt) @ x).max()) <= target * (1 + 1e-9):
            candidates.append((int((x & ~x0).sum()), x, cnt))
    if not candidates:
        # The copy-averse search got stuck above the target: balance first from the same starts.
        for cnt in (near, lay.counts):
            start = repair(x0, w, cnt, caps, lay.allowed, home=lay.home, node_of=lay.node_of)
            x = improve(start, w, cnt, lay.allowed, target=target, home=lay.home, node_of=lay.node_of)
            if float(((w / cnt) @ x).max()) <= target * (1 + 1e-9):
                candidates.append((int((x & ~x0).sum()), x, cnt))
    if not candidates:
        return None
    moves, x, cnt = min(candidates, key=lambda t: t[0])
    if moves == 0:
        return x, cnt, SolveStatus.OPTIMAL, "unchanged"
    budget = cpsat_time(task)
    if not task.params.use_cpsat or budget < MIN_CPSAT_S:
        return x, cnt, SolveStatus.FEASIBLE, "incremental swap"
    res_x, status = cpsat_window(task, lay, x, cnt, budget, x0=x0, max_load=target)
    if (
        res_x is not None
        and int((res_x & ~x0).sum()) < moves
        and float(((w / cnt) @ res_x).max()) <= target * (1 + 1e-6)
    ):
        return res_x, cnt, status, "incremental cp-sat"
    return x, cnt, SolveStatus.FEASIBLE, "incremental swap"


def make_layout(task: LayerTask, *, homes: IntArray | None = None) -> Layout:
    """Allowed GPUs per expert, replica counts, home nodes and the lower bound on the busiest GPU.

    ``homes`` (node of every group) is used for node-local rules when given; else it is solved.
    """
    w, c = task.w, task.cluster
    n = w.shape[0]
    caps = np.asarray(c.slots_per_gpu, dtype=np.int64)
    node_of = c.node_of_gpu
    mean = float(w.sum()) / c.num_gpus
    if task.locality is Locality.GLOBAL:
        counts = capped_counts(w, c.num_slots, c.num_gpus)
        return Layout(
            allowed=np.ones((n, c.num_gpus), dtype=bool),
            counts=counts,
            caps=caps,
            lower=max(mean, float((w / counts).max())),
            home=None,
            node_of=node_of,
            expert_node=None,
        )
    expert_node = np.repeat(group_homes(task) if homes is None else homes, n // task.num_groups)
    if task.locality is Locality.HOME:
        # Two count rules (plain greedy, node-aware greedy): keep the one whose packing balances better.
        allowed = np.ones((n, c.num_gpus), dtype=bool)
        options = [
            capped_counts(w, c.num_slots, c.num_gpus),
            home_counts(w, expert_node, c.num_slots, c.num_gpus, c.gpus_per_node),
        ]

        def _packed_max(cnt: IntArray) -> float:
            x = improve(
                lpt_pack(w, cnt, caps, allowed, home=expert_node, node_of=node_of),
                w,
                cnt,
                allowed,
                home=expert_node,
                node_of=node_of,
            )
            return float(((w / cnt) @ x).max())

        counts = min(options, key=_packed_max)
        return Layout(
            allowed=np.ones((n, c.num_gpus), dtype=bool),
            counts=counts,
            caps=caps,
            lower=max(mean, float((w / counts).max())),
            home=expert_node,
            node_of=node_of,
            expert_node=expert_node,
        )
    counts = np.ones(n, dtype=np.int64)
    node_bound = 0.0
    for node in range(c.num_nodes):
        mine = np.flatnonzero(expert_node == node)
        counts[mine] = capped_counts(w[mine], c.slots_per_node[node], c.gpus_per_node)
        node_bound = max(node_bound, float(w[mine].sum()) / c.gpus_per_node)
    return Layout(
        allowed=expert_node[:, None] == node_of[None, :],
        counts=counts,
        caps=caps,
        lower=max(mean, float((w / counts).max()), node_bound),
        home=None,
        node_of=node_of,
        expert_node=expert_node,
    )


def current_homes(task: LayerTask) -> IntArray | None:
    """Node of every group in the current plan (the node holding most of its replicas), if it fits.

    None when there is no current plan or it does not put an equal number of groups on every node
    (and, for ``NODE``, all of a group's replicas on one node).
    """
    if task.x0 is None:
        return None
    c = task.cluster
    group_size = task.w.shape[0] // task.num_groups
    node_hits = np.zeros((task.num_groups, c.num_nodes), dtype=np.int64)
    np.add.at(node_hits, (np.nonzero(task.x0)[0] // group_size, c.node_of_gpu[np.nonzero(task.x0)[1]]), 1)
    homes = np.asarray(node_hits.argmax(axis=1), dtype=np.int64)
    pure = bool(((node_hits > 0).sum(axis=1) == 1).all()) or task.locality is Locality.HOME
    if pure and (np.bincount(homes, minlength=c.num_nodes) == task.num_groups // c.num_nodes).all():
        return homes
    return None


def group_homes(task: LayerTask) -> IntArray:
    """Node of every expert group: kept from the current plan when it fits the rule, else solved."""
    homes = current_homes(task)
    if homes is not None:
        return homes
    group_size = task.w.shape[0] // task.num_groups
    return assign_groups(
        task.w.reshape(task.num_groups, group_size).sum(axis=1),
        task.cluster.num_nodes,
        time_limit_s=min(task.time_limit_s, 0.05),
        random_seed=task.params.random_seed,
    )


def layer_forced_moves(task: LayerTask) -> int | None:
    """Node-local re-plan at a per-layer target: the copies no plan can avoid (group moves), else None."""
    if task.locality is not Locality.NODE or task.x0 is None or task.target_imbalance is None:
        return None
    old = current_homes(task)
    if old is None:
        return None
    group_size = task.w.shape[0] // task.num_groups
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    mean = float(task.w.sum()) / task.cluster.num_gpus
    cost = forced_moves(
        task.w, task.cluster, task.num_groups, old, move_cost, max_gpu_load=task.target_imbalance * mean
    )
    return None if cost is None else round(cost)


def incremental_homes(task: LayerTask, *, margin: float = 0.0) -> IntArray | None:
    """Node-local re-plan: the group->node assignment moving fewest replicas that can reach the target.

    Keeping every group where it is costs nothing and is chosen whenever every node can still reach
    the target; otherwise the fewest groups change node (each copies all its replicas). ``margin`` asks
    every node's floor to sit that much below the target (room for packing). ``None`` (other rules, or
    no assignment reaches the target) leaves the choice to :func:`group_homes`.
    """
    if task.locality is not Locality.NODE or task.x0 is None or task.target_imbalance is None:
        return None
    c = task.cluster
    group_size = task.w.shape[0] // task.num_groups
    old = current_homes(task)
    if old is None:
        old = np.full(task.num_groups, -1, dtype=np.int64)
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    mean = float(task.w.sum()) / c.num_gpus
    return regroup(
        task.w, c, task.num_groups, old, move_cost, max_gpu_load=task.target_imbalance * mean / (1 + margin)
    )



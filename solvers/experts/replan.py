"""Aggregate re-plans (``Balance.AGGREGATE``): every layer's trade-off curve of copies against its
busiest GPU, one plan per layer picked by an exact knapsack, then CP-SAT cutting the chosen plans' copies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from solvers.experts.aggregate import fewest_moves_within, pareto, pick_per_layer
from solvers.experts.groups import (
    GroupMove,
    lower_bound,
    move_frontier,
)
from solvers.experts.layer import (
    MIN_CPSAT_S,
    STATUS_RANK,
    LayerTask,
    Layout,
    at_target,
    cpsat_time,
    cpsat_window,
    current_homes,
    make_layout,
    plan_fresh,
)
from solvers.experts.placement import Placement, placement_from_matrices
from solvers.experts.pool import Pooled, Serial
from solvers.experts.problem import (
    Balance,
    LayerReport,
    Locality,
    PlacementSolution,
)
from solvers.status import SolveStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

LADDER: tuple[tuple[Literal["anchor", "bound", "span"], float], ...] = (
    ("anchor", 0.0),
    ("anchor", 0.02),
    ("anchor", 0.08),
    ("anchor", -0.005),
    ("bound", 0.002),
    ("anchor", 0.01),
    ("anchor", 0.04),
    ("bound", 0.005),
    ("anchor", 0.005),
    ("anchor", 0.03),
    ("anchor", -0.01),
    ("anchor", 0.05),
    ("bound", 0.001),
    ("anchor", 0.015),
    ("anchor", 0.12),
    ("bound", 0.01),
    ("span", 0.5),
    ("span", 0.25),
    ("span", 0.75),
)
"""Aggregate re-plans: balance targets (max/mean) for each layer's candidate plans, most useful first,
relative to the layer's reference balance (``anchor``: the fresh plan's or ``max_imbalance``), to its
lower bound (``bound``), or a fraction of the way from the bound to the unchanged plan's balance
(``span``: small layers, whose curve lies far from both). Each target gives one (copies, busiest GPU)
point of the layer's trade-off; every target is tried (a fixed amount of work, so every machine
draws the same curve). On the DeepSeek-V3 shape (node-local, 32 GPUs, sigma 0.5) 8 targets
gave 6.4x fewer moves than greedy and 16 gave 6.7x (swept while tuning)."""


@dataclass(frozen=True, eq=False)
class Candidate:
    """One plan for one layer in an aggregate re-plan: its copies and its busiest GPU (token units)."""

    x: BoolArray
    counts: IntArray
    homes: IntArray | None
    """Node of every group (node-local and home rules), so the layout can be rebuilt for CP-SAT."""
    moves: int
    max_load: float
    method: str
    status: SolveStatus


@dataclass(frozen=True, eq=False)
class LayerOptions:
    """A layer's Pareto candidates, its forced-copies frontier (node-local) and its balance bound."""

    candidates: tuple[Candidate, ...]
    frontier: tuple[tuple[int, float], ...]
    lower: float
    wall_s: float


def solve_aggregate(
    tasks: list[LayerTask],
    budget: float,
    current: Placement,
    run: Serial | Pooled,
    *,
    polish_s: float,
    started: float,
) -> PlacementSolution:
    """Fewest copies with ``sum_l max_l <= budget``: candidates per layer, a knapsack, then CP-SAT.

    1. Every layer builds its trade-off curve in parallel (:func:`options_task`): keep the plan
       unchanged, and the fewest-copies plan for a ladder of balance targets (:data:`LADDER`), the
       per-layer target among them (so a per-layer plan is always a choice).
    2. :func:`~solvers.experts.aggregate.pick_per_layer` takes one candidate per layer, exactly.
    3. CP-SAT cuts the copies of every chosen plan that copies anything, capped at that plan's busiest
       GPU, sharing ``polish_s`` of deterministic time; a layer whose CP-SAT answer rounds above its cap
       is reverted if the sum would exceed the budget.
    """
    options = run(options_task, tasks)
    choice = pick_per_layer([[(c.moves, c.max_load) for c in o.candidates] for o in options], budget)
    if choice is None:
        # Out of reach even at every layer's best balance: the most balanced candidates (best effort).
        index = [min(range(len(o.candidates)), key=lambda j: o.candidates[j].max_load) for o in options]
    else:
        index = list(choice.index)
    chosen = [o.candidates[j] for o, j in zip(options, index, strict=True)]
    todo = [i for i, c in enumerate(chosen) if c.moves > 0]
    polished = list(chosen)
    polish_wall = [0.0] * len(tasks)
    if todo and tasks[0].params.use_cpsat:
        per = polish_s * run.workers / len(todo)
        jobs = [(replace(tasks[i], time_limit_s=per), chosen[i]) for i in todo]
        for i, (cand, wall) in zip(todo, run(polish_task, jobs), strict=True):
            polished[i], polish_wall[i] = cand, wall
    total = sum(c.max_load for c in polished)
    # CP-SAT's integer loads may round a busiest GPU a hair above its cap: revert those while over budget.
    for i in sorted(range(len(tasks)), key=lambda i: chosen[i].max_load - polished[i].max_load):
        if total <= budget * (1 + 1e-12) or polished[i].max_load <= chosen[i].max_load:
            break
        total += chosen[i].max_load - polished[i].max_load
        polished[i] = chosen[i]
    return aggregate_solution(tasks, options, polished, polish_wall, budget, current, started)


def options_task(task: LayerTask) -> LayerOptions:
    """One layer's candidate plans for an aggregate re-plan (heuristics only; CP-SAT comes later).

    Unchanged (no copies) when the current plan is legal under the rule; then the fewest-copies plan for
    each balance target of :data:`LADDER` below the unchanged plan's balance; a fresh plan when none
    reaches the per-layer anchor (as the per-layer mode does). Only Pareto candidates are kept (fewer
    copies or a lighter busiest GPU).
    """
    assert task.x0 is not None and task.target_imbalance is not None
    started = time.perf_counter()
    mean = float(task.w.sum()) / task.cluster.num_gpus
    lower = float(
        lower_bound(task.w[None, :], task.cluster, num_groups=task.num_groups, locality=task.locality)[0]
    )
    quick = replace(task, params=replace(task.params, use_cpsat=False))
    front = layer_frontier(task)
    cands: list[Candidate] = []
    keep = unchanged_candidate(task)
    ceiling = math.inf
    if keep is not None:
        cands.append(keep)
        ceiling = keep.max_load / mean
    tried: set[float] = set()
    for kind, step in LADDER:
        if kind == "span":
            top = ceiling if math.isfinite(ceiling) else task.target_imbalance * 1.12
            target = lower + step * (top - lower)
        else:
            target = (task.target_imbalance if kind == "anchor" else lower) * (1 + step)
        target = max(target, lower, 1.0)
        if target >= ceiling or round(target, 9) in tried:
            continue
        tried.add(round(target, 9))
        reached = at_target(replace(quick, target_imbalance=target), front=front)
        if reached is not None:
            lay, (x, counts, status, method) = reached
            cands.append(as_candidate(task, lay, x, counts, status, f"{method} @ {target:.4f}"))
    if not any(c.max_load <= task.target_imbalance * mean * (1 + 1e-9) for c in cands):
        fresh = replace(task, x0=None)
        lay = make_layout(fresh)
        x, counts, status, _ = plan_fresh(fresh, lay, lay.counts)
        cands.append(as_candidate(task, lay, x, counts, status, "fresh (target out of reach incrementally)"))
    keep_idx = pareto([(c.moves, c.max_load) for c in cands])
    return LayerOptions(
        candidates=tuple(cands[i] for i in keep_idx),
        frontier=tuple((p.copies, p.floor) for p in front),
        lower=lower,
        wall_s=time.perf_counter() - started,
    )


def as_candidate(
    task: LayerTask, lay: Layout, x: BoolArray, counts: IntArray, status: SolveStatus, method: str
) -> Candidate:
    assert task.x0 is not None
    group_size = task.w.shape[0] // task.num_groups
    return Candidate(
        x=x,
        counts=counts,
        homes=None if lay.expert_node is None else lay.expert_node[::group_size].copy(),
        moves=int((x & ~task.x0).sum()),
        max_load=float(((task.w / counts) @ x).max()),
        method=method,
        status=status,
    )


def unchanged_candidate(task: LayerTask) -> Candidate | None:
    """The current plan as a candidate (no copies), when it fills every slot and obeys the rule."""
    assert task.x0 is not None
    x0, c = task.x0, task.cluster
    if (x0.sum(axis=0) != np.asarray(c.slots_per_gpu)).any():
        return None  # the current plan had duplicates on a GPU: not a legal plan as it stands
    homes = None
    if task.locality is not Locality.GLOBAL:
        homes = current_homes(task)
        if homes is None:
            return None
        expert_node = np.repeat(homes, task.w.shape[0] // task.num_groups)
        if not (x0 & (c.node_of_gpu[None, :] == expert_node[:, None])).any(axis=1).all():
            return None  # some expert has no replica on its group's node
    counts = x0.sum(axis=1).astype(np.int64)
    return Candidate(
        x=x0.copy(),
        counts=counts,
        homes=homes,
        moves=0,
        max_load=float(((task.w / counts) @ x0).max()),
        method="unchanged",
        status=SolveStatus.OPTIMAL,
    )


def layer_frontier(task: LayerTask) -> list[GroupMove]:
    """Node-local: the layer's forced-copies vs busiest-GPU floor front; empty where none is known."""
    if task.locality is not Locality.NODE or task.x0 is None:
        return []
    old = current_homes(task)
    if old is None:
        return []
    group_size = task.w.shape[0] // task.num_groups
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    return move_frontier(task.w, task.cluster, task.num_groups, old, move_cost)


def polish_task(job: tuple[LayerTask, Candidate]) -> tuple[Candidate, float]:
    """CP-SAT on a window of GPUs: fewer copies with the busiest GPU capped at the candidate's."""
    task, cand = job
    assert task.x0 is not None
    started = time.perf_counter()
    budget = cpsat_time(task)
    if budget < MIN_CPSAT_S:
        return cand, 0.0
    lay = make_layout(task, homes=cand.homes)
    x, status = cpsat_window(task, lay, cand.x, cand.counts, budget, x0=task.x0, max_load=cand.max_load)
    wall = time.perf_counter() - started
    if x is None:
        return cand, wall
    moves = int((x & ~task.x0).sum())
    if moves >= cand.moves:
        return cand, wall
    better = replace(
        cand,
        x=x,
        moves=moves,
        max_load=float(((task.w / cand.counts) @ x).max()),
        method=f"{cand.method} + cp-sat",
        status=status,
    )
    return better, wall


def aggregate_solution(
    tasks: list[LayerTask],
    options: list[LayerOptions],
    chosen: list[Candidate],
    polish_s: list[float],
    budget: float,
    current: Placement,
    started: float,
) -> PlacementSolution:
    """Assemble the plan and its reports; the moves bound is the knapsack over forced-copy frontiers."""
    loads = np.stack([t.w for t in tasks])
    cluster = tasks[0].cluster
    placement = placement_from_matrices([c.x for c in chosen], cluster, previous=current)
    imb = placement.layer_imbalance(loads)
    moves = int(placement.moves_from(current).sum())
    reports = []
    for task, opt, cand, extra in zip(tasks, options, chosen, polish_s, strict=True):
        forced = [m for m, floor in opt.frontier if floor <= cand.max_load * (1 + 1e-9)]
        reports.append(
            LayerReport(
                status=cand.status,
                imbalance=cand.max_load / (float(task.w.sum()) / cluster.num_gpus),
                lower_bound=opt.lower,
                moves=cand.moves,
                method=f"aggregate: {cand.method}",
                wall_s=opt.wall_s + extra,
                remote_share=home_share(task, cand),
                min_moves=min(forced) if forced else None,
            )
        )
    bound = float(np.mean([o.lower for o in options]))
    frontiers = [o.frontier for o in options]
    means = loads.sum(axis=1) / cluster.num_gpus
    return PlacementSolution(
        placement=placement,
        status=max((r.status for r in reports), key=lambda s: STATUS_RANK[s]),
        objective=float(moves),
        bound=None,
        imbalance=float(imb.mean()),
        worst_imbalance=float(imb.max()),
        moves=moves,
        wall_s=time.perf_counter() - started,
        layers=tuple(reports),
        remote_share=float(np.mean([r.remote_share for r in reports])),
        imbalance_bound=bound,
        moves_bound=fewest_moves_within(frontiers, budget) if all(frontiers) else None,
        aggregate_imbalance=placement.aggregate_imbalance(loads),
        balance=Balance.AGGREGATE,
        balance_target=budget / float(means.sum()),
    )


def home_share(task: LayerTask, cand: Candidate) -> float:
    """``Locality.HOME``: share of tokens dispatched off their group's node (0 for other rules)."""
    if task.locality is not Locality.HOME or cand.homes is None:
        return 0.0
    expert_node = np.repeat(cand.homes, task.w.shape[0] // task.num_groups)
    q = task.w / cand.counts
    off = task.cluster.node_of_gpu[None, :] != expert_node[:, None]
    return float((q[:, None] * (cand.x & off)).sum() / (q[:, None] * cand.x).sum())

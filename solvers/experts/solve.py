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

Time: every layer gets an equal share of ``max_time_in_seconds`` for CP-SAT, and no CP-SAT call runs
past the shared deadline, so the whole solve stays within budget (plus process start-up).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from solvers.experts import cpsat
from solvers.experts.aggregate import fewest_moves_within, pareto, pick_per_layer
from solvers.experts.eplb_greedy import eplb_placement
from solvers.experts.groups import (
    GroupMove,
    assign_groups,
    forced_moves,
    lower_bound,
    move_frontier,
    regroup,
)
from solvers.experts.heuristic import capped_counts, counts_near, home_counts, improve, lpt_pack, repair
from solvers.experts.placement import Cluster, Placement, placement_from_matrices
from solvers.experts.problem import (
    Balance,
    LayerReport,
    Locality,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
)
from solvers.status import SolveStatus

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_STATUS_RANK = {
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
_RESERVE_S = 0.8
"""Wall time kept aside for process start and result assembly when sharing the budget among layers."""
_MIN_CPSAT_S = 0.03
"""Below this much time left, CP-SAT is not started (the heuristic plan stands)."""
_REGROUP_MARGINS = (0.0, 0.003, 0.01)
"""Node-local re-plans: if the cheapest group re-assignment leaves too little room to pack within the
target, the next asks each node's floor to sit this far below it."""
_GENERATION_SHARE = 0.85
"""Aggregate re-plans: share of the time budget spent building every layer's candidate plans; the rest
goes to CP-SAT cutting the copies of the chosen ones."""
_LADDER: tuple[tuple[Literal["anchor", "bound", "span"], float], ...] = (
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
point of the layer's trade-off; generation stops at the layer's time share, so a slow machine gets a
coarser curve, never a wrong one. On the DeepSeek-V3 shape (node-local, 32 GPUs, sigma 0.5) 8 targets
gave 6.4x fewer moves than greedy and 16 gave 6.7x (swept while tuning)."""


@dataclass(frozen=True, eq=False)
class _LayerTask:
    w: FloatArray
    cluster: Cluster
    num_groups: int
    locality: Locality
    x0: BoolArray | None
    target_imbalance: float | None
    time_limit_s: float
    deadline: float
    params: SolveParams


@dataclass(frozen=True, eq=False)
class _Layout:
    """A layer's locality rule made concrete."""

    allowed: BoolArray
    counts: IntArray
    caps: IntArray
    lower: float
    home: IntArray | None
    node_of: IntArray
    expert_node: IntArray | None


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
    # Aggregate: layers share what is left of their phase once the reference plan and kernels are ready.
    left = max(started + usable * share - time.perf_counter(), 0.05) if aggregate else usable
    tasks = [
        _LayerTask(
            w=loads[i],
            cluster=problem.cluster,
            num_groups=problem.num_groups,
            locality=problem.locality,
            x0=None if problem.current is None else problem.current.expert_gpu_matrix(i) > 0,
            target_imbalance=targets[i],
            time_limit_s=left * processes / layers,
            deadline=started + usable * share,
            params=params,
        )
        for i in range(layers)
    ]
    with _mapper(processes) as run:
        if aggregate:
            assert problem.current is not None
            means = loads.sum(axis=1) / problem.cluster.num_gpus
            if problem.max_imbalance is not None:
                budget = problem.max_imbalance * float(means.sum())
            else:
                budget = float(np.dot([t or 1.0 for t in targets], means))
            return _solve_aggregate(
                tasks, budget, problem.current, run, deadline=started + usable, started=started
            )
        results = run(_solve_task, tasks)
    placement = placement_from_matrices([x for x, _ in results], problem.cluster, previous=problem.current)
    reports = tuple(r for _, r in results)
    imb = placement.layer_imbalance(loads)
    moves = None if problem.current is None else int(placement.moves_from(problem.current).sum())
    status = max((r.status for r in reports), key=lambda s: _STATUS_RANK[s])
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


_T = TypeVar("_T")
_R = TypeVar("_R")


class _Serial:
    """Run a function over items in this process."""

    workers = 1

    def __call__(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        return [fn(i) for i in items]


@dataclass(frozen=True)
class _Pooled:
    """Run a function over items in a process pool kept for every phase of one solve."""

    pool: ProcessPoolExecutor
    workers: int

    def __call__(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        return list(self.pool.map(fn, items))


@contextmanager
def _mapper(processes: int) -> Iterator[_Serial | _Pooled]:
    """In-process for one process; else a fork pool (workers inherit the compiled kernels, and
    perf_counter is CLOCK_MONOTONIC, shared across processes on Linux)."""
    if processes == 1:
        yield _Serial()
        return
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        yield _Pooled(pool, processes)


@dataclass(frozen=True, eq=False)
class _Candidate:
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
class _LayerOptions:
    """A layer's Pareto candidates, its forced-copies frontier (node-local) and its balance bound."""

    candidates: tuple[_Candidate, ...]
    frontier: tuple[tuple[int, float], ...]
    lower: float
    wall_s: float


def _solve_aggregate(
    tasks: list[_LayerTask],
    budget: float,
    current: Placement,
    run: _Serial | _Pooled,
    *,
    deadline: float,
    started: float,
) -> PlacementSolution:
    """Fewest copies with ``sum_l max_l <= budget``: candidates per layer, a knapsack, then CP-SAT.

    1. Every layer builds its trade-off curve in parallel (:func:`_options_task`): keep the plan
       unchanged, and the fewest-copies plan for a ladder of balance targets (:data:`_LADDER`), the
       per-layer target among them (so a per-layer plan is always a choice).
    2. :func:`~solvers.experts.aggregate.pick_per_layer` takes one candidate per layer, exactly.
    3. CP-SAT cuts the copies of every chosen plan that copies anything, capped at that plan's busiest
       GPU, with the time left; a layer whose CP-SAT answer rounds above its cap is reverted if the sum
       would exceed the budget.
    """
    options = run(_options_task, tasks)
    choice = pick_per_layer([[(c.moves, c.max_load) for c in o.candidates] for o in options], budget)
    if choice is None:
        # Out of reach even at every layer's best balance: the most balanced candidates (best effort).
        index = [min(range(len(o.candidates)), key=lambda j: o.candidates[j].max_load) for o in options]
    else:
        index = list(choice.index)
    chosen = [o.candidates[j] for o, j in zip(options, index, strict=True)]
    todo = [i for i, c in enumerate(chosen) if c.moves > 0]
    polished = list(chosen)
    polish_s = [0.0] * len(tasks)
    if todo and tasks[0].params.use_cpsat:
        left = deadline - time.perf_counter()
        per = left * run.workers / len(todo)
        jobs = [(replace(tasks[i], time_limit_s=per, deadline=deadline), chosen[i]) for i in todo]
        for i, (cand, wall) in zip(todo, run(_polish_task, jobs), strict=True):
            polished[i], polish_s[i] = cand, wall
    total = sum(c.max_load for c in polished)
    # CP-SAT's integer loads may round a busiest GPU a hair above its cap: revert those while over budget.
    for i in sorted(range(len(tasks)), key=lambda i: chosen[i].max_load - polished[i].max_load):
        if total <= budget * (1 + 1e-12) or polished[i].max_load <= chosen[i].max_load:
            break
        total += chosen[i].max_load - polished[i].max_load
        polished[i] = chosen[i]
    return _aggregate_solution(tasks, options, polished, polish_s, budget, current, started)


def _options_task(task: _LayerTask) -> _LayerOptions:
    """One layer's candidate plans for an aggregate re-plan (heuristics only; CP-SAT comes later).

    Unchanged (no copies) when the current plan is legal under the rule; then the fewest-copies plan for
    each balance target of :data:`_LADDER` below the unchanged plan's balance, until the layer's time
    share is spent; a fresh plan when none reaches the per-layer anchor (as the per-layer mode does).
    Only Pareto candidates are kept (fewer copies or a lighter busiest GPU).
    """
    assert task.x0 is not None and task.target_imbalance is not None
    started = time.perf_counter()
    stop = min(started + task.time_limit_s, task.deadline)
    mean = float(task.w.sum()) / task.cluster.num_gpus
    lower = float(
        lower_bound(task.w[None, :], task.cluster, num_groups=task.num_groups, locality=task.locality)[0]
    )
    quick = replace(task, params=replace(task.params, use_cpsat=False))
    front = _frontier(task)
    cands: list[_Candidate] = []
    keep = _unchanged(task)
    ceiling = math.inf
    if keep is not None:
        cands.append(keep)
        ceiling = keep.max_load / mean
    tried: set[float] = set()
    for kind, step in _LADDER:
        if tried and time.perf_counter() >= stop:
            break
        if kind == "span":
            top = ceiling if math.isfinite(ceiling) else task.target_imbalance * 1.12
            target = lower + step * (top - lower)
        else:
            target = (task.target_imbalance if kind == "anchor" else lower) * (1 + step)
        target = max(target, lower, 1.0)
        if target >= ceiling or round(target, 9) in tried:
            continue
        tried.add(round(target, 9))
        reached = _at_target(replace(quick, target_imbalance=target), front=front)
        if reached is not None:
            lay, (x, counts, status, method) = reached
            cands.append(_candidate(task, lay, x, counts, status, f"{method} @ {target:.4f}"))
    if not any(c.max_load <= task.target_imbalance * mean * (1 + 1e-9) for c in cands):
        fresh = replace(task, x0=None)
        lay = _layout(fresh)
        x, counts, status, _ = _fresh(fresh, lay, lay.counts)
        cands.append(_candidate(task, lay, x, counts, status, "fresh (target out of reach incrementally)"))
    keep_idx = pareto([(c.moves, c.max_load) for c in cands])
    return _LayerOptions(
        candidates=tuple(cands[i] for i in keep_idx),
        frontier=tuple((p.copies, p.floor) for p in front),
        lower=lower,
        wall_s=time.perf_counter() - started,
    )


def _candidate(
    task: _LayerTask, lay: _Layout, x: BoolArray, counts: IntArray, status: SolveStatus, method: str
) -> _Candidate:
    assert task.x0 is not None
    group_size = task.w.shape[0] // task.num_groups
    return _Candidate(
        x=x,
        counts=counts,
        homes=None if lay.expert_node is None else lay.expert_node[::group_size].copy(),
        moves=int((x & ~task.x0).sum()),
        max_load=float(((task.w / counts) @ x).max()),
        method=method,
        status=status,
    )


def _unchanged(task: _LayerTask) -> _Candidate | None:
    """The current plan as a candidate (no copies), when it fills every slot and obeys the rule."""
    assert task.x0 is not None
    x0, c = task.x0, task.cluster
    if (x0.sum(axis=0) != np.asarray(c.slots_per_gpu)).any():
        return None  # the current plan had duplicates on a GPU: not a legal plan as it stands
    homes = None
    if task.locality is not Locality.GLOBAL:
        homes = _current_homes(task)
        if homes is None:
            return None
        expert_node = np.repeat(homes, task.w.shape[0] // task.num_groups)
        if not (x0 & (c.node_of_gpu[None, :] == expert_node[:, None])).any(axis=1).all():
            return None  # some expert has no replica on its group's node
    counts = x0.sum(axis=1).astype(np.int64)
    return _Candidate(
        x=x0.copy(),
        counts=counts,
        homes=homes,
        moves=0,
        max_load=float(((task.w / counts) @ x0).max()),
        method="unchanged",
        status=SolveStatus.OPTIMAL,
    )


def _frontier(task: _LayerTask) -> list[GroupMove]:
    """Node-local: the layer's forced-copies vs busiest-GPU floor front; empty where none is known."""
    if task.locality is not Locality.NODE or task.x0 is None:
        return []
    old = _current_homes(task)
    if old is None:
        return []
    group_size = task.w.shape[0] // task.num_groups
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    return move_frontier(task.w, task.cluster, task.num_groups, old, move_cost)


def _polish_task(job: tuple[_LayerTask, _Candidate]) -> tuple[_Candidate, float]:
    """CP-SAT on a window of GPUs: fewer copies with the busiest GPU capped at the candidate's."""
    task, cand = job
    assert task.x0 is not None
    started = time.perf_counter()
    budget = _cpsat_time(task)
    if budget < _MIN_CPSAT_S:
        return cand, 0.0
    lay = _layout(task, homes=cand.homes)
    x, status = _cpsat_window(task, lay, cand.x, cand.counts, budget, x0=task.x0, max_load=cand.max_load)
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


def _aggregate_solution(
    tasks: list[_LayerTask],
    options: list[_LayerOptions],
    chosen: list[_Candidate],
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
                remote_share=_home_share(task, cand),
                min_moves=min(forced) if forced else None,
            )
        )
    bound = float(np.mean([o.lower for o in options]))
    frontiers = [o.frontier for o in options]
    means = loads.sum(axis=1) / cluster.num_gpus
    return PlacementSolution(
        placement=placement,
        status=max((r.status for r in reports), key=lambda s: _STATUS_RANK[s]),
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


def _home_share(task: _LayerTask, cand: _Candidate) -> float:
    """``Locality.HOME``: share of tokens dispatched off their group's node (0 for other rules)."""
    if task.locality is not Locality.HOME or cand.homes is None:
        return 0.0
    expert_node = np.repeat(cand.homes, task.w.shape[0] // task.num_groups)
    q = task.w / cand.counts
    off = task.cluster.node_of_gpu[None, :] != expert_node[:, None]
    return float((q[:, None] * (cand.x & off)).sum() / (q[:, None] * cand.x).sum())


def _warm_up() -> None:
    """Compile (or load from numba's cache) the swap kernel once, before workers fork."""
    improve(np.eye(2, dtype=bool), np.ones(2), np.ones(2, dtype=np.int64), np.ones((2, 2), dtype=bool))


def _cpsat_time(task: _LayerTask) -> float:
    return min(task.time_limit_s, task.deadline - time.perf_counter())


def _solve_task(task: _LayerTask) -> tuple[BoolArray, LayerReport]:
    started = time.perf_counter()
    mean = float(task.w.sum()) / task.cluster.num_gpus
    if task.x0 is not None and task.target_imbalance is not None:
        reached = _at_target(task)
        if reached is None:
            # Out of reach from the current plan: plan afresh, homes too.
            lay = _layout(replace(task, x0=None))
            x, counts, status, _ = _fresh(replace(task, x0=None), lay, lay.counts)
            method = "fresh (target out of reach incrementally)"
        else:
            lay, (x, counts, status, method) = reached
    else:
        lay = _layout(task)
        x, counts, status, method = _fresh(task, lay, lay.counts)
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
        remote_share=_remote_share(x, q, lay),
        min_moves=_forced_moves(task),
    )
    return x, report


def _at_target(
    task: _LayerTask, *, front: Sequence[GroupMove] = ()
) -> tuple[_Layout, tuple[BoolArray, IntArray, SolveStatus, str]] | None:
    """Fewest copies reaching ``task.target_imbalance`` from the current plan, or None if out of reach.

    Node-local: the cheapest group re-assignment first, then ones that leave the nodes more room; read
    off the layer's move frontier when given (the same answer as :func:`regroup`, without its programme).
    """
    for margin in _REGROUP_MARGINS:
        homes = _front_homes(task, front, margin) if front else _incremental_homes(task, margin=margin)
        lay = _layout(task, homes=homes)
        found = _incremental(task, lay)
        if found is not None:
            return lay, found
        if task.locality is not Locality.NODE:
            break
    return None


def _front_homes(task: _LayerTask, front: Sequence[GroupMove], margin: float) -> IntArray | None:
    """The fewest-copies assignment of the frontier whose floor is within the target (see regroup)."""
    assert task.target_imbalance is not None
    limit = task.target_imbalance * float(task.w.sum()) / task.cluster.num_gpus / (1 + margin)
    for point in front:
        if point.floor <= limit * (1 + 1e-9):
            return np.asarray(point.home, dtype=np.int64)
    return None


def _remote_share(x: BoolArray, q: FloatArray, lay: _Layout) -> float:
    if lay.home is None:
        return 0.0
    off_home = lay.node_of[None, :] != lay.home[:, None]
    return float((q[:, None] * (x & off_home)).sum() / (q[:, None] * x).sum())


def _pack(task: _LayerTask, lay: _Layout, counts: IntArray) -> tuple[BoolArray, float]:
    w = task.w
    start = lpt_pack(w, counts, lay.caps, lay.allowed, home=lay.home, node_of=lay.node_of)
    x = improve(start, w, counts, lay.allowed, home=lay.home, node_of=lay.node_of)
    return x, float(((w / counts) @ x).max())


def _count_search(
    task: _LayerTask, lay: _Layout, counts: IntArray, x: BoolArray, best: float
) -> tuple[IntArray, BoolArray, float]:
    """Move one replica from one expert to another while re-packing balances better.

    The ``argmax w/c`` counts minimise the heaviest replica, not the busiest GPU: with few slots per GPU
    a different split can pack much better (small layers show it most). Candidates: experts that can
    lose a replica x the heaviest replicas that can gain one; stops at the time share or no gain.
    """
    w, c = task.w, task.cluster
    stop = time.perf_counter() + min(task.time_limit_s / 2, max(task.deadline - time.perf_counter(), 0.0))
    cap = c.gpus_per_node if task.locality is Locality.NODE else c.num_gpus
    same_node: BoolArray = np.asarray((lay.allowed[:, None, :] & lay.allowed[None, :, :]).any(axis=2))
    improved = True
    while improved and time.perf_counter() < stop:
        improved = False
        q = w / counts
        givers = np.flatnonzero(counts > 1)
        takers = [int(e) for e in np.argsort(-q, kind="stable")[:16] if counts[e] < cap]
        for a_raw in givers[np.argsort(q[givers], kind="stable")]:
            a = int(a_raw)
            for b in takers:
                if a == b or not same_node[a, b] or time.perf_counter() >= stop:
                    continue
                trial = counts.copy()
                trial[a] -= 1
                trial[b] += 1
                tx, tbest = _pack(task, lay, trial)
                if tbest < best * (1 - 1e-9):
                    counts, x, best, improved = trial, tx, tbest, True
                    break
            if improved:
                break
    return counts, x, best


def _fresh(task: _LayerTask, lay: _Layout, counts: IntArray) -> tuple[BoolArray, IntArray, SolveStatus, str]:
    """Greedy start, local search (packing, then counts), then CP-SAT when a gap to the bound remains."""
    w = task.w
    x, best = _pack(task, lay, counts)
    if best <= lay.lower * (1 + 1e-9):
        return x, counts, SolveStatus.OPTIMAL, "greedy+swap (at bound)"
    if best > lay.lower * (1 + task.params.gap_tolerance):
        counts, x, best = _count_search(task, lay, counts, x, best)
    q = w / counts
    budget = _cpsat_time(task)
    if (
        not task.params.use_cpsat
        or best <= lay.lower * (1 + task.params.gap_tolerance)
        or budget < _MIN_CPSAT_S
    ):
        return x, counts, SolveStatus.FEASIBLE, "greedy+swap"
    res_x, status = _cpsat_window(task, lay, x, counts, budget)
    if res_x is not None and float((q @ res_x).max()) < best * (1 - 1e-12):
        return res_x, counts, status, "cp-sat"
    if status is SolveStatus.OPTIMAL and _window(x, q, task.params.window_gpus).size == x.shape[1]:
        return x, counts, SolveStatus.OPTIMAL, "greedy+swap (cp-sat proved optimal)"
    return x, counts, SolveStatus.FEASIBLE, "greedy+swap (cp-sat no better)"


def _window(x: BoolArray, q: FloatArray, size: int) -> IntArray:
    """GPUs CP-SAT may re-pack: the busiest and the lightest ``size / 2`` each (all when few)."""
    load = q @ x
    if size >= load.size:
        return np.arange(load.size, dtype=np.int64)
    order = np.argsort(-load, kind="stable")
    return np.sort(np.concatenate([order[: size // 2], order[load.size - (size - size // 2) :]]))


def _cpsat_window(
    task: _LayerTask,
    lay: _Layout,
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
    gpus = _window(x, q, task.params.window_gpus)
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
        home=None if lay.home is None else _home_needed(lay, x, experts, gpus),
        node_of=lay.node_of[gpus] if lay.home is not None else None,
    )
    if res.x is None:
        return None, res.status
    out = x.copy()
    out[np.ix_(experts, gpus)] = res.x
    return out, res.status


def _home_needed(lay: _Layout, x: BoolArray, experts: IntArray, gpus: IntArray) -> IntArray:
    """Home nodes for experts that have no home replica outside the window (others need none: -1)."""
    assert lay.home is not None
    outside = np.ones(x.shape[1], dtype=bool)
    outside[gpus] = False
    at_home_outside = (x[experts] & outside[None, :] & (lay.node_of[None, :] == lay.home[experts, None])).any(
        1
    )
    return np.where(at_home_outside, -1, lay.home[experts]).astype(np.int64)


def _incremental(task: _LayerTask, lay: _Layout) -> tuple[BoolArray, IntArray, SolveStatus, str] | None:
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
    budget = _cpsat_time(task)
    if not task.params.use_cpsat or budget < _MIN_CPSAT_S:
        return x, cnt, SolveStatus.FEASIBLE, "incremental swap"
    res_x, status = _cpsat_window(task, lay, x, cnt, budget, x0=x0, max_load=target)
    if (
        res_x is not None
        and int((res_x & ~x0).sum()) < moves
        and float(((w / cnt) @ res_x).max()) <= target * (1 + 1e-6)
    ):
        return res_x, cnt, status, "incremental cp-sat"
    return x, cnt, SolveStatus.FEASIBLE, "incremental swap"


def _layout(task: _LayerTask, *, homes: IntArray | None = None) -> _Layout:
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
        return _Layout(
            allowed=np.ones((n, c.num_gpus), dtype=bool),
            counts=counts,
            caps=caps,
            lower=max(mean, float((w / counts).max())),
            home=None,
            node_of=node_of,
            expert_node=None,
        )
    expert_node = np.repeat(_group_homes(task) if homes is None else homes, n // task.num_groups)
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
        return _Layout(
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
    return _Layout(
        allowed=expert_node[:, None] == node_of[None, :],
        counts=counts,
        caps=caps,
        lower=max(mean, float((w / counts).max()), node_bound),
        home=None,
        node_of=node_of,
        expert_node=expert_node,
    )


def _current_homes(task: _LayerTask) -> IntArray | None:
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


def _group_homes(task: _LayerTask) -> IntArray:
    """Node of every expert group: kept from the current plan when it fits the rule, else solved."""
    homes = _current_homes(task)
    if homes is not None:
        return homes
    group_size = task.w.shape[0] // task.num_groups
    return assign_groups(
        task.w.reshape(task.num_groups, group_size).sum(axis=1),
        task.cluster.num_nodes,
        time_limit_s=min(task.time_limit_s, 0.05),
        random_seed=task.params.random_seed,
    )


def _forced_moves(task: _LayerTask) -> int | None:
    """Node-local re-plan at a per-layer target: the copies no plan can avoid (group moves), else None."""
    if task.locality is not Locality.NODE or task.x0 is None or task.target_imbalance is None:
        return None
    old = _current_homes(task)
    if old is None:
        return None
    group_size = task.w.shape[0] // task.num_groups
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    mean = float(task.w.sum()) / task.cluster.num_gpus
    cost = forced_moves(
        task.w, task.cluster, task.num_groups, old, move_cost, max_gpu_load=task.target_imbalance * mean
    )
    return None if cost is None else round(cost)


def _incremental_homes(task: _LayerTask, *, margin: float = 0.0) -> IntArray | None:
    """Node-local re-plan: the group->node assignment moving fewest replicas that can reach the target.

    Keeping every group where it is costs nothing and is chosen whenever every node can still reach
    the target; otherwise the fewest groups change node (each copies all its replicas). ``margin`` asks
    every node's floor to sit that much below the target (room for packing). ``None`` (other rules, or
    no assignment reaches the target) leaves the choice to :func:`_group_homes`.
    """
    if task.locality is not Locality.NODE or task.x0 is None or task.target_imbalance is None:
        return None
    c = task.cluster
    group_size = task.w.shape[0] // task.num_groups
    old = _current_homes(task)
    if old is None:
        old = np.full(task.num_groups, -1, dtype=np.int64)
    move_cost = task.x0.sum(axis=1).reshape(task.num_groups, group_size).sum(axis=1).astype(np.float64)
    mean = float(task.w.sum()) / c.num_gpus
    return regroup(
        task.w, c, task.num_groups, old, move_cost, max_gpu_load=task.target_imbalance * mean / (1 + margin)
    )


__all__ = ["assign_groups", "solve"]

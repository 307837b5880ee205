"""The expert placement does not depend on machine load: its budgets are work, not wall time.

Why a real load: with wall-clock budgets a busy CI machine got coarser candidate curves and shorter
CP-SAT runs, so the same problem gave different plans (issue 18). Here the same problems are solved
once on a quiet machine and once while every core spins, and the plans must be identical.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from solvers.experts import (
    Balance,
    Cluster,
    Locality,
    MoEShape,
    PlacementProblem,
    PlacementSolution,
    SolveParams,
    eplb_placement,
    solve,
    synthetic_loads,
)


def _spin(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        x += 1


@contextmanager
def _all_cores_busy(seconds: float) -> Iterator[None]:
    ctx = multiprocessing.get_context("fork")
    until = time.monotonic() + seconds
    procs = [ctx.Process(target=_spin, args=(until,), daemon=True) for _ in range(2 * (os.cpu_count() or 2))]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


def _problems() -> list[PlacementProblem]:
    shape = MoEShape(layers=3, experts=64, groups=8)
    w = synthetic_loads(shape, sigma=1.0, seed=11)[0]
    cluster = Cluster(num_gpus=16, gpus_per_node=8, num_slots=80)
    fresh = PlacementProblem(loads=w, cluster=cluster, num_groups=8, locality=Locality.NODE)
    shifted = synthetic_loads(shape, sigma=1.0, seed=12)[0]
    current = eplb_placement(w, cluster, num_groups=8, hierarchical=True)
    replan = PlacementProblem(loads=shifted, cluster=cluster, num_groups=8, locality=Locality.NODE,
                              current=current, balance=Balance.AGGREGATE)
    return [fresh, replan]


def _key(sol: PlacementSolution) -> tuple[bytes, float, int | None]:
    return np.asarray(sol.placement.to_eplb().phy2log).tobytes(), sol.imbalance, sol.moves


def test_the_same_problem_gives_the_same_plan_under_load() -> None:
    params = SolveParams(max_time_in_seconds=2.0, processes=1)
    quiet = [_key(solve(p, params=params)) for p in _problems()]
    with _all_cores_busy(120.0):
        loaded = [_key(solve(p, params=params)) for p in _problems()]
    assert loaded == quiet

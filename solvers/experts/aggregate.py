"""One plan per layer under an aggregate balance budget: the fewest moves whose layers add up to it.

Why aggregate: every MoE layer waits for its own busiest GPU, so a decode or prefill step spends
``sum_l max_l`` on MoE work (up to a constant), and the step-time imbalance the performance model needs is

``aggregate = sum_l max_l / sum_l mean_l``

(equal to the mean of per-layer max/mean when every layer routes the same tokens, as real routers do). A
re-plan that keeps one layer a little less balanced than a fresh plan would, and balances another a
little better, costs the same step time; when keeping a layer's groups where they are saves a whole
group's copies, that trade is what makes node-local re-plans cheap.

The choice is a multiple-choice knapsack: every layer offers options ``(moves, busiest GPU load)``, one
per layer is taken, the loads must sum to at most the budget and the moves are minimised. Moves are small
integers (a layer never copies more than its slots), so a dynamic programme over the total moves is exact
and fast: ``best[m]`` is the smallest load sum reachable with exactly ``m`` moves (:func:`pick_per_layer`).
The same programme over each layer's forced-moves frontier gives a lower bound on the moves of *any*
plan within the budget (:func:`fewest_moves_within`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

Option = tuple[int, float]
"""``(moves, busiest GPU load)`` of one candidate plan for one layer (load in the layer's token units)."""

_REL_TOL = 1e-12
"""Float slack on the budget: load sums are compared after adding up to ~60 floats."""


@dataclass(frozen=True)
class Choice:
    """The pick: ``index[l]`` is the option taken in layer ``l``; ``moves`` and ``load`` are their sums."""

    index: tuple[int, ...]
    moves: int
    load: float


def pick_per_layer(options: Sequence[Sequence[Option]], budget: float) -> Choice | None:
    """Fewest total moves with one option per layer and the busiest-GPU loads summing to <= ``budget``.

    Exact (dynamic programme over the total moves, see the module docstring); among equal moves the
    smallest load sum wins. O(layers x options x total moves) with numpy, milliseconds for 58 layers.

    Args:
        options: per layer, at least one ``(moves >= 0, load)`` option.
        budget: the largest allowed sum of the chosen loads.

    Returns:
        The choice, or None when even the smallest loads add up to more than ``budget``.

    Raises:
        ValueError: a layer without options or with negative moves (a programming error, not input).

    >>> pick_per_layer([[(0, 5.0), (3, 4.0)], [(0, 6.0), (1, 4.5)]], budget=9.0)
    Choice(index=(1, 1), moves=4, load=8.5)
    >>> pick_per_layer([[(0, 5.0), (3, 4.0)], [(0, 6.0), (1, 4.5)]], budget=10.0)
    Choice(index=(0, 1), moves=1, load=9.5)
    >>> pick_per_layer([[(0, 5.0)]], budget=4.0) is None
    True
    """
    best: FloatArray = np.zeros(1)
    picks: list[NDArray[np.int64]] = []
    for layer, opts in enumerate(options):
        if not opts or min(m for m, _ in opts) < 0:
            raise ValueError(f"layer {layer}: options must be non-empty with moves >= 0")
        width = best.size + max(m for m, _ in opts)
        nxt = np.full(width, np.inf)
        arg = np.full(width, -1, dtype=np.int64)
        for j, (m, load) in enumerate(opts):
            trial = best + load
            seg = nxt[m : m + best.size]
            better = trial < seg
            seg[better] = trial[better]
            arg[m : m + best.size][better] = j
        best = nxt
        picks.append(arg)
    ok = np.flatnonzero(best <= budget * (1 + _REL_TOL) + _REL_TOL)
    if ok.size == 0:
        return None
    total = int(ok[0])
    index: list[int] = []
    m = total
    for layer in range(len(options) - 1, -1, -1):
        j = int(picks[layer][m])
        index.append(j)
        m -= options[layer][j][0]
    index.reverse()
    return Choice(index=tuple(index), moves=total, load=float(best[total]))


def fewest_moves_within(frontiers: Sequence[Sequence[Option]], budget: float) -> int | None:
    """A lower bound on the moves of any plan whose busiest-GPU loads sum to <= ``budget``.

    ``frontiers[l]`` lists ``(moves no plan of that kind avoids, smallest busiest load it allows)`` for
    every kind of plan layer ``l`` can take (e.g. every group->node assignment); every real plan of the
    layer then sits at or above one of them in both coordinates, so the knapsack over the frontiers
    bounds the knapsack over real plans.

    >>> fewest_moves_within([[(0, 5.0), (70, 4.0)], [(0, 5.0)]], budget=9.0)
    70
    """
    choice = pick_per_layer(frontiers, budget)
    return None if choice is None else choice.moves


def pareto(options: Sequence[Option]) -> list[int]:
    """Indices of the options no other option beats in both moves and load (fewest moves first).

    >>> pareto([(5, 1.0), (0, 3.0), (2, 3.0), (3, 2.0)])
    [1, 3, 0]
    """
    order = sorted(range(len(options)), key=lambda i: (options[i][0], options[i][1]))
    keep: list[int] = []
    lowest = np.inf
    for i in order:
        if options[i][1] < lowest:
            keep.append(i)
            lowest = options[i][1]
    return keep


__all__ = ["Choice", "Option", "fewest_moves_within", "pareto", "pick_per_layer"]

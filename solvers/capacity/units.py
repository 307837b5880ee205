"""Integer units shared by the CP-SAT model, the greedy baseline and the exhaustive check.

CP-SAT needs integer coefficients. Goodput and demand are in milli-requests/s (goodput rounded down and
demand rounded up, so an integer-feasible plan really covers the demand); power in whole watts (rounded
up); cost in units of 1e-5 USD per window (rounded to nearest, relative error < 1e-6 on any real plan),
start costs in the same units per replica started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from solvers.capacity.problem import CapacityProblem, started

RATE_SCALE = 1000
COST_SCALE = 100_000


@dataclass(frozen=True)
class Units:
    """The problem's numbers as integers.

    Attributes:
        goodput: per config, milli-req/s per replica.
        power: per config, watts per replica.
        demand: per window, milli-req/s.
        cost: per config then window, 1e-5 USD for one replica over the window.
        power_budget: watts, or None.
        start_cost: per config, 1e-5 USD for starting one replica (``start_s`` of its GPUs' time).
    """

    goodput: tuple[int, ...]
    power: tuple[int, ...]
    demand: tuple[int, ...]
    window_cost: tuple[tuple[int, ...], ...]
    power_budget: int | None
    start_cost: tuple[int, ...]

    @staticmethod
    def of(problem: CapacityProblem) -> Units:
        """Scale a problem."""
        return Units(
            goodput=tuple(max(1, math.floor(c.goodput_rps * RATE_SCALE)) for c in problem.configs),
            power=tuple(math.ceil(c.power_w) for c in problem.configs),
            demand=tuple(math.ceil(w.demand_rps * RATE_SCALE - 1e-9) for w in problem.windows),
            window_cost=tuple(
                tuple(round(c.price_per_hour * w.duration_s / 3600.0 * COST_SCALE) for w in problem.windows)
                for c in problem.configs),
            power_budget=None if problem.power_budget_w is None else math.floor(problem.power_budget_w),
            start_cost=tuple(round(c.price_per_hour * c.start_s / 3600.0 * COST_SCALE)
                             for c in problem.configs),
        )

    def cost(self, assignment: Mapping[tuple[int, int], int]) -> int:
        """Total cost of ``(config, window) -> replicas`` in cost units: replica time plus starts."""
        run = sum(self.window_cost[i][w] * n for (i, w), n in assignment.items())
        return run + sum(self.start_cost[i] * sum(row) for i, row in enumerate(self.started(assignment)))

    def started(self, assignment: Mapping[tuple[int, int], int]) -> list[list[int]]:
        """Replicas started per config per window: each window's from the one before it, the first
        window's from the last (the plan repeats)."""
        nw = len(self.demand)
        return [started([assignment.get((i, w), 0) for w in range(nw)]) for i in range(len(self.goodput))]

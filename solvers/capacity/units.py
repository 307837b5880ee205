"""Integer units shared by the CP-SAT model, the greedy baseline and the exhaustive check.

CP-SAT needs integer coefficients. Goodput and demand are in milli-requests/s (goodput rounded down and
demand rounded up, so an integer-feasible plan really covers the demand); power in whole watts (rounded
up); cost in units of 1e-5 USD per window (rounded to nearest, relative error < 1e-6 on any real plan).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from solvers.capacity.problem import CapacityProblem

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
    """

    goodput: tuple[int, ...]
    power: tuple[int, ...]
    demand: tuple[int, ...]
    window_cost: tuple[tuple[int, ...], ...]
    power_budget: int | None

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
        )

    def cost(self, assignment: Mapping[tuple[int, int], int]) -> int:
        """Total cost of ``(config, window) -> replicas`` in cost units."""
        return sum(self.window_cost[i][w] * n for (i, w), n in assignment.items())

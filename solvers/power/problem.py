"""Request and reply of the row oversubscription solver: frozen dataclasses, status as data.

A :class:`PowerProblem` holds the row (budget, per-server base power, GPUs and TDP), the trace scenarios
(per-server GPU power over time at the row's load, per priority tier), the clock model of locked servers
and the policy's fixed knobs; :func:`solvers.power.cpsat.solve` chooses the servers per tier and the
thresholds ``t1``/``t2`` and answers with a :class:`PowerPlan`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.contracts.power import ClockModel, PolcaParams
from solvers.status import SolveStatus
from traces.errors import InputError

F64 = NDArray[np.float64]




@dataclass(frozen=True)
class SolveParams:
    """Solver controls (always explicit: time limit, workers, seed)."""

    time_limit_s: float = 20.0
    workers: int = 2
    seed: int = 0


@dataclass(frozen=True, eq=False)
class PowerScenario:
    """One trace scenario: mean GPU watts of one server of each tier per telemetry period.

    Attributes:
        name: e.g. the trace and seed it was replayed from.
        hp_gpu_w: ``[periods]`` GPU watts of an average high-priority server, unlocked.
        lp_gpu_w: ``[periods]`` the same for a low-priority server.
    """

    name: str
    hp_gpu_w: F64
    lp_gpu_w: F64

    def __post_init__(self) -> None:
        if self.hp_gpu_w.shape != self.lp_gpu_w.shape or self.hp_gpu_w.ndim != 1 or self.hp_gpu_w.size < 2:
            raise InputError(
                f"scenario {self.name}: tier series of shapes {self.hp_gpu_w.shape} and "
                f"{self.lp_gpu_w.shape}",
                field="scenario",
                expected="two equal 1-D series, >= 2 periods",
            )


@dataclass(frozen=True, eq=False)
class PowerProblem:
    """Servers per row and policy thresholds to choose.

    Attributes:
        budget_w: row power budget (all servers' GPUs and base).
        base_w: non-GPU power of one server.
        gpus_per_server: GPUs per server.
        tdp_w: per-GPU board power (nameplate).
        scenarios: the trace scenarios, all on the telemetry period of ``policy``.
        clock_model: power and slowdown of locked servers.
        policy: fixed knobs (``t_brake``, hysteresis, clocks, timing); ``t1``/``t2`` are chosen.
        t1_grid, t2_grid: candidate thresholds (fractions of the budget).
        max_capped_fraction: the chance constraint on time with any server locked (epsilon).
        max_hp_locked_fraction: time with high-priority servers locked (their latency budget).
        min_hp_share: at least this share of the row's servers are high priority.
        max_servers: the most servers the row can take (space, network ports, the replayed pool).
        min_servers: the fewest worth planning (e.g. the nameplate count).
    """

    budget_w: float
    base_w: float
    gpus_per_server: int
    tdp_w: float
    scenarios: tuple[PowerScenario, ...]
    clock_model: ClockModel
    policy: PolcaParams
    t1_grid: tuple[float, ...] = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96)
    t2_grid: tuple[float, ...] = (0.90, 0.93, 0.95, 0.97, 0.98, 0.99)
    max_capped_fraction: float = 0.01
    max_hp_locked_fraction: float = 0.002
    min_hp_share: float = 0.5
    max_servers: int = 256
    min_servers: int = 1

    def __post_init__(self) -> None:
        if not self.budget_w > 0:
            raise InputError(f"row budget {self.budget_w} W", field="budget_w", expected="watts > 0")
        if self.base_w < 0 or self.gpus_per_server < 1 or self.tdp_w <= 0:
            raise InputError(
                "bad server description",
                field="base_w/gpus_per_server/tdp_w",
                expected="base >= 0 W, >= 1 GPU, TDP > 0 W",
            )
        if not self.scenarios:
            raise InputError("no scenario", field="scenarios", expected="at least one trace scenario")
        if not (0 <= self.max_capped_fraction < 1 and 0 <= self.max_hp_locked_fraction < 1):
            raise InputError(
                "capped-time fractions out of range",
                field="max_capped_fraction",
                expected="0 <= fraction < 1",
            )
        if not 0 <= self.min_hp_share <= 1:
            raise InputError(f"min_hp_share {self.min_hp_share}", field="min_hp_share", expected="0..1")
        if not 1 <= self.min_servers <= self.max_servers:
            raise InputError(
                f"servers {self.min_servers}..{self.max_servers}",
                field="max_servers",
                expected="1 <= min_servers <= max_servers",
            )
        pairs = self.threshold_pairs()
        if not pairs:
            raise InputError(
                "no (t1, t2) pair with t1 + hysteresis < t2 <= t_brake",
                field="t1_grid/t2_grid",
                expected="thresholds below the brake level, t2 above t1",
            )

    def threshold_pairs(self) -> tuple[tuple[float, float], ...]:
        """Candidate ``(t1, t2)`` pairs the policy accepts (``t1 < t2 <= t_brake``)."""
        tb = self.policy.t_brake
        return tuple(
            (a, b)
            for a in sorted(self.t1_grid)
            for b in sorted(self.t2_grid)
            if 0 < a < b <= tb and self.policy.hysteresis < a
        )

    def hp_min(self, servers: int) -> int:
        """High-priority servers required in a row of ``servers``."""
        return int(np.ceil(self.min_hp_share * servers - 1e-9))


@dataclass(frozen=True)
class PowerPlan:
    """The solver's answer (before verification by replay).

    Attributes:
        hp_servers, lp_servers: servers per tier in the row.
        t1, t2: chosen thresholds (fractions of the budget).
        capped_fraction: model's fraction of periods with a lock decided (pooled over scenarios).
        hp_locked_fraction: model's fraction with the HP level decided.
        status: solver status; ``objective`` and ``bound`` in the model's units (servers).
        wall_s: solver wall time.
    """

    hp_servers: int
    lp_servers: int
    t1: float
    t2: float
    capped_fraction: float
    hp_locked_fraction: float
    status: SolveStatus
    objective: float
    bound: float
    wall_s: float

    @property
    def servers(self) -> int:
        return self.hp_servers + self.lp_servers


def nameplate_servers(budget_w: float, *, gpus_per_server: int, tdp_w: float, base_w: float) -> int:
    """Servers a budget takes at nameplate: ``floor(B / (TDP x GPUs + base))``.

    >>> nameplate_servers(339_200, gpus_per_server=8, tdp_w=700, base_w=2880)
    40
    """
    return math.floor(budget_w / (tdp_w * gpus_per_server + base_w) + 1e-9)

"""The contract between the replay loop (which measures power and applies clock locks) and capping policies.

Every ``telemetry_period_s`` of simulated time the replay loop builds a :class:`PowerContext` from the
per-GPU power of the steps just run (perf model ``step_power_w``; idle GPUs at idle power), aggregated per
server (``gpus_per_node`` GPUs), and calls the policy. The decision's clock locks take effect after
``actuation_latency_s`` (in-band clock lock about 0.1 s, out-of-band power cap seconds); a locked replica
runs its steps through ``ReplicaPerf.at_clock(mhz)``, so the latency cost shows in the per-request results.
A policy is a pure function; its typed state travels in the context and the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from traces.errors import InputError

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PowerContext:
    """What a capping policy sees at a telemetry tick.

    Attributes:
        now_s: simulated time.
        server_power_w: average power of each server over the last period (GPUs plus the server's
            non-GPU base power), indexed by server id.
        server_priority: ``"hp"`` or ``"lp"`` per server (from the pool its replicas belong to).
        server_clock_mhz: the clock each server is locked to now (``None`` = unlocked).
        row_budget_w: the row's power budget.
        state: the policy's own state from its previous decision (``None`` at the first tick).
    """

    now_s: float
    server_power_w: tuple[float, ...]
    server_priority: tuple[str, ...]
    server_clock_mhz: tuple[float | None, ...]
    row_budget_w: float
    state: object | None = None

    @property
    def row_power_w(self) -> float:
        return sum(self.server_power_w)


@dataclass(frozen=True)
class CapDecision:
    """Clock locks to apply (``None`` = unlock), one per server, the policy's next state, and whether
    the out-of-band brake (a hard power cap on every server, the last-resort safety net) engaged."""

    server_clock_mhz: tuple[float | None, ...]
    state: object | None = None
    brake: bool = False


CappingPolicy = Callable[[PowerContext], CapDecision]
"""``decide(ctx) -> CapDecision``; the no-op policy returns the current clocks unchanged."""


def no_capping(ctx: PowerContext) -> CapDecision:
    """Never lock clocks (the baseline every replay uses unless a policy is given)."""
    return CapDecision(server_clock_mhz=ctx.server_clock_mhz, state=ctx.state)


HP = "hp"
LP = "lp"

DEFAULT_BASE_W = 2880.0
"""Non-GPU power of an 8 x H100 SXM server, W (CPUs, memory, NICs, NVSwitches, fans, power-supply losses).

Latif et al., "Single-Node Power Demand During AI Training: Measurements on an 8-GPU NVIDIA H100 System",
IEEE Access 13:61740-61747 (2025), arXiv 2412.08602, measured at most about 8.4 kW (8.48 kW peak) at the
wall of an 8 x H100 SXM HGX node with the GPUs near full utilization, against the 10.2 kW rating of the
NVIDIA DGX H100 datasheet. With the eight GPUs at their 700 W board limit that leaves 8,480 - 5,600 =
2,880 W. We hold it constant (fans and PSU losses fall with GPU load, so this is conservative for an
inference row); nameplate is ``TDP x GPUs + base`` = 8.48 kW, the measured maximum, below the 10.2 kW
rating (a row sized by the rating would hold 20 % more power). Here, not in
:mod:`planner.power_study.row` which uses it, so that ``fleetwise power --help`` (its option default)
does not import the power study.
"""


class CapLevel(IntEnum):
    """How hard the row is being held down (ordered: a higher level locks more)."""

    NONE = 0
    LP = 1
    HP = 2
    BRAKE = 3


@dataclass(frozen=True)
class PolcaParams:
    """Every knob of the policy and of its actuation (the replay loop reads the timing fields).

    Attributes:
        t1: first threshold (fraction of the row budget): lock low-priority servers.
        t2: second threshold: lock high-priority servers too, LP down to ``lp_min_clock_mhz``.
        t_brake: out-of-band brake level (1.0 = the budget itself).
        hysteresis: release threshold of a level is its entry threshold minus this (fraction of budget).
        dwell_s: row power must stay under the release threshold this long before a level is released.
        telemetry_period_s: how often row power is measured and the policy called.
        actuation_latency_s: from decision to clocks in force for in-band clock locks (about 0.1 s).
        brake_latency_s: from decision to the out-of-band cap in force (BMC/OOB: seconds).
        lp_clock_mhz: SM clock low-priority servers are locked to at level ``LP``.
        lp_min_clock_mhz: SM clock LP servers are locked to at level ``HP``.
        hp_clock_mhz: SM clock high-priority servers are locked to at level ``HP``.
        brake_clock_mhz: the clock the out-of-band cap drives every GPU down to (modelled as a clock).
    """

    t1: float = 0.85
    t2: float = 0.93
    t_brake: float = 1.0
    hysteresis: float = 0.03
    dwell_s: float = 5.0
    telemetry_period_s: float = 1.0
    actuation_latency_s: float = 0.1
    brake_latency_s: float = 2.0
    lp_clock_mhz: float = 1400.0
    lp_min_clock_mhz: float = 1200.0
    hp_clock_mhz: float = 1600.0
    brake_clock_mhz: float = 900.0

    def __post_init__(self) -> None:
        if not 0.0 < self.t1 < self.t2 <= self.t_brake:
            raise InputError(
                f"thresholds t1={self.t1}, t2={self.t2}, t_brake={self.t_brake} out of order",
                field="t1/t2/t_brake",
                expected="0 < t1 < t2 <= t_brake",
            )
        if not 0.0 <= self.hysteresis < self.t1:
            raise InputError(
                f"hysteresis {self.hysteresis} out of range",
                field="hysteresis",
                expected="0 <= hysteresis < t1",
            )
        for name in ("telemetry_period_s",):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive", field=name, expected="seconds > 0")
        for name in ("dwell_s", "actuation_latency_s", "brake_latency_s"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must not be negative", field=name, expected="seconds >= 0")
        for name in ("lp_clock_mhz", "lp_min_clock_mhz", "hp_clock_mhz", "brake_clock_mhz"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive", field=name, expected="MHz > 0")
        if self.lp_min_clock_mhz > self.lp_clock_mhz:
            raise InputError(
                "lp_min_clock_mhz above lp_clock_mhz",
                field="lp_min_clock_mhz",
                expected=f"<= lp_clock_mhz ({self.lp_clock_mhz:g})",
            )

    def threshold(self, level: CapLevel) -> float:
        """The entry threshold of ``level`` as a fraction of the budget (0 for ``NONE``)."""
        return {CapLevel.NONE: 0.0, CapLevel.LP: self.t1, CapLevel.HP: self.t2, CapLevel.BRAKE: self.t_brake}[
            level
        ]

    def clocks(self, level: CapLevel, priority: str) -> float | None:
        """The clock a server of ``priority`` runs at under ``level`` (``None`` = unlocked)."""
        if level is CapLevel.BRAKE:
            return self.brake_clock_mhz
        if level is CapLevel.HP:
            return self.hp_clock_mhz if priority == HP else self.lp_min_clock_mhz
        if level is CapLevel.LP:
            return None if priority == HP else self.lp_clock_mhz
        return None


@dataclass(frozen=True)
class ClockModel:
    """Effect of locking the SM clock, per clock, for one replica type and workload mix.

    Attributes:
        max_clock_mhz: the unlocked clock.
        idle_w: per-GPU power that no lock removes (the perf model's idle power).
        gpus_per_server: GPUs in one server.
        clocks_mhz: the clocks tabulated (ascending).
        power_ratio: ``(P(f) - idle) / (P(max) - idle)`` at the mix, per clock.
        slowdown: ``step_time(f) / step_time(max)`` at the mix, per clock.
    """

    max_clock_mhz: float
    idle_w: float
    gpus_per_server: int
    clocks_mhz: tuple[float, ...]
    power_ratio: tuple[float, ...]
    slowdown: tuple[float, ...]

    def ratio(self, clock_mhz: float | None) -> float:
        """Power ratio at ``clock_mhz`` (1 when unlocked), interpolated between tabulated clocks."""
        if clock_mhz is None or clock_mhz >= self.max_clock_mhz or not self.clocks_mhz:
            return 1.0
        return float(np.interp(clock_mhz, self.clocks_mhz, self.power_ratio))

    def slow(self, clock_mhz: float | None) -> float:
        """Step-time factor at ``clock_mhz`` (1 when unlocked)."""
        if clock_mhz is None or clock_mhz >= self.max_clock_mhz or not self.clocks_mhz:
            return 1.0
        return float(np.interp(clock_mhz, self.clocks_mhz, self.slowdown))

    def locked_gpu_w(self, gpu_w: F64 | float, clock_mhz: float | None) -> F64:
        """Server GPU watts under a lock: idle stays, the dynamic part scales by :meth:`ratio`."""
        idle = self.idle_w * self.gpus_per_server
        g = np.asarray(gpu_w, dtype=np.float64)
        out: F64 = idle + np.maximum(g - idle, 0.0) * self.ratio(clock_mhz) + np.minimum(g - idle, 0.0)
        return out

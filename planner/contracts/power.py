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

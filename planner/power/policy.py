"""POLCA-style tiered clock locking as a pure :data:`~planner.contracts.power.CappingPolicy`.

The policy follows area A2 of the design notes (POLCA, Patel et al., arXiv 2308.12908): row power is
compared with fractions of the row budget ``B`` at every telemetry tick, and the cheapest lever acts
first. Every number is a parameter (:class:`PolcaParams`) because POLCA's own values could not be checked.

Levels, escalating immediately when the measured row power ``P`` reaches a threshold:

=========  ===================  ==============================================================
level      entered when         clocks
=========  ===================  ==============================================================
``NONE``   (start)              every server unlocked
``LP``     ``P >= t1 * B``      low-priority servers locked to ``lp_clock_mhz``
``HP``     ``P >= t2 * B``      LP servers to ``lp_min_clock_mhz``, HP servers to ``hp_clock_mhz``
``BRAKE``  ``P >= t_brake * B`` out-of-band cap on every server (``brake_clock_mhz``); an event
=========  ===================  ==============================================================

Release is staged and damped: the level steps down by one only after ``P`` has stayed below
``(threshold_of_level - hysteresis) * B`` for ``dwell_s`` seconds, timed from the context's ``now_s``
(never from tick counts, so a change of telemetry period keeps the same behaviour).

>>> params = PolcaParams(t1=0.8, t2=0.9, hysteresis=0.05, dwell_s=2.0)
>>> ctx = PowerContext(now_s=0.0, server_power_w=(450.0, 400.0), server_priority=("hp", "lp"),
...                    server_clock_mhz=(None, None), row_budget_w=1000.0)
>>> d = polca_decide(ctx, params=params)
>>> d.server_clock_mhz, d.state.level.name
((None, 1400.0), 'LP')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from functools import partial

from planner.contracts.power import CapDecision, CappingPolicy, PowerContext, no_capping
from traces.errors import InputError

HP = "hp"
LP = "lp"


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
class PolcaState:
    """The policy's memory between ticks.

    Attributes:
        level: the level decided last.
        below_since_s: since when row power has been under the current level's release threshold
            (``None`` while it is not).
        brake_events: times the brake level was entered so far.
        escalations: times any level was raised so far.
    """

    level: CapLevel = CapLevel.NONE
    below_since_s: float | None = None
    brake_events: int = 0
    escalations: int = 0


def target_level(row_fraction: float, params: PolcaParams) -> CapLevel:
    """The highest level whose entry threshold ``row_fraction`` (row power / budget) reaches.

    >>> target_level(0.95, PolcaParams(t1=0.8, t2=0.9)).name
    'HP'
    """
    for level in (CapLevel.BRAKE, CapLevel.HP, CapLevel.LP):
        if row_fraction >= params.threshold(level):
            return level
    return CapLevel.NONE


def next_state(state: PolcaState, *, now_s: float, row_fraction: float, params: PolcaParams) -> PolcaState:
    """One step of the level machine: escalate at once, release one level after the dwell."""
    target = target_level(row_fraction, params)
    if target > state.level:
        return replace(
            state,
            level=target,
            below_since_s=None,
            brake_events=state.brake_events + (target is CapLevel.BRAKE),
            escalations=state.escalations + 1,
        )
    if state.level is CapLevel.NONE:
        return state
    release_at = params.threshold(state.level) - params.hysteresis
    if row_fraction >= release_at:
        return replace(state, below_since_s=None)
    since = now_s if state.below_since_s is None else state.below_since_s
    if now_s - since >= params.dwell_s:
        return replace(state, level=CapLevel(state.level - 1), below_since_s=None)
    return replace(state, below_since_s=since)


def polca_decide(ctx: PowerContext, *, params: PolcaParams) -> CapDecision:
    """Decide the clocks for the next period from the row power just measured.

    Args:
        ctx: the telemetry tick (its ``state`` is a :class:`PolcaState` or ``None`` at the first tick).
        params: thresholds, dwell and clocks.

    Returns:
        One clock per server (``None`` = unlocked), the next :class:`PolcaState`, and ``brake`` while the
        brake level holds.

    Raises:
        InputError: the budget is not positive, or a priority is neither ``"hp"`` nor ``"lp"``.
    """
    if not ctx.row_budget_w > 0:
        raise InputError(f"row budget {ctx.row_budget_w} W", field="row_budget_w", expected="watts > 0")
    bad = [p for p in ctx.server_priority if p not in (HP, LP)]
    if bad:
        raise InputError(
            f"unknown server priority {bad[0]!r}", field="server_priority", expected="'hp' or 'lp'"
        )
    prev = ctx.state if isinstance(ctx.state, PolcaState) else PolcaState()
    state = next_state(prev, now_s=ctx.now_s, row_fraction=ctx.row_power_w / ctx.row_budget_w, params=params)
    clocks = tuple(params.clocks(state.level, p) for p in ctx.server_priority)
    return CapDecision(server_clock_mhz=clocks, state=state, brake=state.level is CapLevel.BRAKE)


def make_polca(params: PolcaParams) -> CappingPolicy:
    """The POLCA policy with its parameters bound, ready for the replay loop.

    >>> make_polca(PolcaParams())(PowerContext(0.0, (10.0,), ("lp",), (None,), 100.0)).brake
    False
    """
    return partial(polca_decide, params=params)


class PolicyName(StrEnum):
    """Capping policies by name (CLI and scenario files)."""

    NONE = "none"
    POLCA = "polca"


def _none(_params: PolcaParams) -> CappingPolicy:
    return no_capping


POLICIES: dict[PolicyName, Callable[[PolcaParams], CappingPolicy]] = {
    PolicyName.NONE: _none,
    PolicyName.POLCA: make_polca,
}
"""Explicit map from name to policy factory (no import-time self-registration)."""

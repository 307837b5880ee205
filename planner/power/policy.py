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
from enum import StrEnum
from functools import partial

from planner.contracts.power import (
    HP,
    LP,
    CapDecision,
    CapLevel,
    CappingPolicy,
    PolcaParams,
    PowerContext,
    no_capping,
)
from traces.errors import InputError


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

"""Tick-by-tick tests of the POLCA policy with an injected clock (``now_s``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from planner.contracts.power import CapDecision, CapLevel, PolcaParams, PowerContext
from planner.power.policy import POLICIES, PolcaState, PolicyName, make_polca
from traces.errors import InputError

PRIO = ("hp", "lp", "lp")
PARAMS = PolcaParams(
    t1=0.8,
    t2=0.9,
    t_brake=1.0,
    hysteresis=0.05,
    dwell_s=3.0,
    lp_clock_mhz=1400.0,
    lp_min_clock_mhz=1200.0,
    hp_clock_mhz=1600.0,
    brake_clock_mhz=900.0,
)


def tick(policy: object, now: float, row_w: float, state: object | None) -> CapDecision:
    """One telemetry tick at ``now`` with the row at ``row_w`` of a 1000 W budget."""
    ctx = PowerContext(
        now_s=now,
        server_power_w=(row_w / 3,) * 3,
        server_priority=PRIO,
        server_clock_mhz=(None, None, None),
        row_budget_w=1000.0,
        state=state,
    )
    assert callable(policy)
    dec = policy(ctx)
    assert isinstance(dec, CapDecision)
    return dec


def run(powers: Sequence[float], period: float = 1.0) -> list[CapDecision]:
    policy = make_polca(PARAMS)
    state: object | None = None
    out = []
    for k, p in enumerate(powers):
        d = tick(policy, k * period, p, state)
        state = d.state
        out.append(d)
    return out


def level(d: CapDecision) -> CapLevel:
    assert isinstance(d.state, PolcaState)
    return d.state.level


def test_escalates_by_tier_and_locks_the_right_servers() -> None:
    ds = run([500, 820, 910, 1010])
    assert [level(d) for d in ds] == [CapLevel.NONE, CapLevel.LP, CapLevel.HP, CapLevel.BRAKE]
    assert ds[0].server_clock_mhz == (None, None, None)
    assert ds[1].server_clock_mhz == (None, 1400.0, 1400.0)  # LP first, HP untouched
    assert ds[2].server_clock_mhz == (1600.0, 1200.0, 1200.0)
    assert ds[3].server_clock_mhz == (900.0, 900.0, 900.0) and ds[3].brake
    assert isinstance(ds[3].state, PolcaState) and ds[3].state.brake_events == 1


def test_jump_straight_to_hp_level() -> None:
    ds = run([500, 950])
    assert level(ds[1]) is CapLevel.HP and not ds[1].brake


def test_hysteresis_band_holds_the_lock() -> None:
    # 0.78 is under t1 but above t1 - h = 0.75: the LP lock stays however long it lasts
    ds = run([820] + [780] * 10)
    assert all(level(d) is CapLevel.LP for d in ds)


def test_release_needs_the_dwell_and_is_staged() -> None:
    ds = run([950] + [700] * 8)
    levels = [level(d) for d in ds]
    # below t2 - h from t=1: release to LP at t=4 (3 s dwell), then below t1 - h from t=5: NONE at t=8
    assert levels[:4] == [CapLevel.HP] * 4
    assert levels[4:8] == [CapLevel.LP] * 4
    assert levels[8] is CapLevel.NONE


def test_dwell_is_measured_in_time_not_ticks() -> None:
    # 700 W from t=2, ticks every 2 s: 2 s below at t=4 (< 3 s dwell), 4 s at t=6: released then
    ds = run([950, 700, 700, 700], period=2.0)
    assert [level(d) for d in ds] == [CapLevel.HP, CapLevel.HP, CapLevel.HP, CapLevel.LP]


def test_a_spike_during_release_resets_the_dwell() -> None:
    ds = run([950, 700, 700, 880, 700, 700, 700])
    # 880 >= t2 - h = 0.85: the dwell restarts at t=4, so the HP level holds through t=6
    assert all(level(d) is CapLevel.HP for d in ds)


def test_brake_events_count_entries() -> None:
    ds = run([1010] + [100] * 4 + [1010])
    last = ds[-1].state
    assert isinstance(last, PolcaState) and last.brake_events == 2


def test_registry_and_no_capping() -> None:
    noop = POLICIES[PolicyName.NONE](PARAMS)
    d = tick(noop, 0.0, 2000.0, None)
    assert d.server_clock_mhz == (None, None, None) and not d.brake
    assert level(tick(POLICIES[PolicyName.POLCA](PARAMS), 0.0, 2000.0, None)) is CapLevel.BRAKE


@pytest.mark.parametrize(
    "kw",
    [
        dict(t1=0.9, t2=0.8),
        dict(t2=1.1),
        dict(hysteresis=0.9),
        dict(telemetry_period_s=0.0),
        dict(dwell_s=-1.0),
        dict(lp_min_clock_mhz=1500.0),
        dict(hp_clock_mhz=0.0),
    ],
)
def test_bad_params_are_input_errors(kw: dict[str, float]) -> None:
    with pytest.raises(InputError):
        PolcaParams(**kw)


def test_bad_context_is_an_input_error() -> None:
    policy = make_polca(PARAMS)
    with pytest.raises(InputError, match="priority"):
        policy(PowerContext(0.0, (1.0,), ("gold",), (None,), 10.0))
    with pytest.raises(InputError, match="budget"):
        policy(PowerContext(0.0, (1.0,), ("hp",), (None,), 0.0))

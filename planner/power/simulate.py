"""Run a capping policy tick by tick over a power timeline (counterfactual power of locked servers).

This is the row-level POLCA experiment on recorded or replayed power: every ``telemetry_period_s`` the row
power *as it would have been* under the clocks then in force is averaged over the period, the policy is
called with a :class:`~planner.contracts.power.PowerContext`, and its clock locks take effect
``actuation_latency_s`` later (the brake ``brake_latency_s`` later). A locked server's GPU power is the
timeline's unlocked power passed through :meth:`~planner.power.timeline.ClockModel.locked_gpu_w`.

It answers what the policy does to power (fraction of time capped, per tier, brake events, peak row power);
what it does to latency is :mod:`planner.power.latency` (from the replay's requests) or the simulator's
in-loop capping.

>>> import numpy as np
>>> from planner.power.policy import PolcaParams, make_polca
>>> from planner.power.timeline import ClockModel, PowerTimeline
>>> tl = PowerTimeline(np.arange(6.0), 1.0, np.array([[500.0, 500]] * 2 + [[900.0, 900]] * 4), ("s0", "s1"))
>>> cm = ClockModel(1980, 0.0, 1, (1200.0, 1400.0, 1600.0), (0.5, 0.6, 0.8), (1.2, 1.1, 1.05))
>>> run = run_policy(tl, priorities=("hp", "lp"), budget_w=2000.0, base_w=0.0,
...                  params=PolcaParams(t1=0.8, t2=0.95, actuation_latency_s=0.0), clock_model=cm)
>>> run.lp_locked_fraction, run.hp_locked_fraction, run.brake_events
(0.5, 0.0, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planner.contracts.power import HP, LP, CappingPolicy, ClockModel, PolcaParams, PowerContext
from planner.power.policy import make_polca
from planner.power.timeline import PowerTimeline
from traces.errors import InputError

F64 = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PolicyRun:
    """What a policy did over a timeline.

    Attributes:
        t_s: sample start times.
        dt_s: sample length.
        row_w: row power per sample with the locks in force (GPUs plus base).
        row_unlocked_w: row power per sample had nothing been locked.
        clock_mhz: ``[samples, servers]`` clock in force at the end of each sample (NaN = unlocked).
        locked_share: ``[samples, servers]`` share of each sample the server spent locked (0..1).
        slow_extra: ``[samples, servers]`` extra step time over the sample: ``sum (slowdown - 1) dt``.
        budget_w: the row budget.
        capped_fraction: share of time any server was locked (the "time capped" of the targets).
        lp_locked_fraction: share of time LP servers were locked.
        hp_locked_fraction: share of time HP servers were locked.
        brake_fraction: share of time the brake was in force.
        brake_events: times the policy entered the brake level.
        over_budget_fraction: share of samples whose row power (locks in force) exceeded the budget.
        peak_row_w: highest row power with the locks in force.
        peak_row_unlocked_w: highest row power had nothing been locked.
    """

    t_s: F64
    dt_s: float
    row_w: F64
    row_unlocked_w: F64
    clock_mhz: F64
    locked_share: F64
    slow_extra: F64
    budget_w: float
    capped_fraction: float
    lp_locked_fraction: float
    hp_locked_fraction: float
    brake_fraction: float
    brake_events: int
    over_budget_fraction: float
    peak_row_w: float
    peak_row_unlocked_w: float


def run_policy(
    timeline: PowerTimeline,
    *,
    priorities: Sequence[str],
    budget_w: float,
    base_w: float,
    params: PolcaParams,
    clock_model: ClockModel,
    policy: CappingPolicy | None = None,
) -> PolicyRun:
    """Replay ``policy`` (default: POLCA with ``params``) over ``timeline``.

    Args:
        timeline: unlocked GPU power per server.
        priorities: ``"hp"`` or ``"lp"`` per server.
        budget_w: row power budget (GPUs plus every server's base).
        base_w: non-GPU power of one server (constant; clock locks do not change it).
        params: telemetry period and latencies (and the POLCA knobs when ``policy`` is None).
        clock_model: power and slowdown of a locked server.
        policy: any :data:`~planner.contracts.power.CappingPolicy`.

    Returns:
        The :class:`PolicyRun`.

    Raises:
        InputError: priorities do not match the servers, a bad budget, or a telemetry period that is not
            a whole number of samples.
    """
    n_srv = timeline.servers
    prio = tuple(priorities)
    if len(prio) != n_srv:
        raise InputError(
            f"{len(prio)} priorities for {n_srv} servers",
            field="server_priority",
            expected="one 'hp'/'lp' per server",
        )
    if any(p not in (HP, LP) for p in prio):
        raise InputError("unknown server priority", field="server_priority", expected="'hp' or 'lp'")
    if not budget_w > 0:
        raise InputError(f"row budget {budget_w} W", field="row_budget_w", expected="watts > 0")
    if base_w < 0:
        raise InputError(f"server base power {base_w} W", field="server_base_w", expected="watts >= 0")
    dt = timeline.dt_s
    period = round(params.telemetry_period_s / dt)
    if period < 1 or abs(period * dt - params.telemetry_period_s) > 1e-6 * max(dt, 1.0):
        raise InputError(
            f"telemetry period {params.telemetry_period_s:g} s is not a whole number of {dt:g} s samples",
            path=timeline.source,
            field="telemetry_period_s",
            expected=f"a multiple of {dt:g} s",
        )
    decide = policy if policy is not None else make_polca(params)
    n = timeline.samples
    gpu = timeline.gpu_w
    base_row = base_w * n_srv
    # per distinct clock, the locked GPU power of every server at every sample (few clocks: cheap)
    cache: dict[float, F64] = {}

    def power_at(i: int, clocks: F64) -> F64:
        out: F64 = np.array(gpu[i], dtype=np.float64)
        for c in np.unique(clocks[~np.isnan(clocks)]):
            if float(c) not in cache:
                cache[float(c)] = clock_model.locked_gpu_w(gpu, float(c))
            sel = clocks == c
            out[sel] = cache[float(c)][i, sel]
        return out

    current = np.full(n_srv, np.nan)
    brake_now = False
    pending: list[
        tuple[float, F64 | None, bool | None]
    ] = []  # (time in force, clocks, brake), in decision order
    row = np.zeros(n)
    clock_hist = np.full((n, n_srv), np.nan)
    locked = np.zeros((n, n_srv))
    extra = np.zeros((n, n_srv))
    brake_in_force = np.zeros(n)
    state: object | None = None
    brake_events = 0
    last_brake = False
    win_w = np.zeros(n_srv)
    win_n = 0
    slow_tab: dict[float, float] = {}

    def slow_of(clocks: F64) -> F64:
        res = np.zeros(n_srv)
        for c in np.unique(clocks[~np.isnan(clocks)]):
            if float(c) not in slow_tab:
                slow_tab[float(c)] = clock_model.slow(float(c)) - 1.0
            res[clocks == c] = slow_tab[float(c)]
        return res

    for i in range(n):
        t0 = float(timeline.t_s[i])
        t1 = t0 + dt
        due = sorted((e for e in pending if e[0] < t1), key=lambda e: e[0])
        pending = [e for e in pending if e[0] >= t1]
        seg_start = t0
        acc_srv = np.zeros(n_srv)
        acc_locked = np.zeros(n_srv)
        acc_extra = np.zeros(n_srv)
        acc_brake = 0.0
        for at, clocks, brk in [*due, (t1, None, None)]:
            ts = min(max(at, t0), t1)
            span = ts - seg_start
            if span > 0:
                acc_srv += span * power_at(i, current)
                acc_locked += span * ~np.isnan(current)
                acc_extra += span * slow_of(current)
                acc_brake += span * brake_now
                seg_start = ts
            if clocks is not None and brk is not None:  # a change coming into force (not the sample end)
                current, brake_now = clocks, brk
        srv_w = acc_srv / dt
        row[i] = float(srv_w.sum()) + base_row
        locked[i] = acc_locked / dt
        extra[i] = acc_extra
        brake_in_force[i] = acc_brake / dt
        clock_hist[i] = current
        win_w += srv_w
        win_n += 1
        if win_n == period:
            ctx = PowerContext(
                now_s=t1,
                server_power_w=tuple(float(x) + base_w for x in win_w / win_n),
                server_priority=prio,
                server_clock_mhz=tuple(None if np.isnan(c) else float(c) for c in current),
                row_budget_w=budget_w,
                state=state,
            )
            win_w = np.zeros(n_srv)
            win_n = 0
            dec = decide(ctx)
            state = dec.state
            if dec.brake and not last_brake:
                brake_events += 1
            last_brake = dec.brake
            new = np.array([np.nan if c is None else float(c) for c in dec.server_clock_mhz])
            latency = params.brake_latency_s if dec.brake else params.actuation_latency_s
            pending.append((t1 + latency, new, dec.brake))
    unlocked_row = gpu.sum(axis=1) + base_row
    lp_cols = np.array([p == LP for p in prio])
    hp_cols = ~lp_cols
    any_locked = locked.max(axis=1) if n_srv else np.zeros(n)
    return PolicyRun(
        t_s=timeline.t_s,
        dt_s=dt,
        row_w=row,
        row_unlocked_w=unlocked_row,
        clock_mhz=clock_hist,
        locked_share=locked,
        slow_extra=extra,
        budget_w=float(budget_w),
        capped_fraction=float(any_locked.mean()) if n else 0.0,
        lp_locked_fraction=float(locked[:, lp_cols].max(axis=1).mean()) if n and lp_cols.any() else 0.0,
        hp_locked_fraction=float(locked[:, hp_cols].max(axis=1).mean()) if n and hp_cols.any() else 0.0,
        brake_fraction=float(brake_in_force.mean()) if n else 0.0,
        brake_events=brake_events,
        over_budget_fraction=float((row > budget_w).mean()) if n else 0.0,
        peak_row_w=float(row.max()) if n else 0.0,
        peak_row_unlocked_w=float(unlocked_row.max()) if n else 0.0,
    )

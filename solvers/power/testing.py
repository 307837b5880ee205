"""Small hand-checkable problems for doctests and tests."""

from __future__ import annotations

import numpy as np

from planner.contracts.power import ClockModel, PolcaParams
from solvers.power.problem import PowerProblem, PowerScenario


def toy_clock_model() -> ClockModel:
    """Idle 0 W, a lock at 1400 MHz halves dynamic power, 1200 MHz leaves 40 %, 1600 MHz 70 %."""
    return ClockModel(
        max_clock_mhz=1980.0,
        idle_w=0.0,
        gpus_per_server=1,
        clocks_mhz=(900.0, 1200.0, 1400.0, 1600.0),
        power_ratio=(0.3, 0.4, 0.5, 0.7),
        slowdown=(1.6, 1.3, 1.2, 1.1),
    )


def toy_problem(**overrides: object) -> PowerProblem:
    """Budget 1000 W, 1-GPU servers with no base, 70 W each except one 95 W period in 200.

    Ten servers fit: 700 W normally, 950 W at the spike (LP level for 1 period = 0.5 % of the time);
    eleven would reach 1045 W at the spike from an unlocked row (a brake event); twelve sit at 840 W, over
    every ``t1`` but 0.84 and 0.88, ... and at 0.88 the spike brakes. So the answer is 10.
    """
    w = np.full(200, 70.0)
    w[100] = 95.0
    kw: dict[str, object] = dict(
        budget_w=1000.0,
        base_w=0.0,
        gpus_per_server=1,
        tdp_w=100.0,
        scenarios=(PowerScenario("toy", w, w.copy()),),
        clock_model=toy_clock_model(),
        policy=PolcaParams(),
        max_servers=20,
    )
    kw.update(overrides)
    return PowerProblem(**kw)  # type: ignore[arg-type]

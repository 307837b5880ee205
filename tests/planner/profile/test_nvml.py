"""The NVML sampler with a fake reader and an injected clock (no GPU needed)."""

from __future__ import annotations

import math

from planner.profile.nvml import Sample, Sampler, window_stats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sampler() -> tuple[Sampler, Clock]:
    clock = Clock()
    energy = [0.0]

    def reader() -> tuple[float, float, float, float, float, float, float]:
        # 300 W for the first 10 s, then 600 W; energy integrates the true power at 0.1 s steps
        power = 300.0 if clock.now < 10.0 else 600.0
        energy[0] += power * 0.1
        return power, power, energy[0], 1980.0 if power < 500 else 1500.0, 2619.0, 50.0, 20.0

    sampler = Sampler(reader, clock=clock)
    for i in range(200):
        clock.now = i * 0.1
        sampler.sample_once()
    return sampler, clock


def test_energy_counter_gives_the_window_mean() -> None:
    sampler, _ = _sampler()
    assert abs(sampler.energy_power_w(2.0, 8.0) - 300.0) < 1e-6
    assert abs(sampler.energy_power_w(12.0, 19.0) - 600.0) < 1e-6
    assert math.isnan(sampler.energy_power_w(5.0, 5.1))  # too short to say


def test_window_stats_see_the_phase() -> None:
    sampler, _ = _sampler()
    st = sampler.stats(11.0, 19.0)
    assert st.power_w_p50 == 600.0
    assert st.sm_clock_mhz_mean == 1500.0
    assert st.samples == 81


def test_empty_window_falls_back_to_the_nearest_sample() -> None:
    sampler, _ = _sampler()
    near = sampler.window(5.01, 5.02)
    assert len(near) == 1 and abs(near[0].t - 5.0) < 0.06


def test_window_stats_are_nan_safe() -> None:
    s = [Sample(0.0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)]
    st = window_stats(s)
    assert math.isnan(st.power_w_mean) and st.samples == 1

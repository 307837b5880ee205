"""Power timelines from files and replays, the policy run over them, and the latency estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.contracts.power import ClockModel, PolcaParams
from planner.perf import Parallelism, build_replica_perf
from planner.power.latency import estimate_inflation
from planner.power.simulate import run_policy
from planner.power.timeline import (
    PowerTimeline,
    clock_model_from_perf,
    mix_from_replay,
    timeline_from_power_frame,
    timeline_from_power_trace,
    timeline_from_replay,
)
from planner.sim import SimConfig, replay
from traces.errors import InputError
from traces.load import load_trace
from traces.transforms import slice_time

DATA = Path(__file__).resolve().parents[2] / "data" / "traces"
CM = ClockModel(
    max_clock_mhz=1980.0,
    idle_w=0.0,
    gpus_per_server=1,
    clocks_mhz=(900.0, 1200.0, 1400.0, 1600.0),
    power_ratio=(0.3, 0.4, 0.5, 0.7),
    slowdown=(1.6, 1.3, 1.2, 1.1),
)


def test_power_trace_file_to_timeline_subtracts_the_base() -> None:
    tl = timeline_from_power_trace(DATA / "power_sample.csv", gpu_only_w=450.0)
    assert tl.server_ids == ("node0",) and tl.dt_s == 1.0
    assert tl.gpu_w[:, 0].tolist() == [2000.0, 3450.5]


def test_bad_power_frames_are_input_errors(tmp_path: Path) -> None:
    gpu_only = pl.DataFrame({"t_s": [0.0], "scope": ["gpu"], "id": ["g0"], "power_w": [1.0]})
    with pytest.raises(InputError, match="server"):
        timeline_from_power_frame(gpu_only, source="x")
    gap = pl.DataFrame(
        {"t_s": [0.0, 1.0, 3.0], "scope": ["server"] * 3, "id": ["s0"] * 3, "power_w": [1.0] * 3}
    )
    with pytest.raises(InputError, match="time step"):
        timeline_from_power_frame(gap, source="x")
    missing = pl.DataFrame(
        {"t_s": [0.0, 0.0, 1.0], "scope": ["server"] * 3, "id": ["s0", "s1", "s0"], "power_w": [1.0] * 3}
    )
    with pytest.raises(InputError, match="no sample"):
        timeline_from_power_frame(missing, source="x")
    with pytest.raises(InputError, match="below"):
        timeline_from_power_trace(DATA / "power_sample.csv", gpu_only_w=3000.0)
    with pytest.raises(InputError, match="no power table"):
        timeline_from_replay(None)


def test_resample_and_first() -> None:
    tl = PowerTimeline(
        np.arange(4.0), 1.0, np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0], [7.0, 5.0]]), ("a", "b")
    )
    r = tl.resample(2.0)
    assert r.dt_s == 2.0 and r.gpu_w[:, 0].tolist() == [2.0, 6.0]
    assert tl.first(1).server_ids == ("a",)
    with pytest.raises(InputError):
        tl.resample(1.5)
    with pytest.raises(InputError):
        tl.first(3)


def _row(values: list[float], servers: int = 2) -> PowerTimeline:
    w = np.repeat(np.array(values, dtype=float)[:, None], servers, axis=1)
    return PowerTimeline(np.arange(float(len(values))), 1.0, w, tuple(f"s{i}" for i in range(servers)))


def test_actuation_latency_delays_the_lock_within_a_sample() -> None:
    tl = _row([900.0] * 4)  # 1800 W of a 2000 W budget: LP level from the first tick
    params = PolcaParams(t1=0.8, t2=0.95, actuation_latency_s=0.25)
    run = run_policy(tl, priorities=("hp", "lp"), budget_w=2000.0, base_w=0.0, params=params, clock_model=CM)
    assert run.locked_share[:, 1].tolist() == [0.0, 0.75, 1.0, 1.0]
    assert run.locked_share[:, 0].tolist() == [0.0] * 4  # HP untouched at the LP level
    assert run.row_w[1] == pytest.approx(900 + 0.25 * 900 + 0.75 * 450)
    assert run.lp_locked_fraction == pytest.approx(2.75 / 4) and run.capped_fraction == run.lp_locked_fraction
    assert run.slow_extra[2, 1] == pytest.approx(0.2)


def test_a_jump_past_the_brake_level_is_a_brake_event_with_its_latency() -> None:
    tl = _row([500.0, 1100.0, 1100.0, 1100.0, 1100.0, 1100.0])
    params = PolcaParams(t1=0.8, t2=0.9, brake_latency_s=2.0, actuation_latency_s=0.1, brake_clock_mhz=900.0)
    run = run_policy(tl, priorities=("hp", "lp"), budget_w=2000.0, base_w=0.0, params=params, clock_model=CM)
    assert run.brake_events == 1
    assert run.brake_fraction == pytest.approx(2.0 / 6)  # decided at t=2, in force from t=4
    assert run.over_budget_fraction > 0 and run.peak_row_unlocked_w == 2200.0


def test_base_power_counts_in_the_row_and_telemetry_period_is_checked() -> None:
    tl = _row([100.0] * 4)
    hp_only = run_policy(
        tl, priorities=("hp", "hp"), budget_w=1000.0, base_w=350.0, params=PolcaParams(), clock_model=CM
    )
    assert hp_only.row_w.tolist() == [900.0] * 4  # 0.9 >= t1 = 0.85, but the LP level has no LP server
    assert hp_only.capped_fraction == 0.0
    run = run_policy(
        tl, priorities=("hp", "lp"), budget_w=1000.0, base_w=350.0, params=PolcaParams(), clock_model=CM
    )
    assert run.row_w[0] == 900.0 and run.row_w[-1] == pytest.approx(900.0 - 0.5 * 100.0)
    assert run.capped_fraction > 0
    with pytest.raises(InputError, match="whole number"):
        run_policy(
            tl,
            priorities=("hp", "hp"),
            budget_w=1000.0,
            base_w=0.0,
            params=PolcaParams(telemetry_period_s=1.5),
            clock_model=CM,
        )
    with pytest.raises(InputError, match="priorities"):
        run_policy(tl, priorities=("hp",), budget_w=1000.0, base_w=0.0, params=PolcaParams(), clock_model=CM)


def test_replay_timeline_policy_and_latency_on_a_real_trace(shared_traces: Path) -> None:
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    trace = slice_time(
        load_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"), 0.0, 300.0
    )
    perf = build_replica_perf(cat.model("Llama-3.1-70B"), gpu, Parallelism(tp=8))
    res = replay(trace, perf, config=SimConfig(replicas=2, interval_s=1.0), gpu=gpu)
    tl = timeline_from_replay(res.power)
    assert tl.servers == 2 and tl.dt_s == 1.0
    # GPU power of a busy 70B TP8 server sits between idle and TDP (calibrated model)
    assert 8 * gpu.idle_w < float(np.median(tl.gpu_w)) < 8 * gpu.tdp_w
    cm = clock_model_from_perf(
        perf,
        mix=mix_from_replay(res.timeseries, res.requests),
        max_clock_mhz=1980.0,
        idle_w=float(perf.step_power_w(0, 0, 0, 0)),
        gpus_per_server=8,
        clocks_mhz=[1200.0, 1400.0, 1600.0],
    )
    assert cm.ratio(1200.0) < cm.ratio(1400.0) < cm.ratio(1600.0) < 1.0
    assert 1.0 < cm.slow(1600.0) < cm.slow(1200.0)
    # a budget the row exceeds half of the time: LP locks often, HP rarely
    budget = float(np.median(tl.gpu_w.sum(axis=1))) / 0.85
    run = run_policy(
        tl,
        priorities=("hp", "lp"),
        budget_w=budget,
        base_w=0.0,
        params=PolcaParams(t1=0.85, t2=0.97),
        clock_model=cm,
    )
    assert run.lp_locked_fraction > 0.3 and run.hp_locked_fraction < run.lp_locked_fraction
    assert run.row_w.mean() < run.row_unlocked_w.mean()
    lat = estimate_inflation(
        res.requests,
        run,
        server_of_replica=np.array([0, 1]),
        priorities=("hp", "lp"),
        slo_ttft_s=2.0,
        slo_tpot_s=0.1,
    )
    by = {t.tier: t for t in lat}
    assert by["lp"].affected > by["hp"].affected
    assert by["lp"].tpot_p99_s >= by["lp"].tpot_p99_base_s
    assert 0.0 <= by["lp"].inflation < cm.slow(1200.0) - 1.0 + 1e-9
    assert by["hp"].requests + by["lp"].requests == int(res.requests["finish_s"].is_not_null().sum())

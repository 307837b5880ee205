"""The hindsight references: the need series, its integral, the clairvoyant policy, and the verdict."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.autoscale.compare import CompareConfig, compare_autoscalers, verdict
from planner.autoscale.context import PolicyName
from planner.autoscale.hindsight import hindsight, hindsight_params, need_gpu_hours, need_series
from planner.contracts.scaling import ScalingContext
from planner.sim.coldstart import ColdStartDistribution
from planner.sim.config import EngineConfig, SLOTarget
from solvers.scaling.capacity import CapacityTable, capacity_table
from tests.planner.autoscale.test_compare import perf8
from tests.planner.autoscale.test_compare import trace as code_slice
from traces.errors import InputError
from traces.schema import RequestTrace, TraceMeta

COLD = ColdStartDistribution(math.log(30.0), 0.2, "test: 30 s median")


@functools.cache
def table8() -> CapacityTable:
    return capacity_table(perf8(), slo=SLOTarget(ttft_s=2.0, tpot_s=0.1), engine=EngineConfig(),
                          isl_grid=(128, 1024, 8192), osl_grid=(16, 256))


def _trace(rows: list[tuple[float, int, int]]) -> RequestTrace:
    df = pl.DataFrame({"arrival_s": [r[0] for r in rows], "input_tokens": [r[1] for r in rows],
                       "output_tokens": [r[2] for r in rows]},
                      schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    return RequestTrace(df, TraceMeta(source="test", format="canonical"))


def test_need_is_each_bins_requests_over_the_capacity_for_its_own_mix() -> None:
    tab = table8()
    tr = _trace([(0.5, 1000, 100), (3.0, 3000, 100), (12.0, 200, 20)])
    need = need_series(tr, tab, bin_s=5.0)
    assert need.shape == (3,)
    assert need[0] == pytest.approx(2 / 5.0 / tab.rps_at(2000.0, 100.0))  # two requests, their mean mix
    assert need[1] == 0.0  # an empty bin needs nothing
    assert need[2] == pytest.approx(1 / 5.0 / tab.rps_at(200.0, 20.0))
    # long prompts need more replicas than short ones at the same request rate
    assert need_series(_trace([(0.0, 8000, 100)]), tab)[0] > need_series(_trace([(0.0, 200, 100)]), tab)[0]
    assert need_gpu_hours(np.array([2.0, 4.0]), bin_s=1800.0, gpus_per_replica=4) == pytest.approx(12.0)


def test_need_rejects_an_empty_trace_and_a_bad_bin() -> None:
    tr = _trace([(0.0, 100, 10)])
    with pytest.raises(InputError, match="no request"):
        need_series(RequestTrace(tr.df.clear(), tr.meta), table8())
    with pytest.raises(InputError, match="bin_s"):
        need_series(tr, table8(), bin_s=0.0)


def test_clairvoyant_policy_starts_before_a_burst_and_releases_after_it() -> None:
    need = np.array([1.0] * 10 + [9.0] * 2 + [1.0] * 10)  # a burst at 50-60 s (5 s bins)
    p = hindsight_params(need, bin_s=5.0, lookahead_s=30.0, smooth_bins=1, max_replicas=8)
    ctx = ScalingContext(now_s=0.0, replicas=1, running=(0,), waiting=(0,), kv_cache_usage_perc=(0.0,))

    def at(t: float) -> int:
        return hindsight(replace(ctx, now_s=t), params=p).desired_replicas

    assert at(0.0) == 1  # the burst is beyond the lookahead
    assert at(25.0) == 8  # within it: started ahead, capped at max_replicas
    assert at(55.0) == 8  # during it
    assert at(60.0) == 1  # released as soon as it is over
    assert at(500.0) == 1  # past the trace: min_replicas
    smoothed = hindsight_params(need, bin_s=5.0, lookahead_s=30.0, smooth_bins=3, factor=1.5)
    assert hindsight(replace(ctx, now_s=40.0), params=smoothed).desired_replicas == math.ceil(1.5 * 19 / 3)


@pytest.mark.slow
def test_hindsight_rows_trace_attainment_against_gpu_hours_and_stay_out_of_the_baselines(
        shared_traces: Path) -> None:
    tr = code_slice(shared_traces)
    cfg = CompareConfig(cold_start=COLD, max_replicas=16, static_reference=False,
                        hindsight_factors=(1.0, 2.0), keep_requests=False)
    cmp = compare_autoscalers(tr, perf8(), policies=[PolicyName.HPA, PolicyName.MPC], config=cfg)
    lo, hi = cmp.results["hindsight@1"].summary, cmp.results["hindsight@2"].summary
    assert hi.gpu_hours > lo.gpu_hours and hi.attainment >= lo.attainment
    # a fleet that follows the need exactly is the floor of every run that serves the whole trace
    assert 0.0 < cmp.need_gpu_hours < min(r.summary.gpu_hours for r in cmp.results.values())
    v = verdict(cmp)
    assert v.best_baseline in (None, "hpa")  # a hindsight row is never the baseline
    if v.best_baseline is not None:
        assert v.saving == pytest.approx(1.0 - v.gpu_hours / cmp.results["hpa"].summary.gpu_hours)
    assert v.hindsight is None or v.hindsight.startswith("hindsight@")
    assert any("need integral" in line for line in v.lines())
    with pytest.raises(InputError, match="not in the comparison"):
        verdict(cmp, reference="nope")

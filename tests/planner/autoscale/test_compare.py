"""The comparison on a real trace: every policy runs in both closed loops and reports sane numbers."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

from planner.autoscale.coldstart import ColdStartDistribution
from planner.autoscale.compare import CompareConfig, Simulator, compare_autoscalers
from planner.autoscale.context import PolicyName
from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf
from planner.perf.api import ReplicaPerf
from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace
from traces.transforms import scale_rate, slice_time

COLD = ColdStartDistribution(math.log(60.0), 0.2, "test: 60 s median")


@functools.cache
def perf8() -> ReplicaPerf:
    cat = load_catalog()
    return build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))


def trace(shared: Path) -> RequestTrace:
    t = load_trace(shared / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv")
    return scale_rate(slice_time(t, 0.0, 900.0), 6.0, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", [Simulator.LOOP, Simulator.REPLAY])
def test_every_policy_runs_and_reports(shared_traces: Path, simulator: Simulator) -> None:
    tr = trace(shared_traces)
    cfg = CompareConfig(cold_start=COLD, max_replicas=16, simulator=simulator)
    cmp = compare_autoscalers(tr, perf8(), config=cfg)
    table = cmp.table()
    assert set(table["policy"].to_list()) >= {p.value for p in (PolicyName.HPA, PolicyName.KEDA,
                                                                PolicyName.RAY_SERVE, PolicyName.DYNAMO_SLA,
                                                                PolicyName.WVA, PolicyName.MPC)}
    assert table.height == 7  # plus the static reference
    for row in table.iter_rows(named=True):
        assert row["requests"] == tr.num_requests
        assert 0.0 <= row["attainment"] <= 1.0
        assert 1 <= row["peak_replicas"] <= 16
        assert row["gpu_hours"] > 0
    assert cmp.capacity.rps > 0
    tl = cmp.timelines()
    assert tl["desired"].max() <= 16  # type: ignore[operator]


def test_unknown_policy_and_empty_trace_are_input_errors(shared_traces: Path) -> None:
    tr = trace(shared_traces)
    with pytest.raises(InputError, match="not part of the comparison"):
        compare_autoscalers(tr, perf8(), policies=[PolicyName.TARGET_TRACKING],
                            config=CompareConfig(cold_start=COLD, simulator=Simulator.LOOP,
                                                 static_reference=False))
    empty = RequestTrace(tr.df.clear(), tr.meta)
    with pytest.raises(InputError, match="no request"):
        compare_autoscalers(empty, perf8())

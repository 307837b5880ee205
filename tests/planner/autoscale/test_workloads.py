"""Benchmark workloads: ServeGen m-small thinned keeps the published rates; Azure workloads load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.autoscale.workloads import WORKLOADS, Workload, load_workload, servegen_thinned
from traces.errors import InputError
from traces.readers.servegen import read_client_windows

M_SMALL = "servegen/language/m-small"


def test_thinned_servegen_keeps_the_published_count_per_window(shared_traces: Path) -> None:
    folder = shared_traces / M_SMALL
    frac = 1.0 / 200.0
    tr = servegen_thinned(folder, fraction=frac, seed=3, duration_s=3600.0)
    published = 0
    for p in folder.glob("chunk-*-trace.csv"):
        w = read_client_windows(p, int(p.name.split("-")[1]))
        published += int(w.count[w.start_s < 3600].sum())
    expected = published * frac
    assert abs(tr.num_requests - expected) < 5 * np.sqrt(expected)  # binomial thinning, 5 sigma
    df = tr.df
    assert float(df["arrival_s"].min()) >= 0.0 and float(df["arrival_s"].max()) < 3600.0  # type: ignore[arg-type]
    assert int(df["input_tokens"].min()) >= 1 and int(df["output_tokens"].min()) >= 1  # type: ignore[arg-type]
    assert df["arrival_s"].is_sorted()
    again = servegen_thinned(folder, fraction=frac, seed=3, duration_s=3600.0)
    assert again.df.equals(df)  # seeded


def test_bad_fraction_and_missing_data_are_input_errors(shared_traces: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fraction"):
        servegen_thinned(shared_traces / M_SMALL, fraction=1.5)
    with pytest.raises(InputError, match="not found"):
        load_workload(WORKLOADS[Workload.AZURE_CODE], data_root=tmp_path)
    with pytest.raises(InputError, match="no chunk"):
        servegen_thinned(tmp_path, fraction=0.1)


def test_azure_workload_is_rate_scaled(shared_traces: Path) -> None:
    tr = load_workload(WORKLOADS[Workload.AZURE_CODE], data_root=shared_traces)
    assert tr.num_requests == pytest.approx(3 * 8819, rel=0.02)


@pytest.mark.slow
def test_servegen_workload_is_a_fair_size_fleet_at_the_daily_peak(shared_traces: Path) -> None:
    # two evening hours of day 1 at the workload's thinning, on its layout, in the replay simulator:
    # the fleet reaches several replicas (not one or two), and the MPC with its workload tuning
    # (seasonal memory empty on day 1) serves it at an attainment close to HPA's
    from planner.autoscale.compare import CompareConfig, Simulator, compare_autoscalers
    from planner.autoscale.context import PolicyName
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf

    spec = WORKLOADS[Workload.SERVEGEN_M_SMALL]
    tr = servegen_thinned(shared_traces / spec.path, fraction=spec.rate_factor, start_s=19 * 3600.0,
                          duration_s=2 * 3600.0)
    cat = load_catalog()
    perf = build_replica_perf(cat.model(spec.model), cat.gpu(spec.gpu), Parallelism(tp=spec.tp))
    cfg = CompareConfig(tick_s=spec.tick_s, max_replicas=spec.max_replicas, simulator=Simulator.REPLAY,
                        mpc=spec.mpc, static_reference=False)
    cmp = compare_autoscalers(tr, perf, policies=(PolicyName.HPA, PolicyName.MPC), config=cfg)
    hpa_s, mpc_s = cmp.results["hpa"].summary, cmp.results["mpc"].summary
    assert hpa_s.peak_replicas >= 8 and mpc_s.peak_replicas >= 8
    assert hpa_s.requests == mpc_s.requests == tr.num_requests
    assert mpc_s.attainment >= hpa_s.attainment - 0.01

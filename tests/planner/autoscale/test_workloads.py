"""Benchmark workloads: ServeGen m-small thinned keeps the published rates; Azure workloads load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.autoscale.workloads import (
    SHARED_TRACES_ENV,
    WORKLOADS,
    Workload,
    load_workload,
    servegen_thinned,
    shared_traces_root,
)
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
    from planner.autoscale.compare import CompareConfig, compare_autoscalers
    from planner.autoscale.context import PolicyName
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf

    spec = WORKLOADS[Workload.SERVEGEN_M_SMALL]
    tr = servegen_thinned(shared_traces / spec.path, fraction=spec.rate_factor, start_s=19 * 3600.0,
                          duration_s=2 * 3600.0)
    cat = load_catalog()
    perf = build_replica_perf(cat.model(spec.model), cat.gpu(spec.gpu), Parallelism(tp=spec.tp))
    cfg = CompareConfig(tick_s=spec.tick_s, max_replicas=spec.max_replicas,
                        mpc=spec.mpc, static_reference=False)
    cmp = compare_autoscalers(tr, perf, policies=(PolicyName.HPA, PolicyName.MPC), config=cfg)
    hpa_s, mpc_s = cmp.results["hpa"].summary, cmp.results["mpc"].summary
    assert hpa_s.peak_replicas >= 8 and mpc_s.peak_replicas >= 8
    assert hpa_s.requests == mpc_s.requests == tr.num_requests
    assert mpc_s.attainment >= hpa_s.attainment - 0.01


def test_m_small_collection_gaps_are_found_and_filled_from_their_neighbours(shared_traces: Path) -> None:
    from traces.readers.servegen import collection_holes, fill_holes

    folder = shared_traces / M_SMALL
    clients = {int(p.name.split("-")[1]): read_client_windows(p, int(p.name.split("-")[1]))
               for p in folder.glob("chunk-*-trace.csv")}
    holes = collection_holes(clients)
    # twelve region-wide gaps, 370 minutes in all, the longest 70 minutes from minute 14,760
    assert len(holes) == 12 and sum(b - a for a, b in holes) == 370 * 60
    assert (14760 * 60, 14830 * 60) in holes
    filled = fill_holes(clients, holes)
    lo, hi = 14760 * 60, 14830 * 60
    total = {s: 0 for s in range(lo - 600, hi + 600, 600)}
    for w in filled.values():
        for s, n in zip(w.start_s.tolist(), w.count.tolist(), strict=True):
            if s in total:
                total[s] += n
    rates = [total[s] / 600.0 for s in sorted(total)]
    # the region's rate crosses the gap between the rates on either side (~1,490 and ~1,560 req/s)
    assert all(min(rates[0], rates[-1]) * 0.97 <= r <= max(rates[0], rates[-1]) * 1.03 for r in rates)
    untouched = [s for s in clients if not np.array_equal(clients[s].count[:100], filled[s].count[:100])]
    assert untouched == []  # windows outside the gaps are not changed
    tr = servegen_thinned(folder, fraction=1e-3, start_s=lo - 1800.0, duration_s=hi - lo + 3600.0,
                          fill_gaps=True)
    minute = (tr.df["arrival_s"].to_numpy() // 60).astype(int)
    assert np.bincount(minute).min() > 0  # no empty minute where the published data has a gap
    assert dict(tr.meta.extra)["gap_windows_filled"] == "37"


def test_shared_traces_are_found_beside_the_repository_from_any_folder(
    shared_traces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SHARED_TRACES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared from here is not the shared folder
    assert shared_traces_root().resolve() == shared_traces.resolve()
    tr = load_workload(WORKLOADS[Workload.AZURE_CODE])
    assert tr.num_requests > 1000
    monkeypatch.setenv(SHARED_TRACES_ENV, str(tmp_path))
    assert shared_traces_root() == tmp_path
    with pytest.raises(InputError, match="FLEETWISE_SHARED_TRACES"):
        load_workload(WORKLOADS[Workload.AZURE_CODE])

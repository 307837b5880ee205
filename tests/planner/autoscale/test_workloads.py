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

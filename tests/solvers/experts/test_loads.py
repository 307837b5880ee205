"""Expert-load inputs: CSV / Parquet / .npy readers, bad files, synthetic loads, plan files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from solvers.experts import (
    Cluster,
    MoEShape,
    PlacementProblem,
    Skew,
    SolveParams,
    load_plan,
    read_loads,
    save_plan,
    solve,
    synthetic_loads,
)
from traces.errors import InputError


def test_reads_the_same_matrix_from_csv_parquet_and_npy(tmp_path: Path) -> None:
    m = np.arange(12, dtype=float).reshape(3, 4) + 1
    (tmp_path / "w.csv").write_text(
        "e0,e1,e2,e3\n" + "\n".join(",".join(str(v) for v in r) for r in m) + "\n"
    )
    pq.write_table(pa.table({f"e{j}": m[:, j] for j in range(4)}), tmp_path / "w.parquet")
    np.save(tmp_path / "w.npy", m)
    for name in ("w.csv", "w.parquet", "w.npy"):
        assert np.array_equal(read_loads(tmp_path / name), m)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("neg.csv", "1,2\n3,-4\n", "row 2: field expert 1"),
        ("text.csv", "a,b\n1,x\n", "row 1: field b"),
        ("ragged.csv", "1,2,3\n4,5\n", "row 2"),
        ("empty.csv", "", "empty"),
        ("zero.csv", "0,0\n1,1\n", "row 1"),
        ("w.txt", "1,2\n", "unknown load file type"),
    ],
)
def test_bad_csv_names_file_row_and_field(tmp_path: Path, name: str, content: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_loads(path)
    assert name in str(info.value) and needle in str(info.value)


def test_bad_parquet_and_npy(tmp_path: Path) -> None:
    pq.write_table(pa.table({"e0": [1.0, None], "e1": [1.0, 2.0]}), tmp_path / "null.parquet")
    with pytest.raises(InputError, match="row 2: field e0"):
        read_loads(tmp_path / "null.parquet")
    pq.write_table(pa.table({"e0": ["a", "b"]}), tmp_path / "str.parquet")
    with pytest.raises(InputError, match="field e0"):
        read_loads(tmp_path / "str.parquet")
    np.save(tmp_path / "v.npy", np.ones(5))
    with pytest.raises(InputError, match="2-D"):
        read_loads(tmp_path / "v.npy")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(InputError, match="row 1: field expert 1"):
        read_loads(tmp_path / "nan.npy")
    with pytest.raises(InputError, match="not found"):
        read_loads(tmp_path / "missing.csv")


def test_synthetic_loads_skew_and_drift() -> None:
    shape = MoEShape(layers=4, experts=256, groups=8)
    mild = synthetic_loads(shape, sigma=0.5, seed=0)[0]
    strong = synthetic_loads(shape, sigma=1.0, seed=0)[0]
    assert mild.shape == (4, 256)
    assert (strong.max(axis=1) / strong.mean(axis=1)).mean() > (mild.max(axis=1) / mild.mean(axis=1)).mean()
    zipf = synthetic_loads(shape, skew=Skew.ZIPF, zipf_s=1.0, seed=0)[0]
    assert np.allclose(np.sort(zipf[0])[::-1][:2] / zipf[0].max(), [1.0, 0.5])
    drift = synthetic_loads(shape, sigma=0.5, windows=3, drift_sigma=0.3, seed=0)
    assert drift.shape == (3, 4, 256)
    assert not np.allclose(drift[0], drift[2])
    assert np.array_equal(drift, synthetic_loads(shape, sigma=0.5, windows=3, drift_sigma=0.3, seed=0))


def test_plan_round_trips_through_npz_and_json(tmp_path: Path) -> None:
    w = synthetic_loads(MoEShape(layers=2, experts=16), sigma=1.0, seed=0)[0]
    cluster = Cluster(num_gpus=4, gpus_per_node=2, num_slots=20)
    plan = solve(PlacementProblem(loads=w, cluster=cluster), params=SolveParams(processes=1)).placement
    for name in ("p.npz", "p.json"):
        save_plan(plan, tmp_path / name)
        back = load_plan(tmp_path / name)
        assert back.cluster == cluster
        assert np.array_equal(back.phy2log, plan.phy2log)
    (tmp_path / "bad.json").write_text(
        '{"num_gpus": 4, "gpus_per_node": 2, "num_slots": 20, "phy2log": [[99]]}'
    )
    with pytest.raises(InputError, match="phy2log"):
        load_plan(tmp_path / "bad.json")
    (tmp_path / "nokey.json").write_text('{"num_gpus": 4}')
    with pytest.raises(InputError, match="field gpus_per_node"):
        load_plan(tmp_path / "nokey.json")

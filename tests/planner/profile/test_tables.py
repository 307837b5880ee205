"""The shipped profile's schemas: the writer refuses drift, and the data in the repo conforms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from planner.profile import tables

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "planner" / "perf" / "data" / "profiles" / "H100-SXM"
VALIDATION = REPO / "planner" / "perf" / "data" / "validation" / "H100-SXM"


def _memcpy_row(**kw: object) -> dict[str, object]:
    return {"bytes": 1 << 20, "time_s": 1e-6, "gbps": 2.0, **kw}


def test_build_table_rejects_missing_and_extra_columns() -> None:
    with pytest.raises(ValueError, match="missing columns \\['gbps'\\]"):
        tables.build_table("memcpy", [{"bytes": 1, "time_s": 1.0}])
    with pytest.raises(ValueError, match="unexpected columns \\['extra'\\]"):
        tables.build_table("memcpy", [_memcpy_row(extra=1)])
    with pytest.raises(ValueError, match="unknown table"):
        tables.build_table("nope", [])


def test_build_table_rejects_unknown_categories() -> None:
    row = {"op": "softmax", "tokens": 1, "hidden": 1, "time_s": 1.0}
    with pytest.raises(ValueError, match="field op"):
        tables.build_table("elementwise", [row])


def test_round_trip_keeps_types_and_nan(tmp_path: Path) -> None:
    row = {
        "kind": "decode",
        "prefill_tokens": 0,
        "prefill_pairs": 0.0,
        "decode_seqs": 4,
        "decode_kv": 4096,
        "time_s": 8e-3,
        "power_w": math.nan,
        "sm_clock_mhz": 1980.0,
    }
    path = tables.write_table(tmp_path, "steps", [row])
    back = pq.read_table(path)
    assert back.schema.equals(tables.SCHEMAS["steps"])
    assert math.isnan(back.column("power_w")[0].as_py())


def test_catalog_gpu_keys() -> None:
    assert tables.catalog_gpu_key("NVIDIA H100 80GB HBM3") == "H100-SXM"
    assert tables.catalog_gpu_key("NVIDIA GB200") == "GB200-SXM"


@pytest.mark.parametrize("name", ["gemm", "attention", "memcpy", "elementwise", "steps", "power"])
def test_shipped_profile_matches_its_schema(name: str) -> None:
    table = pq.read_table(PROFILE / f"{name}.parquet")
    assert table.schema.equals(tables.SCHEMAS[name], check_metadata=False)
    assert table.num_rows > 0
    tables.build_table(name, table.to_pylist())  # categories and columns exactly as specified
    times = [t for t in table.column("time_s").to_pylist()] if "time_s" in table.schema.names else [1.0]
    assert all(t > 0 and math.isfinite(t) for t in times)


def test_shipped_profile_is_physically_plausible() -> None:
    gemm = pq.read_table(PROFILE / "gemm.parquet").to_pylist()
    best = max(r["tflops"] for r in gemm if r["dtype"] == "bf16")
    assert 500 < best < 989.4  # below the catalog's dense peak
    memcpy = pq.read_table(PROFILE / "memcpy.parquet").to_pylist()
    assert 2000 < max(r["gbps"] for r in memcpy) < 2 * 3350
    power = {
        r["phase"]: r for r in pq.read_table(PROFILE / "power.parquet").to_pylist() if r["decode_batch"] <= 1
    }
    assert (
        power["idle"]["power_w_mean"] < power["decode"]["power_w_mean"] < power["gemm"]["power_w_mean"] <= 760
    )
    meta = json.loads((PROFILE / "meta.json").read_text())
    assert set(tables.META_KEYS) <= set(meta)
    assert meta["catalog_gpu"] == "H100-SXM"


@pytest.mark.parametrize("name", ["engine_requests", "engine_tokens", "engine_power"])
def test_shipped_validation_matches_its_schema(name: str) -> None:
    table = pq.read_table(VALIDATION / f"{name}.parquet")
    assert table.schema.equals(tables.SCHEMAS[name], check_metadata=False)
    assert table.num_rows > 0


def test_engine_requests_are_consistent() -> None:
    rows = pq.read_table(VALIDATION / "engine_requests.parquet").to_pylist()
    keys = {(r["load_level"], r["request_id"]) for r in rows}
    assert len(keys) == len(rows)
    for r in rows:
        assert 0 < r["ttft_s"] <= r["e2e_s"]
        if r["output_tokens"] > 1:
            assert r["ttft_s"] + (r["output_tokens"] - 1) * r["tpot_s"] == pytest.approx(r["e2e_s"], rel=1e-6)
    meta = json.loads((VALIDATION / "engine_meta.json").read_text())
    assert {"num_blocks", "block_size", "max_batch_tokens", "max_requests_per_batch"} <= set(
        meta["engine_config"]
    )
    assert len({r["load_level"] for r in rows if r["load_level"] > 0}) >= 4

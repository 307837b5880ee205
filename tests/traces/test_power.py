"""Power traces: canonical long format, strict validation with row and column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from traces.errors import InputError
from traces.power import load_power_trace
from traces.schema import POWER_POLARS_SCHEMA

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


def test_sample_loads_sorted_and_typed() -> None:
    df = load_power_trace(DATA / "power_sample.csv")
    assert dict(df.schema) == POWER_POLARS_SCHEMA
    assert df.height == 6
    assert df["t_s"].is_sorted()
    assert df.filter(pl.col("scope") == "server")["power_w"].to_list() == [2450.0, 3900.5]


def test_parquet_with_numeric_ids_and_mixed_case(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {"t_s": [1.0, 0.0], "scope": ["GPU ", "gpu"], "id": [7, 7], "power_w": [300, 250]}
    ).write_parquet(path)
    df = load_power_trace(path)
    assert df["id"].to_list() == ["7", "7"] and df["scope"].to_list() == ["gpu", "gpu"]
    assert df["t_s"].to_list() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("2,gpu,g0,-1", "power_w", "negative"),
        ("2,gpu,g0,abc", "power_w", "not a number"),
        ("2,gpu,g0,nan", "power_w", "not a finite"),
        ("2,cluster,g0,10", "scope", "unknown scope"),
        ("2,gpu,,10", "id", "missing value"),
        ("-1,gpu,g0,10", "t_s", "negative"),
        ("0,gpu,node0-gpu0,10", "id", "duplicate"),
    ],
)
def test_bad_rows(tmp_path: Path, line: str, field: str, message: str) -> None:
    text = (DATA / "power_sample.csv").read_text() + line + "\n"
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_power_trace(path)
    assert (err.value.row, err.value.field) == (7, field)
    assert message in err.value.message


def test_missing_column_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("t_s,scope,power_w\n0,gpu,1\n")
    with pytest.raises(InputError, match="missing column") as err:
        load_power_trace(path)
    assert err.value.field == "id"
    path.write_text("")
    with pytest.raises(InputError, match="empty file"):
        load_power_trace(path)
    path.write_text("t_s,scope,id,power_w\n")
    with pytest.raises(InputError, match="no data rows"):
        load_power_trace(path)
    with pytest.raises(InputError, match="no such file"):
        load_power_trace(tmp_path / "missing.csv")

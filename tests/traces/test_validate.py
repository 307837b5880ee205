"""Bad input is an InputError naming file, row and column; documented repairs are reported in meta."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from traces.errors import InputError
from traces.load import load_trace
from traces.schema import RequestTrace, TraceMeta
from traces.validate import validate_trace

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD = "2024-05-10 00:00:00+00:00,100,10\n"


def write(tmp_path: Path, text: str | bytes, name: str = "t.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("2024-05-10 00:00:01+00:00,abc,10", "ContextTokens", "not a number"),
        ("2024-05-10 00:00:01+00:00,-5,10", "ContextTokens", "negative token count"),
        ("2024-05-10 00:00:01+00:00,NaN,10", "ContextTokens", "NaN token count"),
        ("2024-05-10 00:00:01+00:00,inf,10", "ContextTokens", "infinite token count"),
        ("2024-05-10 00:00:01+00:00,10.5,10", "ContextTokens", "fractional token count"),
        ("2024-05-10 00:00:01+00:00,99999999999,10", "ContextTokens", "token count too large"),
        ("2024-05-10 00:00:01+00:00,,10", "ContextTokens", "missing value"),
        ("2024-05-10 00:00:01+00:00,10,x", "GeneratedTokens", "not a number"),
        ("yesterday,10,10", "TIMESTAMP", "cannot parse arrival time"),
        (",10,10", "TIMESTAMP", "missing arrival time"),
    ],
)
def test_bad_value_names_row_and_column(tmp_path: Path, row: str, field: str, message: str) -> None:
    path = write(tmp_path, HEADER + GOOD + GOOD + row + "\n" + GOOD)
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert (err.value.path, err.value.row, err.value.field) == (str(path), 3, field)
    assert message in err.value.message
    assert err.value.expected


def test_first_bad_row_wins(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD + "2024-05-10 00:00:01+00:00,10,-1\n" + "bad,x,10\n")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert (err.value.row, err.value.field) == (2, "GeneratedTokens")


def test_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "TIMESTAMP,ContextTokens\n2024-05-10 00:00:00+00:00,1\n")
    with pytest.raises(InputError) as err:
        load_trace(path, format="azure")
    assert err.value.field == "GeneratedTokens" and "missing column" in err.value.message


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty file"):
        load_trace(write(tmp_path, ""), format="azure")
    with pytest.raises(InputError, match="no data rows"):
        load_trace(write(tmp_path, HEADER), format="azure")


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, (HEADER + GOOD + GOOD).encode() + b"2024-05-10 00:00:01+00:00,1\xff0,5\n")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert "UTF-8" in err.value.message and err.value.row == 3


def test_not_utf8_in_a_big_file_is_located(tmp_path: Path) -> None:
    body = GOOD * 20_000  # beyond the header sniffing window, so the CSV reader meets it first
    path = write(tmp_path, (HEADER + body).encode() + b"2024-05-10 00:00:01+00:00,1\xff0,5\n")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert "UTF-8" in err.value.message and err.value.row == 20_001


def test_too_many_fields_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD + GOOD + "2024-05-10 00:00:01+00:00,1,2,3\n")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert err.value.row == 3 and "4 fields" in err.value.message


def test_blank_lines_are_skipped_but_rows_still_count(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD + "\n" + "2024-05-10 00:00:01+00:00,-1,1\n\n")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert err.value.row == 3
    ok = load_trace(write(tmp_path, HEADER + GOOD + "\n" + GOOD + "\n\n", "ok.csv"))
    assert ok.num_requests == 2


def test_unsorted_is_repaired_and_reported(tmp_path: Path) -> None:
    rows = ["2024-05-10 00:00:02+00:00,1,1", "2024-05-10 00:00:00+00:00,2,1", "2024-05-10 00:00:01+00:00,3,1"]
    trace = load_trace(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert trace.df["arrival_s"].to_list() == [0.0, 1.0, 2.0]
    assert trace.df["input_tokens"].to_list() == [2, 3, 1]
    assert trace.meta.repairs == ("arrivals were out of order at 1 rows; sorted by arrival",)


def test_zero_output_dropped_and_counted(tmp_path: Path) -> None:
    rows = [GOOD.strip(), "2024-05-10 00:00:01+00:00,5,0", "2024-05-10 00:00:02+00:00,5,3"]
    trace = load_trace(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert trace.num_requests == 2 and trace.meta.dropped_rows == 1
    assert trace.meta.repairs == ("dropped 1 of 3 requests with output_tokens == 0 (failed requests)",)


def test_all_outputs_zero_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing left"):
        load_trace(write(tmp_path, HEADER + "2024-05-10 00:00:01+00:00,5,0\n"))


def test_first_dropped_row_does_not_set_the_origin(tmp_path: Path) -> None:
    rows = ["2024-05-10 00:00:00+00:00,5,0", "2024-05-10 00:00:01+00:00,5,3", "2024-05-10 00:00:03+00:00,5,3"]
    trace = load_trace(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert trace.df["arrival_s"].to_list() == [0.0, 2.0]
    assert dict(trace.meta.extra)["start_timestamp"].startswith("2024-05-10T00:00:01")


def test_bad_json_line_is_located(tmp_path: Path) -> None:
    good = '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n'
    path = write(tmp_path, good + good + '{"timestamp": 5, "input_length": "ten"}\n', "m.jsonl")
    with pytest.raises(InputError) as err:
        load_trace(path)
    assert err.value.row == 3 and err.value.field == "input_length"
    path = write(tmp_path, good + "{not json\n", "n.jsonl")
    with pytest.raises(InputError, match="invalid JSON") as err:
        load_trace(path, format="mooncake")
    assert err.value.row == 2


def test_validate_trace_checks_the_contract() -> None:
    meta = TraceMeta(source="mem", format="synth")
    good = pl.DataFrame(
        {"arrival_s": [0.0, 1.0], "input_tokens": [1, 2], "output_tokens": [1, 1]},
        schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32},
    )
    assert validate_trace(RequestTrace(good, meta)).num_requests == 2
    with pytest.raises(InputError, match="out of order") as err:
        validate_trace(RequestTrace(good.reverse(), meta))
    assert err.value.row == 2
    with pytest.raises(InputError, match="type"):
        validate_trace(RequestTrace(good.with_columns(pl.col("input_tokens").cast(pl.Int64)), meta))
    with pytest.raises(InputError) as err:
        validate_trace(RequestTrace(good.with_columns(output_tokens=pl.Series([1, 0], dtype=pl.Int32)), meta))
    assert (err.value.row, err.value.field) == (2, "output_tokens")
    with pytest.raises(InputError, match="first arrival"):
        validate_trace(RequestTrace(good.with_columns(pl.col("arrival_s") + 1), meta))

"""Every reader on real files (row counts, columns, types, order, meta) and on small hand-written samples."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from traces.detect import detect_format
from traces.errors import InputError
from traces.load import FORMATS, load_trace, scan_trace
from traces.schema import REQUEST_POLARS_SCHEMA, RequestTrace

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
SERVEGEN = "servegen/language/m-small"


def assert_canonical(trace: RequestTrace) -> None:
    """Types, sortedness and origin that every loaded trace must have."""
    df = trace.df
    assert df.columns[:3] == ["arrival_s", "input_tokens", "output_tokens"]
    for name, dtype in df.schema.items():
        assert REQUEST_POLARS_SCHEMA[name] == dtype, name
    assert df["arrival_s"][0] == 0.0
    assert df["arrival_s"].is_sorted()
    assert df["input_tokens"].min() >= 0  # type: ignore[operator]
    assert df["output_tokens"].min() >= 1  # type: ignore[operator]
    assert df.null_count().sum_horizontal().item() == 0


@pytest.mark.parametrize(
    ("name", "rows", "start"),
    [
        ("AzureLLMInferenceTrace_code.csv", 8819, "2023-11-16T18:17:03.979960000"),
        ("AzureLLMInferenceTrace_conv.csv", 19366, "2023-11-16T18:15:46.680590000"),
    ],
)
def test_azure_2023_real(shared_traces: Path, name: str, rows: int, start: str) -> None:
    path = shared_traces / "azure_llm_2023" / name
    assert detect_format(path) == "azure"
    trace = load_trace(path)
    assert trace.num_requests == rows
    assert trace.df.columns == ["arrival_s", "input_tokens", "output_tokens"]
    assert_canonical(trace)
    extra = dict(trace.meta.extra)
    assert (trace.meta.format, extra["variant"], extra["timezone"]) == ("azure", "2023", "naive")
    assert extra["start_timestamp"] == start
    assert trace.meta.repairs == () and trace.meta.dropped_rows == 0
    assert 3400 < trace.duration_s < 3700  # about one hour
    # 7 fractional digits survive: the second request is 0.0520000 s after the first.
    if "code" in name:
        assert trace.df["arrival_s"][1] == pytest.approx(0.052, abs=1e-9)


def test_mooncake_real(shared_traces: Path) -> None:
    path = shared_traces / "mooncake" / "synthetic_trace.jsonl"
    assert detect_format(path) == "mooncake"
    trace = load_trace(path)
    assert trace.num_requests == 3993
    assert_canonical(trace)
    assert trace.meta.block_size == 512
    assert trace.df.schema["prefix_hashes"] == pl.List(pl.UInt64)
    blocks = (trace.df["input_tokens"] + 511) // 512
    assert (trace.df["prefix_hashes"].list.len() == blocks).all()
    assert trace.df["prefix_hashes"][0].to_list()[:3] == [0, 1, 2]


def test_mooncake_wrong_block_size_is_located(shared_traces: Path) -> None:
    with pytest.raises(InputError) as err:
        load_trace(shared_traces / "mooncake" / "synthetic_trace.jsonl", block_size=256)
    assert err.value.row == 1 and err.value.field == "hash_ids"


def test_azure_2024_sample_mixed_precision() -> None:
    trace = load_trace(DATA / "azure2024_sample.csv")
    assert_canonical(trace)
    assert trace.df["arrival_s"].to_list() == pytest.approx([0.0, 0.00993, 0.5, 1.0, 2.123456])
    extra = dict(trace.meta.extra)
    assert extra["variant"] == "2024" and extra["timezone"] == "UTC"
    assert extra["start_timestamp"] == "2024-05-10T00:00:00.000000000+00:00"


def test_azure_2025_sample_iso_z() -> None:
    trace = load_trace(DATA / "azure2025_sample.csv")
    assert_canonical(trace)
    assert trace.df["arrival_s"].to_list() == pytest.approx([0.0, 0.25, 1.0, 1.75, 3.0])
    assert trace.df["input_tokens"].to_list() == [900, 150, 2400, 80, 1200]
    extra = dict(trace.meta.extra)
    assert extra["variant"] == "2025" and "NumImages" in extra["dropped_columns"]


def test_burstgpt_sample_drops_failures() -> None:
    trace = load_trace(DATA / "burstgpt_sample.csv")
    assert_canonical(trace)
    assert trace.num_requests == 4 and trace.meta.dropped_rows == 1
    assert any("output_tokens == 0" in r for r in trace.meta.repairs)
    assert trace.df["model"].to_list() == ["ChatGPT", "GPT-4", "ChatGPT", "GPT-4"]
    assert trace.df["tenant"].to_list() == ["Conversation log", "API log", "Conversation log", "API log"]
    assert trace.df["arrival_s"].to_list() == [0.0, 41.0, 42.0, 47.0]
    assert dict(trace.meta.extra)["start_offset_s"] == "5.0"


def test_burstgpt3_sessions_and_sorting() -> None:
    trace = load_trace(DATA / "burstgpt3_sample.csv")
    assert_canonical(trace)
    assert trace.df["session_id"].to_list() == ["s-1", "s-1", "s-1", "s-3"]
    assert trace.df["arrival_s"].to_list() == [0.0, 1.25, 2.0, 3.0]
    assert any("sorted" in r for r in trace.meta.repairs)
    assert dict(trace.meta.extra)["variant"] == "BurstGPT_3"


def test_generic_csv_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("ts_ms,prompt,completion,user\n1000,10,5,a\n1500,20,6,b\n3000,30,7,a\n")
    mapping = {
        "arrival_s": "ts_ms",
        "input_tokens": "prompt",
        "output_tokens": "completion",
        "tenant": "user",
    }
    trace = load_trace(path, mapping={**mapping, "time_unit": "ms"})
    assert trace.meta.format == "generic_csv"
    assert trace.df["arrival_s"].to_list() == [0.0, 0.5, 2.0]
    assert trace.df["tenant"].to_list() == ["a", "b", "a"]


def test_generic_parquet_datetime(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "when": pl.Series(["2024-01-01 00:00:00", "2024-01-01 00:00:02"]).str.to_datetime(),
            "i": [1, 2],
            "o": [3, 4],
        }
    ).write_parquet(path)
    mapping = {"arrival_s": "when", "input_tokens": "i", "output_tokens": "o", "time_unit": "datetime"}
    trace = load_trace(path, mapping=mapping)
    assert trace.meta.format == "generic_parquet"
    assert trace.df["arrival_s"].to_list() == [0.0, 2.0]


def test_generic_mapping_errors(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("t,i,o\n0,1,1\n")
    with pytest.raises(InputError, match="unknown mapping key"):
        load_trace(path, format="generic_csv", mapping={"arrival": "t"})
    with pytest.raises(InputError, match="not in file") as err:
        load_trace(path, mapping={"arrival_s": "time", "input_tokens": "i", "output_tokens": "o"})
    assert err.value.field == "arrival_s"
    with pytest.raises(InputError, match="no column for input_tokens"):
        load_trace(path, mapping={"arrival_s": "t"})
    with pytest.raises(InputError, match="unknown time unit"):
        load_trace(
            path, mapping={"arrival_s": "t", "input_tokens": "i", "output_tokens": "o", "time_unit": "h"}
        )


def test_canonical_csv_with_hashes(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("arrival_s,input_tokens,output_tokens,prefix_hashes\n0,3,1,1 2\n0.5,2,2,[7]\n")
    assert detect_format(path) == "canonical"
    trace = load_trace(path, block_size=2)
    assert trace.df["prefix_hashes"].to_list() == [[1, 2], [7]]
    assert trace.meta.block_size == 2


def test_block_size_without_hashes_is_an_error() -> None:
    with pytest.raises(InputError, match="no prefix hashes"):
        load_trace(DATA / "azure2024_sample.csv", block_size=16)


def test_scan_trace_matches_load_trace(shared_traces: Path) -> None:
    path = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    lazy = scan_trace(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(load_trace(path).df)


def test_unknown_format_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="unknown CSV header") as err:
        detect_format(path)
    assert str(path) in str(err.value)
    with pytest.raises(InputError, match="unknown format"):
        load_trace(path, format="nope")
    with pytest.raises(InputError, match="no such file"):
        load_trace(tmp_path / "missing.csv", format="azure")
    assert set(FORMATS) == {
        "azure",
        "burstgpt",
        "mooncake",
        "servegen",
        "generic_csv",
        "generic_parquet",
        "canonical",
    }


# ---- ServeGen -----------------------------------------------------------------------------------------


def test_servegen_folder_is_reproducible(shared_traces: Path) -> None:
    folder = shared_traces / SERVEGEN
    assert detect_format(folder) == "servegen"
    opts = {"duration_s": "600"}
    a = load_trace(folder, mapping=opts, seed=7)
    b = load_trace(folder, mapping=opts, seed=7)
    c = load_trace(folder, mapping=opts, seed=8)
    assert a.df.equals(b.df)
    assert not a.df.equals(c.df)
    assert_canonical(a)
    assert a.duration_s < 600.0
    # The request count is the published one: sum of round(rate * 600) over clients in window 0.
    first_rows = [p.read_text().split("\n", 1)[0].split(",") for p in folder.glob("chunk-*-trace.csv")]
    expected = sum(round(float(row[1]) * 600) for row in first_rows)
    assert a.num_requests + a.meta.dropped_rows == expected
    assert set(a.df["tenant"].unique()) <= {f"chunk-{i}" for i in range(43)}


def test_servegen_falls_back_and_reports(shared_traces: Path) -> None:
    folder = shared_traces / SERVEGEN
    # chunk-1 has no dataset file at all: it borrows another client's lengths.
    one = load_trace(folder / "chunk-1-trace.csv", mapping={"start_s": "74400", "duration_s": "600"})
    assert one.df["tenant"].unique().to_list() == ["chunk-1"]
    assert any(r.startswith("chunk-1: no token-length data; used chunk-") for r in one.meta.repairs)
    # In the real folder every busy window has lengths; the window-level fallback is checked on a
    # hand-written client whose only PDFs are for the first 6-hour window.


def test_servegen_window_fallback(tmp_path: Path) -> None:
    (tmp_path / "chunk-3-trace.csv").write_text("21000,0,0,,0,0\n21600,1.0,1.0,Gamma,1.0,1.0\n")
    (tmp_path / "chunk-3-dataset.json").write_text(
        '{"0": {"input_tokens": "{5: 1.0}", "output_tokens": "{2: 1.0}"},'
        ' "21600": {"input_tokens": "{}", "output_tokens": "{}"}}'
    )
    trace = load_trace(tmp_path, mapping={"duration_s": "30000"})
    assert trace.num_requests == 600
    assert (trace.df["input_tokens"] == 5).all()
    assert trace.meta.repairs == (
        "chunk-3: 1 windows had no token-length data for their 6-hour window; "
        "used the nearest 6-hour window that has it",
    )


def test_servegen_single_client_matches_merged(shared_traces: Path) -> None:
    folder = shared_traces / SERVEGEN
    opts = {"start_s": "3600", "duration_s": "300"}
    merged = load_trace(folder, mapping=opts, seed=3).df.filter(pl.col("tenant") == "chunk-12")
    alone = load_trace(folder / "chunk-12-trace.csv", mapping=opts, seed=3).df
    assert merged.height == alone.height > 1000
    shift = alone["arrival_s"] - merged["arrival_s"]  # only the origin (first request) differs
    assert shift.max() - shift.min() < 1e-6  # type: ignore[operator]
    assert merged["input_tokens"].equals(alone["input_tokens"])


def test_servegen_empty_span_is_explained(shared_traces: Path) -> None:
    with pytest.raises(InputError, match="no requests between 0 s and 600 s"):
        load_trace(shared_traces / SERVEGEN / "chunk-1-trace.csv", mapping={"duration_s": "600"})


def test_servegen_bad_option(shared_traces: Path) -> None:
    with pytest.raises(InputError, match="unknown option"):
        load_trace(shared_traces / SERVEGEN, mapping={"hours": "2"})
    with pytest.raises(InputError, match="out of range") as err:
        load_trace(shared_traces / SERVEGEN, mapping={"duration_s": "-5"})
    assert err.value.field == "duration_s"


def test_servegen_bad_trace_row(tmp_path: Path) -> None:
    (tmp_path / "chunk-0-trace.csv").write_text("0,1.0,1.0,Gamma,0.5,1.0\n600,2.0,1.0,Poisson,1.0,1.0\n")
    (tmp_path / "chunk-0-dataset.json").write_text(
        '{"0": {"input_tokens": "{5: 1.0}", "output_tokens": "{2: 1.0}"}}'
    )
    with pytest.raises(InputError, match="unknown pattern") as err:
        load_trace(tmp_path)
    assert (err.value.row, err.value.field) == (2, "pattern")


def test_servegen_tiny_folder(tmp_path: Path) -> None:
    (tmp_path / "chunk-0-trace.csv").write_text("0,1.0,1.0,Gamma,0.5,1.0\n600,0.5,3.0,Weibull,0.02,1e-6\n")
    (tmp_path / "chunk-0-dataset.json").write_text(
        '{"0": {"input_tokens": "{5: 0.5, 9: 0.5}", "output_tokens": "{2: 1.0}"}}'
    )
    trace = load_trace(tmp_path, mapping={"duration_s": "1200"})
    assert trace.num_requests == 600 + 300
    assert set(trace.df["input_tokens"].unique()) == {5, 9}
    assert (trace.df["output_tokens"] == 2).all()

"""Streaming conversion to canonical Parquet: round trips, metadata, order repair, and the benchmark."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from planner.bench.large_trace import generate_azure2024_csv, run_benchmark
from traces.convert import convert_to_parquet, count_inversions
from traces.errors import InputError
from traces.load import load_trace
from traces.readers.canonical import META_KEY

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


@pytest.mark.parametrize(
    ("sub", "rows"),
    [("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", 19366), ("mooncake/synthetic_trace.jsonl", 3993)],
)
def test_round_trip_real(shared_traces: Path, tmp_path: Path, sub: str, rows: int) -> None:
    src = shared_traces / sub
    ticks = itertools.count()
    report = convert_to_parquet(src, tmp_path / "out" / "t.parquet", clock=lambda: float(next(ticks)))
    assert report.rows == rows and report.seconds == 1.0
    assert report.format == report.meta.format != "canonical"
    back = load_trace(report.out_path)
    # Streaming and in-memory engines may round ns -> s differently in the last bit (<1e-12 s).
    assert_frame_equal(back.df, load_trace(src).df, check_exact=False, rel_tol=0.0, abs_tol=1e-9)
    assert back.meta.format == "canonical"
    extra = dict(back.meta.extra)
    assert extra["origin_format"] == report.format and extra["origin_source"] == str(src)
    assert back.meta.block_size == report.meta.block_size
    assert b"fleetwise.trace_meta" in (pq.read_metadata(report.out_path).metadata or {})
    assert META_KEY == "fleetwise.trace_meta"


def test_convert_repairs_order_and_keeps_notes(tmp_path: Path) -> None:
    report = convert_to_parquet(DATA / "burstgpt3_sample.csv", tmp_path / "b.parquet")
    assert report.rows == 4
    back = load_trace(report.out_path)
    assert back.df["arrival_s"].is_sorted()
    assert back.meta.dropped_rows == 1
    assert any("sorted" in r for r in back.meta.repairs) and any(
        "output_tokens == 0" in r for r in back.meta.repairs
    )
    assert_frame_equal(back.df, load_trace(DATA / "burstgpt3_sample.csv").df, check_exact=True)
    assert not (tmp_path / "b.parquet.partial").exists()


def test_count_inversions(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pl.DataFrame({"arrival_s": [0.0, 2.0, 1.0, 3.0, 2.5, 4.0]}).write_parquet(path, row_group_size=2)
    assert count_inversions(path, batch_rows=2) == 2


def test_convert_bad_input_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00+00:00,1,x\n")
    with pytest.raises(InputError) as err:
        convert_to_parquet(src, tmp_path / "o.parquet")
    assert (err.value.row, err.value.field) == (1, "GeneratedTokens")
    assert not (tmp_path / "o.parquet").exists()


def test_convert_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        convert_to_parquet(DATA / "azure2024_sample.csv", blocker / "sub" / "o.parquet")


def test_generated_file_is_azure_2024_with_mixed_precision(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    generate_azure2024_csv(path, 5000, chunk_rows=1500)
    stamps = pl.read_csv(path)["TIMESTAMP"]
    assert stamps.len() == 5000
    assert stamps.str.contains(r":\d\d\+00:00$").any() and stamps.str.contains(r"\.\d+\+00:00$").any()
    trace = load_trace(path)
    assert trace.num_requests == 5000 and dict(trace.meta.extra)["variant"] == "2024"
    assert trace.meta.repairs == ()


def test_benchmark_small(tmp_path: Path) -> None:
    result = run_benchmark(20_000, workdir=tmp_path)
    assert result.streaming.rows == result.eager.rows == 20_000
    assert result.streaming.peak_rss_mb > result.streaming.baseline_rss_mb > 0
    data = result.to_json()
    assert data["rss_ratio_eager_over_streaming"] == pytest.approx(result.rss_ratio)
    assert list(tmp_path.iterdir()) == []  # temporary files removed

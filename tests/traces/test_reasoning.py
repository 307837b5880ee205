"""Reasoning tokens: ServeGen's reason ratio read into ``reasoning_tokens``, validated, and shown in the
trace statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.cli.main import main
from traces.errors import InputError
from traces.load import load_trace
from traces.stats import describe

# the reasoning category's dataset format (ServeGen data/reason/deepseek-r1): ratio PDFs beside lengths
REASON_DATASET = ('{"0": {"input_tokens": "{100: 0.5, 300: 0.5}", "output_tokens": "{1000: 0.5, 3000: 0.5}", '
                  '"reason_ratio": "{0.5: 0.5, 0.75: 0.5}"}}')


def reason_folder(tmp_path: Path) -> Path:
    (tmp_path / "chunk-0-trace.csv").write_text("0,2.0,1.0,Gamma,1.0,1.0\n")
    (tmp_path / "chunk-0-dataset.json").write_text(REASON_DATASET)
    return tmp_path


def test_the_reason_ratio_becomes_reasoning_tokens(tmp_path: Path) -> None:
    trace = load_trace(reason_folder(tmp_path), mapping={"duration_s": "600"})
    df = trace.df
    assert trace.num_requests == 1200 and df.schema["reasoning_tokens"] == pl.Int32
    ratio = (df["reasoning_tokens"] / df["output_tokens"]).to_numpy()
    assert set(np.round(ratio, 6)) == {0.5, 0.75}
    stats = describe(trace)
    assert stats.reasoning_share is not None and 0.55 < stats.reasoning_share < 0.70
    assert stats.reasoning_tokens is not None and stats.reasoning_tokens.max == 2250
    assert stats.to_dict()["reasoning_share"] == pytest.approx(stats.reasoning_share)


def test_a_language_folder_has_no_reasoning_and_draws_as_before(tmp_path: Path) -> None:
    (tmp_path / "chunk-0-trace.csv").write_text("0,2.0,1.0,Gamma,1.0,1.0\n")
    (tmp_path / "chunk-0-dataset.json").write_text(
        '{"0": {"input_tokens": "{100: 0.5, 300: 0.5}", "output_tokens": "{1000: 0.5, 3000: 0.5}"}}')
    plain = load_trace(tmp_path, mapping={"duration_s": "600"}).df
    (tmp_path / "r").mkdir()
    reasoned = load_trace(reason_folder(tmp_path / "r"), mapping={"duration_s": "600"}).df
    assert "reasoning_tokens" not in plain.columns and describe(plain).reasoning_share is None
    # the ratio is drawn after a window's lengths, so the lengths are the language folder's
    assert plain["input_tokens"].equals(reasoned["input_tokens"])
    assert plain["output_tokens"].equals(reasoned["output_tokens"])


@pytest.mark.parametrize("pdf", ['"{1.5: 1.0}"', '"{-0.1: 1.0}"', '"{0.5: -1}"', '7'])
def test_a_bad_ratio_pdf_is_named(tmp_path: Path, pdf: str) -> None:
    (tmp_path / "chunk-0-trace.csv").write_text("0,2.0,1.0,Gamma,1.0,1.0\n")
    (tmp_path / "chunk-0-dataset.json").write_text(
        '{"0": {"input_tokens": "{100: 1}", "output_tokens": "{10: 1}", "reason_ratio": ' + pdf + '}}')
    with pytest.raises(InputError) as err:
        load_trace(tmp_path)
    assert err.value.field == "0.reason_ratio"


def test_reasoning_tokens_in_a_csv_are_checked_row_by_row(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.csv"
    good.write_text("arrival_s,input_tokens,output_tokens,reasoning_tokens\n0,10,100,60\n1,10,50,0\n")
    df = load_trace(good).df
    assert df["reasoning_tokens"].to_list() == [60, 0]
    assert main(["traces", "inspect", str(good)]) == 0
    assert "reasoning tokens" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,input_tokens,output_tokens,reasoning_tokens\n0,10,100,60\n1,10,50,51\n")
    with pytest.raises(InputError) as err:
        load_trace(bad)
    assert (err.value.row, err.value.field) == (2, "reasoning_tokens")
    assert main(["traces", "inspect", str(bad)]) == 2
    assert "reasoning_tokens" in capsys.readouterr().err


def test_the_replay_reports_when_the_answer_starts(tmp_path: Path) -> None:
    from planner.catalog import load_catalog
    from planner.perf.model import build_replica_perf
    from planner.sim import SimConfig, replay
    from planner.sim.summary_rows import summary_rows

    trace = load_trace(reason_folder(tmp_path), mapping={"duration_s": "300"})
    cat = load_catalog()
    res = replay(trace, build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM")),
                 config=SimConfig(replicas=2))
    a = res.summary.answers
    assert a is not None and a.requests == trace.num_requests
    req = res.requests
    # independently: the first answer token is the (reasoning + 1)-th token, TTFT plus that many gaps
    expect = (req["ttft_s"] + trace.df["reasoning_tokens"].cast(pl.Float64) * req["tpot_s"]).to_numpy()
    assert a.p99_s == pytest.approx(float(np.percentile(expect, 99)))
    assert a.p50_s > 10 * float(req["ttft_s"].median())  # type: ignore[arg-type]
    assert a.reasoning_share == pytest.approx(describe(trace).reasoning_share)
    assert "time to first answer token (after reasoning)" in dict(summary_rows(res))
    assert res.summary.as_dict()["answers"]["p99_s"] == pytest.approx(a.p99_s)

"""``fleetwise power`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from planner.cli.main import main

DATA = Path(__file__).resolve().parents[2] / "data" / "traces"


def _run(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_power_trace_mode(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = _run(
        [
            "power",
            "--power-trace",
            str(DATA / "power_sample.csv"),
            "--budget-kw",
            "4",
            "--server-base-w",
            "0",
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0
    res = json.loads(out)
    # 2450 W then 3900.5 W against 4 kW: the second sample is at 97.5 % (the measurement comes after it)
    assert res["servers"] == 1 and res["peak_row_unlocked_fraction"] == pytest.approx(3900.5 / 4000)
    assert res["brake_events"] == 0


def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _run(["power", "--power-trace", str(DATA / "power_sample.csv")], capsys, monkeypatch)
    assert code == 2 and "budget-kw" in err and "Traceback" not in err
    code, _, err = _run(
        ["power", "--tp", "3", "--trace", str(DATA / "power_sample.csv")], capsys, monkeypatch
    )
    assert code == 2 and "tp=3" in err


def test_study_writes_the_pareto_parquet(
    shared_traces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = pl.read_csv(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv", n_rows=2000)
    small = tmp_path / "conv_head.csv"
    src.write_csv(small)
    out = tmp_path / "pareto.parquet"
    monkeypatch.setenv("COLUMNS", "80")  # the tables must stay readable in an 80-column terminal
    code, text, err = _run(
        [
            "power",
            "--trace",
            str(small),
            "--nameplate-servers",
            "3",
            "--pool-servers",
            "5",
            "--time-limit-s",
            "5",
            "--out",
            str(out),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, (text, err)
    assert "Pareto curve" in text and "row budget 25.4 kW" in text  # 3 x (8 x 700 W + 2880 W)
    assert "vs Dynamo" in text and "by replay" in text
    assert "…" not in text  # nothing cut to an ellipsis
    assert max(len(line) for line in text.splitlines() if "─" in line) <= 80  # no table rule wider
    df = pl.read_parquet(out)
    assert df.height >= 1 and {"servers", "capped_fraction", "hp_p99_inflation", "pareto"} <= set(df.columns)
    assert df["verified"].any()  # at least the plan's size was replayed with capping in the loop

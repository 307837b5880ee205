"""``--start-s`` / ``--duration-s``: every verb that takes a trace reads the span asked for, ServeGen
folders included (generated for that span, not cut from their first hour)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.cli.main import main
from traces.default import default_trace, load_trace_arg
from traces.errors import InputError
from traces.load import load_trace


def test_default_trace_span_is_cut_and_rebased() -> None:
    whole = default_trace()
    arr = whole.df["arrival_s"].to_numpy()
    part = load_trace_arg("default", start_s=600.0, duration_s=300.0)
    assert part.num_requests == int(((arr >= 600.0) & (arr < 900.0)).sum()) > 100
    assert part.df["arrival_s"].min() == 0.0 and part.duration_s < 300.0
    assert load_trace_arg("default", start_s=3000.0).num_requests == int((arr >= 3000.0).sum())
    for bad in ({"start_s": -1.0}, {"duration_s": 0.0}, {"duration_s": float("nan")}):
        with pytest.raises(InputError):
            load_trace_arg("default", **bad)  # type: ignore[arg-type]


def test_servegen_span_is_generated_for_that_span(shared_traces: Path) -> None:
    client = shared_traces / "servegen" / "language" / "m-small" / "chunk-11-trace.csv"
    if not client.is_file():
        pytest.skip(f"{client} not in ../shared")
    day2 = load_trace_arg(client, start_s=86_400.0, duration_s=600.0)
    same = load_trace(client, format="servegen", mapping={"start_s": "86400", "duration_s": "600"})
    assert day2.num_requests == same.num_requests > 0 and day2.duration_s <= 600.0
    first_hour = load_trace_arg(client)
    assert 600.0 < first_hour.duration_s <= 3600.0


def test_verbs_take_a_span(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--trace", "default", "--start-s", "600", "--duration-s", "300", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    arr = default_trace().df["arrival_s"].to_numpy()
    assert doc["requests"] == int(((arr >= 600.0) & (arr < 900.0)).sum())
    assert main(["plan", "--gpus", "H100-SXM", "--duration-s", "600", "--no-verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == int((arr < 600.0).sum())
    assert main(["replay", "--trace", "default", "--duration-s", "0"]) == 2
    assert "--duration-s" in capsys.readouterr().err

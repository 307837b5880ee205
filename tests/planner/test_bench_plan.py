"""``fleetwise bench plan``: real plans on the bundled trace, skipped cases, bad input, partial results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.bench.plan_cases import CASES, peer_trace
from planner.cli.main import main


def test_default_case_plans_and_verifies_and_missing_data_is_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "plan", "--cases", "default,azure-conv", "--data-root", str(tmp_path / "none"),
                 "--json", "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == rows  # the file holds what was printed, written after each case
    default, conv = rows
    assert default["case"] == "default" and default["verified"] is True and default["presented"] == "plan"
    assert default["requests"] == 19_902 and default["peak_gpus"] >= 1 and default["rounds"] >= 1
    assert default["tokens_per_gpu_s"] > 100 and default["replayed_attainment"] >= 0.99
    assert conv["skipped"].endswith("not found (the shared data folder; --data-root)")
    assert conv["requests"] == 0 and conv["verified"] is False


def test_unknown_case_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "plan", "--cases", "default,nope"]) == 2
    err = capsys.readouterr().err
    assert "--cases" in err and "nope" in err and "Traceback" not in err


def test_the_peer_cases_state_their_figure_and_statistic() -> None:
    peers = [c for c in CASES if c.peer is not None]
    assert {c.name for c in peers} == {"peer-tpot20", "peer-tpot10"}
    assert all(c.slo.mean and c.peer is not None and "AIConfigurator" in c.peer.source for c in peers)
    tr = peer_trace()
    rate = tr.num_requests / tr.duration_s
    assert 34.0 < rate < 38.0
    assert 3_800 < float(tr.df["input_tokens"].mean()) < 4_200  # type: ignore[arg-type]
    assert 470 < float(tr.df["output_tokens"].mean()) < 530  # type: ignore[arg-type]

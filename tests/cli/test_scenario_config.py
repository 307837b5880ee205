"""``--config scenario.yaml`` on the scenario verbs: file values as defaults, flags win, bad keys refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.cli.main import main


def test_replay_takes_its_options_from_the_file_and_flags_win(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "sc.yaml"
    sc.write_text("replicas: 3\ngpu: H200-SXM\nslo-ttft-ms: 1500\njson: true\n")
    assert main(["replay", "--config", str(sc)]) == 0
    assert json.loads(capsys.readouterr().out)["replicas"] == 3
    assert main(["replay", "--config", str(sc), "--replicas", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["replicas"] == 2


@pytest.mark.parametrize("verb", ["plan", "replay", "autoscale-compare", "power", "experts"])
def test_an_unknown_key_is_one_line_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         verb: str) -> None:
    sc = tmp_path / "bad.yaml"
    sc.write_text("replicaz: 3\n")
    assert main([verb, "--config", str(sc)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(sc) in err and "replicaz" in err and f"fleetwise {verb}" in err


def test_a_bad_value_in_the_file_is_checked_like_the_flag(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "sc.yaml"
    sc.write_text("replicas: many\n")
    assert main(["replay", "--config", str(sc)]) == 2
    assert "replicas" in capsys.readouterr().err


def test_not_a_mapping_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "sc.yaml"
    sc.write_text("- replicas\n- 3\n")
    assert main(["plan", "--config", str(sc)]) == 2
    assert "mapping" in capsys.readouterr().err

"""``fleetwise autoscale-compare``: runs on a real trace slice, writes Parquet, bad flags are one line."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import typer
from typer.testing import CliRunner

from planner.cli import autoscale_cmd


def _app() -> typer.Typer:
    app = typer.Typer()
    autoscale_cmd.register(app)

    @app.command()
    def _other() -> None:  # a second command keeps "autoscale-compare" as a sub-command name
        """Placeholder."""

    return app


def _code_slice(shared_traces: Path, tmp_path: Path) -> Path:
    """The first 1,199 requests of Azure code 2023 as their own CSV."""
    src = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    small = tmp_path / "code.csv"
    small.write_text("\n".join(src.read_text().splitlines()[:1200]) + "\n")
    return small


def test_compare_writes_tables(shared_traces: Path, tmp_path: Path) -> None:
    small = _code_slice(shared_traces, tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), ["autoscale-compare", "--trace", str(small), "--policies", "hpa,mpc",
                                      "--cold-start-median-s", "30", "--max-replicas", "8",
                                      "--bounds", "1.5", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {p["policy"] for p in data["policies"]} >= {"hpa", "mpc", "hindsight@1.5"}
    assert pl.read_parquet(out / "summary.parquet").height == 4
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict == data["verdict"] and verdict["reference"] == "mpc" and verdict["need_gpu_hours"] > 0
    assert "policy" in pl.read_parquet(out / "timelines.parquet").columns


def test_bad_policy_name_is_an_input_error() -> None:
    res = CliRunner().invoke(_app(), ["autoscale-compare", "--policies", "hpa,nope"])
    assert res.exit_code != 0
    assert "nope" in str(res.exception)


def test_bad_bounds_are_an_input_error() -> None:
    res = CliRunner().invoke(_app(), ["autoscale-compare", "--bounds", "1,zero"])
    assert res.exit_code != 0
    assert "--bounds" in str(res.exception) and "zero" in str(res.exception)


def test_averse_and_load_following_risks_buy_more_than_plain(shared_traces: Path, tmp_path: Path) -> None:
    small = _code_slice(shared_traces, tmp_path)
    gpu_h = {}
    for risk in ("plain", "burst-averse", "load-following"):
        res = CliRunner().invoke(_app(), ["autoscale-compare", "--trace", str(small), "--policies", "mpc",
                                          "--cold-start-median-s", "30", "--max-replicas", "8",
                                          "--mpc-risk", risk, "--json"])
        assert res.exit_code == 0, res.output
        row = next(p for p in json.loads(res.output)["policies"] if p["policy"] == "mpc")
        gpu_h[risk] = row["gpu_hours"]
    assert gpu_h["burst-averse"] > gpu_h["plain"] > 0
    assert gpu_h["load-following"] > gpu_h["plain"]  # the busy row adds demand in the busier steps
    res = CliRunner().invoke(_app(), ["autoscale-compare", "--mpc-risk", "reckless"])
    assert res.exit_code != 0 and "reckless" in res.output


def test_an_interrupted_comparison_resumes_from_its_finished_policies(shared_traces: Path,
                                                                      tmp_path: Path) -> None:
    """kill -9 once the first policy is checkpointed; the re-run takes it from the checkpoint, replays only
    the rest, and ends with the same table as a run never interrupted (and no checkpoint left)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    small = _code_slice(shared_traces, tmp_path)
    fleetwise = str(Path(sys.executable).with_name("fleetwise"))
    args = ["autoscale-compare", "--trace", str(small), "--policies", "hpa,keda,ray-serve,mpc",
            "--cold-start-median-s", "30", "--max-replicas", "8", "--bounds", ""]
    whole = tmp_path / "whole"
    assert subprocess.run([fleetwise, *args, "--out", str(whole)], capture_output=True, timeout=600,
                          check=False).returncode == 0
    out = tmp_path / "cut"
    ckpt = tmp_path / ".cut.checkpoint"
    proc = subprocess.Popen([fleetwise, *args, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while time.monotonic() < end and len(list(ckpt.glob("*.summary.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = len(list(ckpt.glob("*.summary.json")))
    assert saved >= 1 and not out.exists()
    again = subprocess.run([fleetwise, *args, "--out", str(out)], capture_output=True, text=True, timeout=600,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {saved} policies finished earlier" in again.stderr
    a = pl.read_parquet(whole / "summary.parquet").sort("policy")
    b = pl.read_parquet(out / "summary.parquet").sort("policy")
    assert a.equals(b) and not ckpt.exists()

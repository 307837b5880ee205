"""Outputs are whole or absent (issue 19): a replay folder holds one complete run, killed writers leave
the old run or the new one, readers refuse a folder whose files do not match its manifest, and the
exporter never exports an implausible number from a results file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.live.exporter import load_results
from traces.atomic import MANIFEST, check_folder, write_folder_atomic
from traces.errors import InputError

FLEETWISE = str(Path(sys.executable).with_name("fleetwise"))


def _run(folder: Path, tag: str) -> None:
    write_folder_atomic(folder, {"a.txt": lambda p: p.write_text(tag * 1000),
                                 "summary.json": lambda p: p.write_text(json.dumps({"tag": tag}))})


def test_a_folder_is_replaced_whole_and_checked_against_its_manifest(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, "old")
    _run(out, "new")
    assert json.loads((out / "summary.json").read_text()) == {"tag": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial or old folder left
    check_folder(out, needed=("a.txt",))
    (out / "a.txt").write_text("old" * 1000)  # a file from another run, same size
    with pytest.raises(InputError, match=r"a\.txt does not match"):
        check_folder(out)
    (out / "a.txt").unlink()
    with pytest.raises(InputError, match=r"a\.txt does not match"):
        check_folder(out)
    (out / MANIFEST).write_text("{")
    with pytest.raises(InputError, match="unreadable manifest"):
        check_folder(out)


@pytest.mark.slow
def test_replay_killed_while_writing_leaves_the_old_run_or_the_new_one(tmp_path: Path) -> None:
    """kill -9 the replay at random moments of its run (bounded count); the folder is then either the
    previous complete run or the new complete one, and its manifest holds."""
    out = tmp_path / "run"
    base = [FLEETWISE, "replay", "--out", str(out)]
    assert subprocess.run(base, capture_output=True, timeout=300, check=False).returncode == 0
    first = json.loads((out / MANIFEST).read_text())["run_id"]
    rng = random.Random(7)
    t0 = time.monotonic()
    second = subprocess.run([*base, "--seed", "1"], capture_output=True, timeout=300, check=False)
    assert second.returncode == 0
    full = time.monotonic() - t0
    seen = {first, json.loads((out / MANIFEST).read_text())["run_id"]}
    for i in range(6):
        proc = subprocess.Popen([*base, "--seed", str(2 + i)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * full)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        check_folder(out, needed=("requests.parquet", "summary.json"))  # complete, whichever run it is
        seen.add(json.loads((out / MANIFEST).read_text())["run_id"])
    assert len(seen) >= 2


def test_the_exporter_refuses_implausible_numbers_and_mixed_folders(tmp_path: Path) -> None:
    summary = {"replicas": -3, "gpu_hours": 1.0, "classes": []}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="'replicas' = -3 is out of range"):
        load_results(tmp_path, now_s=0.0)
    summary = {"replicas": 2, "gpu_hours": 1e308, "classes": []}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="gpu_hours"):
        load_results(tmp_path, now_s=0.0)
    run = tmp_path / "run"
    write_folder_atomic(run, {"summary.json": lambda p: p.write_text(json.dumps(
        {"replicas": 2, "gpu_hours": 1.0, "classes": []}))})
    load_results(run, now_s=0.0)
    (run / "summary.json").write_text(json.dumps({"replicas": 3, "gpu_hours": 1.0, "classes": []}))
    with pytest.raises(InputError, match="does not match the run's manifest"):
        load_results(run, now_s=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["synth", "power"])
def test_other_writers_killed_at_random_leave_the_old_file_or_a_whole_new_one(tmp_path: Path,
                                                                              writer: str) -> None:
    """kill -9 ``traces synth`` and ``power --out`` at random moments (bounded count; ``plan --out`` and
    reports go through the same :mod:`traces.atomic` helpers):
    the output path then holds nothing or a whole new file, never a torn one (a hidden temporary file
    may be left beside it)."""
    from traces.load import load_trace

    out = tmp_path / "t.parquet"
    if writer == "synth":
        cmd = [FLEETWISE, "traces", "synth", "--out", str(out), "--rate", "60", "--duration", "3600",
               "--tenants", "8", "--block-size", "16"]
    else:
        cmd = [FLEETWISE, "power", "--nameplate-servers", "3", "--pool-servers", "4", "--time-limit-s", "2",
               "--pareto-verify", "0", "--out", str(out)]

    def intact() -> None:
        if not out.exists():
            return
        if writer == "synth":
            assert load_trace(out).num_requests > 0
        else:
            import polars as pl

            assert pl.read_parquet(out).height >= 1

    t0 = time.monotonic()
    assert subprocess.run(cmd, capture_output=True, timeout=600, check=False).returncode == 0
    full = time.monotonic() - t0
    intact()
    rng = random.Random(11)
    for _ in range(2):
        moved = out.with_suffix(".prev")
        out.replace(moved)  # each killed run starts without the file: what is there after is its own
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.6, 1.0) * full)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        intact()
        if not out.exists():
            moved.replace(out)
        else:
            moved.unlink()

"""Numba's cache folder follows the sources of the cached kernel and simulator (planner.numba_cache)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from planner.numba_cache import NUMBA_SOURCES, cache_dir


def test_any_change_to_a_cached_module_gives_a_new_folder(tmp_path: Path) -> None:
    a, b = tmp_path / "kernel.py", tmp_path / "engine.py"
    a.write_text("H_TDP = 51\n")
    b.write_text("def step(): pass\n")
    first = cache_dir([a, b], tmp_path / "root")
    assert cache_dir([a, b], tmp_path / "root") == first  # stable
    a.write_text("H_TDP = 51\nH_THROTTLE_EXP = 78\n")  # the kernel's layout changed, the simulator did not
    assert cache_dir([a, b], tmp_path / "root") != first


def test_importing_planner_points_numba_at_the_folder_of_these_sources(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FLEETWISE_NUMBA_CACHE_ROOT")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import planner, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    pkg = Path(__file__).resolve().parents[2] / "planner"
    want = cache_dir([pkg / s for s in NUMBA_SOURCES], tmp_path / "fleetwise-numba")
    assert Path(out.stdout.strip()) == want and want.is_dir()

"""``fleetwise profile --engine vllm``: calibrate the replay on your own GPU and your own vLLM.

Three steps, each restartable:

1. measure (where vLLM, torch and NVML are installed): ``python -m planner.profile.vllm_run`` serves a
   random-weight model of a known architecture under open-loop Azure conversation and code load
   (burst, then levels), and times the engine's attention kernel (``--attention``);
2. split the run into validation folders (:func:`planner.perf.vllm_data.split_run`);
3. fit an engine profile on the conversation fit levels and check every other level
   (:mod:`planner.sim.engine_validate`), then write ``<out>/engines/vllm/<GPU>.json``.

``--from-run DIR`` skips step 1 and uses a run measured before (for example on another machine).
``fleetwise replay --engine-profile <out>/engines/vllm/<GPU>.json`` then replays with it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from planner.catalog import load_catalog
from planner.perf.engine_profile import profile_path, write_engine_profile
from planner.perf.vllm_data import split_run
from planner.sim.engine_validate import CALIBRATION_TRACE, check, fit_engine_profile, load_dataset, summary
from traces.errors import InputError

LEVELS = {"azure-conv": "0.1,0.3,0.5,0.7,0.9,1.1,1.4,1.8", "azure-code": "0.2,0.6,1.0"}
"""Load levels measured per trace (fractions of the burst capacity); conversation calibrates."""


def measure(out: Path, model: str) -> Path:
    """Run the vLLM driver here; returns the run folder. Raises InputError when vLLM is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise InputError("vLLM is not installed here", field="--engine",
                         expected="a GPU host with vllm (pip install vllm), or --from-run DIR")
    run = out / "runs" / f"vllm-{model}"
    cmd = [sys.executable, "-m", "planner.profile.vllm_run", "--model", model,
           "--workload", CALIBRATION_TRACE, "--levels", LEVELS[CALIBRATION_TRACE],
           "--also", f"azure-code:{LEVELS['azure-code']}", "--out", str(run)]
    subprocess.run(cmd, check=True)
    subprocess.run([sys.executable, "-m", "planner.profile.vllm_run", "--attention",
                    "--out", str(run / "attention")], check=True)
    return run


def ingest(run: Path, out: Path, console: Console) -> list[Path]:
    """Split ``run``, fit and check a profile, write it; returns the files written."""
    folders = split_run(run, out / "validation")
    if not folders:
        raise InputError("the run has no load levels", path=str(run / "meta.json"),
                         expected="runs with levels")
    attn = run / "attention" / "attention.parquet"
    if attn.is_file():
        kdir = folders[0].parent.parent / "kernels"
        kdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(attn, kdir / "attention.parquet")
    sets = {f.name: load_dataset(f) for f in folders}
    if CALIBRATION_TRACE not in sets:
        raise InputError(f"the run lacks the {CALIBRATION_TRACE} levels that calibrate a profile",
                         path=str(run), expected=f"--workload {CALIBRATION_TRACE}")
    cat = load_catalog()
    cal_ds = sets[CALIBRATION_TRACE]
    prof = fit_engine_profile(cal_ds, model=cat.model(cal_ds.model_name), gpu=cat.gpu(cal_ds.gpu_key))
    rows = check([(ds, name == CALIBRATION_TRACE) for name, ds in sets.items()], prof,
                 models=cat.models, gpus=cat.gpus)
    path = profile_path(prof.engine, prof.gpu, out / "engines")
    write_engine_profile(prof, path)
    for k, v in summary(rows).items():
        if v["median_abs_err"] is not None:
            console.print(f"held-out {k}: median |err| {v['median_abs_err']:.1%}, max {v['max_abs_err']:.1%} "
                          f"(target {v['target']:.0%})")
    return [path, *folders]

"""The per-node model's accuracy on held-out measurements, and its speed (``fleetwise bench perf`` prints
them).

From the shipped data only: the measured profile (``planner/perf/data/profiles/<GPU>/``) and the shipped
calibration (``planner/perf/data/calibration/<GPU>.json``): median and p90 absolute percentage error per
operator family and per step kind on the held-out split (see :mod:`planner.perf.calibrate` for the
split), power error per phase, the engine's TPOT where validation data ship, the multi-GPU checks, and
how many batch compositions per second the vectorised model evaluates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from planner.catalog import load_catalog
from planner.perf import build_replica_perf, comm, multi_check
from planner.perf.calibrate import (
    STEP_MODEL,
    errors_frame,
    evaluate_profile,
    load_profile,
    profile_dir,
    validation_dir,
)
from planner.perf.calibration import Calibration, calibration_dir, load_calibration, resolve_calibration
from planner.perf.engine_check import engine_errors, engine_model, load_requests
from traces.errors import InputError

TARGETS = {"operator": 5.0, "step": 10.0, "power": 10.0}
"""Median APE targets on held-out data (issue #3)."""


def _target(family: str) -> float:
    if family.startswith("power"):
        return TARGETS["power"]
    if family.startswith("step"):
        return TARGETS["step"]
    return TARGETS["operator"]


def speed(n: int = 1_000_000, seed: int = 0) -> float:
    """Compositions per second of :meth:`RooflinePerf.step_time_s` on ``n`` random compositions
    (Llama-3.1-8B on H100-SXM; the first call compiles, so it is timed separately and excluded)."""
    cat = load_catalog()
    perf = build_replica_perf(cat.model(STEP_MODEL), cat.gpu("H100-SXM"))
    rng = np.random.default_rng(seed)
    pt = rng.integers(0, 4096, n).astype(np.float64)
    ds = rng.integers(0, 256, n).astype(np.float64)
    pairs = pt * (pt + 1) / 2
    kv = ds * rng.integers(64, 8192, n)
    perf.step_time_s(pt[:10], pairs[:10], ds[:10], kv[:10])
    t0 = time.perf_counter()
    perf.step_time_s(pt, pairs, ds, kv)
    return n / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Accuracy:
    """What :func:`measure_accuracy` found for one GPU.

    Attributes:
        gpu: the GPU.
        calibration: the shipped calibration scored.
        heldout: per family on the held-out split: n, median and p90 APE, target, whether it is met.
        engine_tpot: per load level of the engine validation data (empty without): TPOT APE.
    """

    gpu: str
    calibration: Calibration
    heldout: pl.DataFrame
    engine_tpot: list[dict[str, object]]


def measure_accuracy(gpu: str) -> Accuracy:
    """Score the shipped calibration of ``gpu`` against its shipped profile (and engine data).

    Raises:
        InputError: no shipped profile or calibration for ``gpu``.
    """
    cat = load_catalog()
    g = cat.gpu(gpu)
    folder = profile_dir() / g.name
    if not folder.is_dir():
        raise InputError(f"no shipped profile for {g.name}", path=str(folder),
                         expected="a folder written by fleetwise profile")
    cal = load_calibration(calibration_dir() / f"{g.name}.json")
    errs = errors_frame(evaluate_profile(load_profile(folder), g, cat.model(STEP_MODEL), cal))
    held = errs.filter(pl.col("split") == "heldout", pl.col("n") > 0)
    held = held.with_columns(pl.col("family").map_elements(_target, return_dtype=pl.Float64).alias("target"))
    held = held.with_columns((pl.col("median_ape") <= pl.col("target")).alias("meets"))
    engine_rows: list[dict[str, object]] = []
    vfolder = validation_dir() / g.name
    if (vfolder / "engine_requests.parquet").is_file() and cal.engine:
        reqs, meta = load_requests(vfolder)
        served = engine_model(cat.model(STEP_MODEL), meta)
        perf = build_replica_perf(served, g, calibration=cal, min_kv_tokens=0)
        engine_rows = [{"load_level": r[0], "split": r[1], "n": r[2], "tpot_median_ape": r[3],
                        "tpot_p90_ape": r[4]} for r in engine_errors(reqs, perf)]
    return Accuracy(gpu=g.name, calibration=cal, heldout=held, engine_tpot=engine_rows)


def multi_frames() -> dict[str, dict[str, pl.DataFrame]]:
    """Per GPU with a multi-GPU profile: collective, TP-step and EP tables (empty when none shipped)."""
    cat = load_catalog()
    out: dict[str, dict[str, pl.DataFrame]] = {}
    for folder in sorted(profile_dir().iterdir()):
        coll = comm.load_collectives(folder)
        if coll is None:
            continue
        g = cat.gpu(folder.name)
        cal = resolve_calibration(g)
        frames = {"collectives": multi_check.comm_table(coll, cal, g.link_gbps)}
        vfolder = validation_dir() / g.name
        steps = multi_check.load_tp_steps(vfolder)
        if steps is not None:
            pred = multi_check.tp_step_predictions(steps, cat, g, cal)
            frames["tp_steps"] = multi_check.tp_step_summary(pred)
        if (vfolder / "ep_moe.parquet").is_file():
            frames["ep_moe"] = multi_check.ep_table(pl.read_parquet(vfolder / "ep_moe.parquet"), cat, cal, g)
        out[g.name] = frames
    return out

"""``--faults`` and its companions: faults in the replay loop (:mod:`planner.sim.faults`), shared by the
verbs that replay, so their help and parsing agree."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from planner.sim.faults import FaultConfig


class DetectMode(StrEnum):
    """What the straggler detector does."""

    NONE = "none"
    FLAG = "flag"
    DRAIN = "drain"


FaultsOpt = Annotated[str | None, typer.Option(
    "--faults", help="faults in the loop: a fault trace (CSV/Parquet: time_s, scope, id, kind, duration_s, "
                     "slowdown) or 'synthetic' (fail-stop at Llama 3's published rate per GPU-hour, "
                     "stragglers at --slow-per-replica-hour)")]
FailRateOpt = Annotated[float | None, typer.Option(
    "--fail-per-gpu-hour",
    help="synthetic faults: fail-stop faults per GPU-hour (default: Llama 3's, 2.0e-5)")]
SlowRateOpt = Annotated[float, typer.Option(
    "--slow-per-replica-hour", help="synthetic faults: straggler episodes per replica-hour")]
SlowdownOpt = Annotated[float, typer.Option(
    "--slowdown", help="synthetic faults: a straggler's step-time factor")]
RetryOpt = Annotated[int, typer.Option(
    "--retry-budget",
    help="times a request lost to a fail-stop fault is sent again before it counts as failed")]
DetectOpt = Annotated[DetectMode, typer.Option(
    "--detect", help="straggler detector: none (health checks only: a straggler passes them), flag (measure "
                     "detection only) or drain (drain a flagged replica and start a replacement)")]


def faults_of(spec: str | None, *, replicas: int, gpus_per_replica: int, horizon_s: float, seed: int,
              fail_per_gpu_hour: float | None, slow_per_replica_hour: float, slowdown: float,
              retry_budget: int, detect: DetectMode) -> FaultConfig | None:
    """The replay's faults from the options (None without ``--faults``)."""
    from planner.sim.faults import Detector, FaultConfig, FaultRates, synth_faults
    from traces.errors import InputError
    from traces.faults import load_fault_trace

    if spec is None:
        if detect is not DetectMode.NONE:
            raise InputError("--detect needs --faults", field="--detect",
                             expected="--faults FILE or synthetic")
        return None
    if spec == "synthetic":
        rates = FaultRates(slow_per_replica_hour=slow_per_replica_hour, slowdown=slowdown)
        if fail_per_gpu_hour is not None:
            rates = dataclasses.replace(rates, fail_per_gpu_hour=fail_per_gpu_hour)
        events = synth_faults(rates, replicas=replicas, gpus_per_replica=gpus_per_replica,
                              horizon_s=horizon_s, seed=seed)
    else:
        events = load_fault_trace(Path(spec))
    detector = None if detect is DetectMode.NONE else Detector(mitigate=detect is DetectMode.DRAIN)
    return FaultConfig(events=events, retry_budget=retry_budget, detector=detector)

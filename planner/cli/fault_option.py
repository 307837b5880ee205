"""``--faults`` and its companions: faults in the replay loop (:mod:`planner.sim.faults`), shared by the
verbs that replay, so their help and parsing agree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from planner.sim.faults import DetectMode, fault_config

if TYPE_CHECKING:
    from planner.sim.faults import FaultConfig


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


__all__ = ["DetectMode", "DetectOpt", "FailRateOpt", "FaultsOpt", "RetryOpt", "SlowRateOpt", "SlowdownOpt",
           "faults_of"]


def faults_of(spec: str | None, *, replicas: int, gpus_per_replica: int, horizon_s: float, seed: int,
              fail_per_gpu_hour: float | None, slow_per_replica_hour: float, slowdown: float,
              retry_budget: int, detect: DetectMode) -> FaultConfig | None:
    """The replay's faults from the options (:func:`planner.sim.faults.fault_config`)."""
    return fault_config(spec, replicas=replicas, gpus_per_replica=gpus_per_replica, horizon_s=horizon_s,
                        seed=seed, fail_per_gpu_hour=fail_per_gpu_hour,
                        slow_per_replica_hour=slow_per_replica_hour, slowdown=slowdown,
                        retry_budget=retry_budget, detect=detect)

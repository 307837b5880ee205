"""Per-node performance model: step latency, memory and power of one replica, calibrated from profiles.

>>> from planner.catalog import load_catalog
>>> from planner.perf import Parallelism, build_replica_perf
>>> cat = load_catalog()
>>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
>>> perf.gpus
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from planner.perf.api import Parallelism, ReplicaPerf
    from planner.perf.calibration import Calibration, load_calibration, resolve_calibration
    from planner.perf.model import MemoryBreakdown, RooflinePerf, StepBreakdown, build_replica_perf

lazy_exports(__name__, {
    "Parallelism": "planner.perf.api",
    "ReplicaPerf": "planner.perf.api",
    "Calibration": "planner.perf.calibration",
    "load_calibration": "planner.perf.calibration",
    "resolve_calibration": "planner.perf.calibration",
    "MemoryBreakdown": "planner.perf.model",
    "RooflinePerf": "planner.perf.model",
    "StepBreakdown": "planner.perf.model",
    "build_replica_perf": "planner.perf.model",
})

__all__ = [
    "Calibration",
    "MemoryBreakdown",
    "Parallelism",
    "ReplicaPerf",
    "RooflinePerf",
    "StepBreakdown",
    "build_replica_perf",
    "load_calibration",
    "resolve_calibration",
]

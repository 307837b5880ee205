"""Per-node performance model: step latency, memory and power of one replica, calibrated from profiles.

>>> from planner.catalog import load_catalog
>>> from planner.perf import Parallelism, build_replica_perf
>>> cat = load_catalog()
>>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"), Parallelism(tp=1))
>>> perf.gpus
1
"""

from planner.perf.api import Parallelism, ReplicaPerf
from planner.perf.calibration import Calibration, load_calibration, resolve_calibration
from planner.perf.model import MemoryBreakdown, RooflinePerf, StepBreakdown, build_replica_perf

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

"""Faults in the replay: fail-stop replicas, stragglers, and the detector that drains slow replicas.

Why in the replay: a plan for a fleet where every GPU always works is a plan nobody runs. Fail-stop faults
lose the requests a replica holds (they are retried elsewhere from scratch, their KV gone, up to a retry
budget) and the replica's capacity until a repair or replacement and its cold start; a straggler still
answers, slowly (its steps take ``slowdown`` times longer: thermal throttling, a degraded link, a noisy
neighbour). Incidents come from a fault trace (:mod:`traces.faults`: a fleet's own history) or from
:func:`synth_faults` at published rates.

The detector (:func:`flag_stragglers`) is what a live controller can run: every tick it compares each
serving replica's mean step time over the last window (the inter-token latency its pod reports) with its
peers' by a robust outlier test (median and median absolute deviation), and flags the ones far above.
With mitigation on, a flagged replica is drained (no new requests; it finishes what it holds) and a
replacement starts (its cold start first), as a cordon-and-replace runbook does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from traces.errors import InputError
from traces.faults import FaultEvent, load_fault_trace

LLAMA3_INTERRUPTIONS_PER_GPU_HOUR = 419 / (54 * 24 * 16_384)
"""Unexpected interruptions per GPU-hour in Llama 3 pre-training: 419 over a 54-day snapshot of 16,384
H100s (Dubey et al. 2024, "The Llama 3 Herd of Models", section 3.3.4 and table 5; about 78 % of them
confirmed or suspected hardware): about 2.0e-5, one per 50,700 GPU-hours."""
DEFAULT_REPAIR_S = 1800.0
"""Seconds from a fail-stop fault to a replacement node being handed to the pool (estimate: a scheduler
swapping in a spare node; no published figure for inference fleets), before the replica's cold start."""


@dataclass(frozen=True)
class FaultRates:
    """A synthetic fault process (Poisson per GPU / per replica), seeded.

    Attributes:
        fail_per_gpu_hour: fail-stop faults per GPU-hour (any GPU of a replica takes the replica down).
        repair_s: seconds until the replica's replacement is handed over (then its cold start).
        slow_per_replica_hour: straggler episodes per replica-hour (0: none; no published rate, set your own).
        slowdown: a straggler's step-time factor.
        slow_s: how long an episode lasts.
    """

    fail_per_gpu_hour: float = LLAMA3_INTERRUPTIONS_PER_GPU_HOUR
    repair_s: float = DEFAULT_REPAIR_S
    slow_per_replica_hour: float = 0.0
    slowdown: float = 2.0
    slow_s: float = 1800.0

    def __post_init__(self) -> None:
        if min(self.fail_per_gpu_hour, self.slow_per_replica_hour) < 0 or self.repair_s <= 0 \
                or self.slow_s <= 0 or self.slowdown < 1:
            raise InputError("fault rates must be >= 0, durations > 0 and the slowdown >= 1",
                             field="faults", expected="rates >= 0, seconds > 0, slowdown >= 1")


def synth_faults(rates: FaultRates, *, replicas: int, gpus_per_replica: int, horizon_s: float,
                 seed: int = 0) -> tuple[FaultEvent, ...]:
    """Draw incidents for ``replicas`` replicas over ``horizon_s`` seconds (replica scope).

    >>> ev = synth_faults(FaultRates(fail_per_gpu_hour=0.01, slow_per_replica_hour=0.5), replicas=4,
    ...                   gpus_per_replica=8, horizon_s=3600, seed=1)
    >>> sorted({e.kind for e in ev})
    ['fail', 'slow']
    """
    rng = np.random.default_rng([seed, 20_24])
    hours = horizon_s / 3600.0
    out: list[FaultEvent] = []
    for r in range(replicas):
        for kind, rate, dur, slow in (
                ("fail", rates.fail_per_gpu_hour * gpus_per_replica, rates.repair_s, 1.0),
                ("slow", rates.slow_per_replica_hour, rates.slow_s, rates.slowdown)):
            for _ in range(int(rng.poisson(rate * hours))):
                out.append(FaultEvent(time_s=float(rng.uniform(0.0, horizon_s)), scope="replica", id=r,
                                      kind=kind, duration_s=dur, slowdown=slow))
    return tuple(sorted(out, key=lambda e: (e.time_s, e.id, e.kind)))


@dataclass(frozen=True)
class ReplicaFault:
    """An incident on one replica slot (node and rack incidents expanded)."""

    time_s: float
    slot: int
    kind: str
    duration_s: float
    slowdown: float


def replica_faults(events: Sequence[FaultEvent], *, replicas: int, gpus_per_replica: int, gpus_per_node: int,
                   servers_per_rack: int) -> tuple[ReplicaFault, ...]:
    """Each incident on the replicas it hits: replica ``r`` holds GPUs ``r*g .. r*g+g-1``, node ``n`` GPUs
    ``n*gpus_per_node ..``, rack ``k`` nodes ``k*servers_per_rack ..``; incidents on nothing we run are
    dropped (a spare node's fault costs us nothing).

    >>> ev = (FaultEvent(10.0, "node", 1, "fail", 60.0),)
    >>> [f.slot for f in replica_faults(ev, replicas=4, gpus_per_replica=4, gpus_per_node=8,
    ...                                 servers_per_rack=2)]
    [2, 3]
    """
    out: list[ReplicaFault] = []
    g = gpus_per_replica
    for e in events:
        if e.scope == "replica":
            hit = [e.id] if e.id < replicas else []
        else:
            nodes = [e.id] if e.scope == "node" else list(range(e.id * servers_per_rack,
                                                                (e.id + 1) * servers_per_rack))
            gpus = {n * gpus_per_node + i for n in nodes for i in range(gpus_per_node)}
            hit = [r for r in range(replicas) if any(r * g + i in gpus for i in range(g))]
        out.extend(ReplicaFault(e.time_s, r, e.kind, e.duration_s, e.slowdown) for r in hit)
    return tuple(sorted(out, key=lambda f: (f.time_s, f.slot, f.kind)))


@dataclass(frozen=True)
class Detector:
    """The straggler detector and its mitigation.

    Attributes:
        window_s: the step times a tick compares: the last ``window_s`` seconds.
        robust_z: flag a replica whose mean step time exceeds the peers' median by this many scaled
            median absolute deviations (1.4826 x MAD: the standard deviation for normal data) ...
        min_ratio: ... and by this factor (guards against a tiny MAD when every healthy replica is alike).
        mitigate: drain a flagged replica and start a replacement (else: only flag, to measure).
        interval_s: seconds between ticks.
    """

    window_s: float = 60.0
    robust_z: float = 3.5
    min_ratio: float = 1.3
    mitigate: bool = True
    interval_s: float = 15.0


@dataclass(frozen=True)
class FaultConfig:
    """Faults in a replay: the incidents, the retry budget and the detector (None: no detection).

    Attributes:
        events: incidents (a fault trace or :func:`synth_faults`).
        retry_budget: times a request lost to a fail-stop fault is retried before it counts as failed.
        detector: the straggler detector (None: stragglers are left alone, as with health checks only:
            a straggler passes every liveness probe).
    """

    events: tuple[FaultEvent, ...]
    retry_budget: int = 2
    detector: Detector | None = None

    def __post_init__(self) -> None:
        if self.retry_budget < 0:
            raise InputError("retry budget must be >= 0", field="retry_budget", expected="an integer >= 0")


def flag_stragglers(step_s: Sequence[float], detector: Detector) -> tuple[int, ...]:
    """Positions in ``step_s`` (mean step seconds per serving replica over the window; NaN: no steps)
    whose value is an outlier above its peers' (see :class:`Detector`). Needs three replicas with steps.

    >>> flag_stragglers([0.030, 0.031, 0.029, 0.062, float("nan")], Detector())
    (3,)
    >>> flag_stragglers([0.030, 0.031, 0.033], Detector())
    ()
    """
    x = np.asarray(step_s, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return ()
    med = float(np.median(x[ok]))
    mad = 1.4826 * float(np.median(np.abs(x[ok] - med)))
    out = []
    for i, v in enumerate(x):
        if not math.isfinite(v):
            continue
        z = (v - med) / mad if mad > 0 else math.inf
        if v > detector.min_ratio * med and z > detector.robust_z:
            out.append(i)
    return tuple(out)


class DetectMode(StrEnum):
    """What the straggler detector does."""

    NONE = "none"
    FLAG = "flag"
    DRAIN = "drain"


def fault_config(spec: str | None, *, replicas: int, gpus_per_replica: int, horizon_s: float, seed: int = 0,
                 fail_per_gpu_hour: float | None = None, slow_per_replica_hour: float = 0.0,
                 slowdown: float = 2.0, retry_budget: int = 2,
                 detect: DetectMode = DetectMode.NONE) -> FaultConfig | None:
    """Faults as a user names them: ``spec`` a fault-trace file or ``synthetic`` (rates below); None
    without ``spec``. One builder for the CLI's ``--faults`` and the dashboard's."""
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

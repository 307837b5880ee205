"""Per-replica health as the straggler detector sees it from a live pool's per-pod metrics.

Why: a gray failure (a replica that answers, slowly) passes every liveness probe; what gives it away is its
inter-token latency against its peers'. Each tick, a pod's mean inter-token latency since the last tick is
the increase of its ``inter_token_latency_seconds`` sum over the increase of its count (a counter that went
down restarted: its whole value is the increase), and the same robust outlier test the replay runs
(:func:`planner.sim.faults.flag_stragglers`) flags the slow ones. The exporter publishes both, for alerts
and for routers that can exclude a pod.

>>> h = replica_health(ReplicaHealth(), (("itl_sum", "a", 1.0), ("itl_count", "a", 50.0),
...                                     ("itl_sum", "b", 1.0), ("itl_count", "b", 50.0),
...                                     ("itl_sum", "c", 1.0), ("itl_count", "c", 50.0)))
>>> h = replica_health(h, (("itl_sum", "a", 2.0), ("itl_count", "a", 100.0),
...                        ("itl_sum", "b", 2.0), ("itl_count", "b", 100.0),
...                        ("itl_sum", "c", 3.0), ("itl_count", "c", 100.0)))
>>> h.slow, round(dict(h.itl_s)["c"], 3)
(('c',), 0.04)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.sim.faults import Detector, flag_stragglers


@dataclass(frozen=True)
class ReplicaHealth:
    """What the detector remembers and concluded at its last tick.

    Attributes:
        last: ``(pod, itl_sum, itl_count)`` as last read.
        itl_s: ``(pod, mean inter-token latency since the previous read)``; NaN: no tokens in between.
        slow: pods flagged at the last tick (sorted).
    """

    last: tuple[tuple[str, float, float], ...] = ()
    itl_s: tuple[tuple[str, float], ...] = ()
    slow: tuple[str, ...] = ()


def replica_health(prev: ReplicaHealth, counters: tuple[tuple[str, str, float], ...],
                   detector: Detector | None = None) -> ReplicaHealth:
    """One tick of the live detector over a read's per-pod counters (``(key, pod, value)``)."""
    det = detector or Detector()
    now: dict[str, list[float]] = {}
    for key, pod, v in counters:
        if key in ("itl_sum", "itl_count"):
            now.setdefault(pod, [math.nan, math.nan])[0 if key == "itl_sum" else 1] = v
    before = {p: (s, c) for p, s, c in prev.last}
    pods = sorted(now)
    itl: list[float] = []
    for p in pods:
        s, c = now[p]
        s0, c0 = before.get(p, (math.nan, math.nan))
        if math.isnan(s0) or c < c0:  # new pod, or restarted: nothing to compare with yet / whole value
            ds, dc = (s, c) if not math.isnan(s0) else (math.nan, math.nan)
        else:
            ds, dc = s - s0, c - c0
        itl.append(ds / dc if dc and dc > 0 and not math.isnan(ds) else math.nan)
    slow = tuple(sorted(pods[i] for i in flag_stragglers(itl, det)))
    return ReplicaHealth(last=tuple((p, now[p][0], now[p][1]) for p in pods),
                         itl_s=tuple(zip(pods, itl, strict=True)), slow=slow)

"""llm-d's endpoint picker (EPP): the gauges its KEDA triggers read, computed from the pool state as the EPP
computes them.

llm-d deprecated its Workload Variant Autoscaler and now scales a model-server Deployment with a KEDA
``ScaledObject`` on the EPP's own series (llm-d ``docs/architecture/autoscaling/keda-epp.md``; metric names
and semantics from llm-d-router ``docs/metrics.md``):

* ``llm_d_epp_flow_control_pool_saturation{inference_pool, stage}``: the saturation signal that gates
  dispatch. With the default ``utilization-detector`` (llm-d-router
  ``pkg/epp/framework/plugins/flowcontrol/saturationdetector/utilization/README.md``) each endpoint scores
  ``max(waiting / queueDepthThreshold, kv_usage / kvCacheUtilThreshold)`` (defaults 5 and 0.8), an endpoint
  with missing or stale metrics scores 1.0, and the pool's value is the mean over its endpoints; an empty pool
  reads 1.0. 1.0 is the gating set point; above it is oversubscription, deliberately not clamped;
* ``llm_d_epp_request_running``: requests currently in flight, counted once the EPP has handed the request to
  the proxy and until it completes (what the replicas hold, running or waiting);
* ``llm_d_epp_flow_control_queue_size``: requests held in the EPP's flow-control queues.

**Flow control** (the ``flowControl`` feature gate, which llm-d's KEDA guide turns on: both signals come from
it) holds requests at the EPP while the pool's saturation is at or above 1.0 and dispatches when it drops
below. The replay's router dispatches at once, so :func:`gauges` reads the pool as that gate keeps it in
steady state: when the replicas' queues put the pool above 1.0, the waiting requests above a common queue
level (found by bisection, deepest queues first) are counted as held at the EPP instead, which brings the
saturation to 1.0 (or to the KV terms alone, if those exceed it), takes them out of the running count and
adds them to the queue size. Without flow control every request is dispatched: the saturation may exceed
1.0 and the EPP's queue holds only what waits while no replica serves.

>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(40, 40), waiting=(10, 0),
...                      kv_cache_usage_perc=(0.4, 0.6))
>>> gauges(ctx, EndpointPicker(flow_control=False))   # endpoint scores max(2, 0.5) and max(0, 0.75)
EPPGauges(pool_saturation=1.375, request_running=90.0, queue_size=0.0)
>>> g = gauges(ctx, EndpointPicker())   # the gate keeps 6 of the first endpoint's 10: (1.2 + 0.75) / 2
>>> round(g.pool_saturation, 3), g.request_running, g.queue_size
(0.975, 86.0, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.contracts.scaling import ScalingContext, is_ready, is_scraped

POOL_SATURATION = "llm_d_epp_flow_control_pool_saturation"
REQUEST_RUNNING = "llm_d_epp_request_running"
QUEUE_SIZE = "llm_d_epp_flow_control_queue_size"

LEGACY_NAMES: dict[str, str] = {
    "inference_extension_flow_control_pool_saturation": POOL_SATURATION,
    "inference_extension_flow_control_queue_size": QUEUE_SIZE,
}
"""The deprecated ``inference_extension_*`` twins the EPP still serves, by their ``llm_d_epp_*`` name."""


@dataclass(frozen=True)
class EndpointPicker:
    """The EPP settings its gauges depend on (llm-d's KEDA guide's, and the detector's documented defaults).

    Attributes:
        flow_control: the ``flowControl`` feature gate (requests held at the EPP while the pool is saturated).
        queue_depth_threshold: the utilization detector's ``queueDepthThreshold`` (ideal waiting queue of
            one endpoint).
        kv_cache_util_threshold: its ``kvCacheUtilThreshold``, the ideal KV-cache use of one endpoint (0..1].
    """

    flow_control: bool = True
    queue_depth_threshold: float = 5.0
    kv_cache_util_threshold: float = 0.8

    def __post_init__(self) -> None:
        if not self.queue_depth_threshold > 0:
            raise ValueError(f"queue_depth_threshold {self.queue_depth_threshold} must be > 0")
        if not 0.0 < self.kv_cache_util_threshold <= 1.0:
            raise ValueError(f"kv_cache_util_threshold {self.kv_cache_util_threshold} must be in (0, 1]")


@dataclass(frozen=True)
class EPPGauges:
    """The three series llm-d's ScaledObjects read, for one pool at one tick (see the module docstring)."""

    pool_saturation: float
    request_running: float
    queue_size: float


def endpoint_score(waiting: float, kv_usage: float, epp: EndpointPicker) -> float:
    """The roofline score of one endpoint: its most constrained resource against its threshold.

    >>> endpoint_score(5, 0.2, EndpointPicker()), endpoint_score(0, 0.8, EndpointPicker())
    (1.0, 1.0)
    """
    return max(waiting / epp.queue_depth_threshold, kv_usage / epp.kv_cache_util_threshold)


def gauges(ctx: ScalingContext, epp: EndpointPicker) -> EPPGauges:
    """The EPP's gauges for the pool in ``ctx``.

    Why ready endpoints only: an InferencePool's endpoints are the ready pods its selector matches; a pod
    still loading is not an endpoint yet. A ready endpoint whose metrics were not read scores 1.0
    (fail-closed), and a pool without endpoints reads 1.0.
    """
    n = len(ctx.running)
    ready = [i for i in range(n) if is_ready(ctx, i)]
    read = [i for i in ready if is_scraped(ctx, i)]
    stale = len(ready) - len(read)
    w = [float(ctx.waiting[i]) / epp.queue_depth_threshold for i in read]
    kv = [ctx.kv_cache_usage_perc[i] / epp.kv_cache_util_threshold for i in read]
    dispatched = float(sum(ctx.running[i] + ctx.waiting[i] for i in range(n) if is_scraped(ctx, i)))

    def mean(level: float) -> float:
        scores = [max(min(wi, level), ki) for wi, ki in zip(w, kv, strict=True)]
        return (sum(scores) + stale) / (len(scores) + stale) if ready else 1.0

    saturation = mean(math.inf)
    held = 0.0
    if epp.flow_control and read and saturation > 1.0:
        lo, hi = 0.0, max(w)
        if mean(lo) < 1.0:
            for _ in range(60):  # the queue level at which the gate holds the pool at 1.0
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if mean(mid) < 1.0 else (lo, mid)
        kept = [min(float(ctx.waiting[i]), math.floor(lo * epp.queue_depth_threshold)) for i in read]
        held = sum(float(ctx.waiting[i]) for i in read) - sum(kept)
        scores = [endpoint_score(k, ctx.kv_cache_usage_perc[i], epp) for k, i in zip(kept, read, strict=True)]
        saturation = (sum(scores) + stale) / len(ready)
    return EPPGauges(saturation, dispatched - held, float(ctx.pending_at_router) + held)

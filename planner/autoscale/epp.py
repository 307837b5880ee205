"""llm-d's endpoint picker (EPP): the gauges its KEDA triggers read, computed from the pool state as the EPP
computes them.

llm-d deprecated its Workload Variant Autoscaler and now scales a model-server Deployment with a KEDA
``ScaledObject`` on the EPP's own series (llm-d ``docs/architecture/autoscaling/keda-epp.md``; metric names
and semantics from llm-d-router ``docs/metrics.md``):

* ``llm_d_epp_flow_control_pool_saturation{inference_pool, stage}``: the saturation signal that gates dispatch
  (:func:`pool_saturation`). With the default ``utilization-detector`` (llm-d-router
  ``pkg/epp/framework/plugins/flowcontrol/saturationdetector/utilization/README.md``) each endpoint scores
  ``max(waiting / queueDepthThreshold, kv_usage / kvCacheUtilThreshold)`` (defaults 5 and 0.8), an endpoint
  with missing or stale metrics scores 1.0, and the pool's value is the mean over its endpoints; an empty pool
  reads 1.0. 1.0 is the gating set point; above it is oversubscription, deliberately not clamped;
* ``llm_d_epp_request_running``: requests currently in flight, counted once the EPP has handed the request to
  the proxy and until it completes (:func:`request_running`: what the replicas hold, running or waiting);
* ``llm_d_epp_flow_control_queue_size``: requests held in the EPP's flow-control queues
  (:func:`flow_control_queue_size`: the gateway queue of the context).

The replay dispatches every request at once (flow control off, as in a pool whose saturation stays under
the gate); a queue builds in the replicas' own waiting lists, which is what the saturation detector reads,
so the saturation signal is the EPP's. The flow-control queue is non-empty only while no replica serves.

>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(40, 40), waiting=(10, 0),
...                      kv_cache_usage_perc=(0.4, 0.6))
>>> pool_saturation(ctx, UtilizationDetector())   # endpoint scores max(2, 0.5) and max(0, 0.75)
1.375
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.contracts.scaling import ScalingContext, is_ready, is_scraped

POOL_SATURATION = "llm_d_epp_flow_control_pool_saturation"
REQUEST_RUNNING = "llm_d_epp_request_running"
QUEUE_SIZE = "llm_d_epp_flow_control_queue_size"
READY_ENDPOINTS = "llm_d_epp_ready_endpoints"

LEGACY_NAMES: dict[str, str] = {
    "inference_extension_flow_control_pool_saturation": POOL_SATURATION,
    "inference_extension_flow_control_queue_size": QUEUE_SIZE,
}
"""The deprecated ``inference_extension_*`` twins the EPP still serves, by their ``llm_d_epp_*`` name."""


@dataclass(frozen=True)
class UtilizationDetector:
    """The EPP's default saturation detector (``utilization-detector``), with its documented defaults.

    Attributes:
        queue_depth_threshold: ``queueDepthThreshold``, the ideal waiting queue of one endpoint.
        kv_cache_util_threshold: ``kvCacheUtilThreshold``, the ideal KV-cache use of one endpoint (0..1].
    """

    queue_depth_threshold: float = 5.0
    kv_cache_util_threshold: float = 0.8

    def __post_init__(self) -> None:
        if not self.queue_depth_threshold > 0:
            raise ValueError(f"queue_depth_threshold {self.queue_depth_threshold} must be > 0")
        if not 0.0 < self.kv_cache_util_threshold <= 1.0:
            raise ValueError(f"kv_cache_util_threshold {self.kv_cache_util_threshold} must be in (0, 1]")


def endpoint_score(waiting: float, kv_usage: float, detector: UtilizationDetector) -> float:
    """The roofline score of one endpoint: its most constrained resource against its threshold.

    >>> endpoint_score(5, 0.2, UtilizationDetector()), endpoint_score(0, 0.8, UtilizationDetector())
    (1.0, 1.0)
    """
    return max(waiting / detector.queue_depth_threshold, kv_usage / detector.kv_cache_util_threshold)


def pool_saturation(ctx: ScalingContext, detector: UtilizationDetector) -> float:
    """``llm_d_epp_flow_control_pool_saturation``: the mean endpoint score over the pool's ready endpoints.

    Why ready only: an InferencePool's endpoints are the ready pods its selector matches; a pod still loading
    is not an endpoint yet. A ready endpoint whose metrics were not read scores 1.0 (fail-closed), and a pool
    without endpoints reads 1.0.
    """
    scores = [
        endpoint_score(float(ctx.waiting[i]), ctx.kv_cache_usage_perc[i], detector) if is_scraped(ctx, i)
        else 1.0
        for i in range(len(ctx.running)) if is_ready(ctx, i)
    ]
    return sum(scores) / len(scores) if scores else 1.0


def request_running(ctx: ScalingContext) -> float:
    """``sum(llm_d_epp_request_running)``: requests dispatched to the pool and not finished (the replicas'
    running and waiting requests, whose metrics were read)."""
    return float(sum(ctx.running[i] + ctx.waiting[i] for i in range(len(ctx.running)) if is_scraped(ctx, i)))


def flow_control_queue_size(ctx: ScalingContext) -> float:
    """``sum(llm_d_epp_flow_control_queue_size)``: requests the EPP holds for want of capacity."""
    return float(ctx.pending_at_router)

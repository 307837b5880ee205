"""llm-d's recommended autoscaler: KEDA on the endpoint picker's saturation and running requests.

llm-d deprecated its Workload Variant Autoscaler (v0.9.0 the last release) and points WVA users to the KEDA +
EPP guide's *saturation* overlay, "the closest replacement for WVA's saturation signal" (llm-d
``docs/operations/autoscaling``; the overlay is ``guides/workload-autoscaling/keda-epp/optimized-baseline/
overlays/k8s/saturation/scaledobject.yaml``). :class:`LlmdKEDAParams` holds that ScaledObject's published
settings:

* two Prometheus triggers, both ``AverageValue``, raced by the HPA KEDA creates (the larger desired count
  wins): ``max(llm_d_epp_flow_control_pool_saturation)`` with threshold 0.7 and
  ``sum(llm_d_epp_request_running)`` with threshold 16;
* ``pollingInterval`` 15 s, ``cooldownPeriod`` 300 s, ``minReplicaCount`` 1, ``maxReplicaCount`` 10;
* HPA behavior: scale up and down by up to 100 % per 15 s, each behind a 300 s stabilization window (the
  guide's "startup-time mitigation": a still-loading replica must not read as fresh demand).

The mechanics are KEDA's (:func:`planner.autoscale.keda.keda`); the gauges are computed from the pool as the
EPP computes them, flow control on (:mod:`planner.autoscale.epp`). The same function runs in the replay and
in the live autoscaler (``policy: llm-d-keda`` in ``pools.yaml``).

>>> from planner.contracts.scaling import ScalingContext
>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(40, 40), waiting=(0, 0),
...                      kv_cache_usage_perc=(0.3, 0.3))
>>> llm_d_keda(ctx, params=LlmdKEDAParams()).desired_replicas  # ceil(80 / 16) = 5, at most +100 %
4
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.autoscale.epp import EndpointPicker
from planner.autoscale.hpa import PolicyType, RatePolicy, ScalingRules
from planner.autoscale.keda import KEDAParams, KEDAState, PromQuery, Trigger, keda
from planner.contracts.scaling import ScalingContext, ScalingDecision

LLM_D_SCALE_UP = ScalingRules(stabilization_window_s=300.0,
                              policies=(RatePolicy(PolicyType.PERCENT, 100, 15.0),))
"""The saturation overlay's ``behavior.scaleUp``: 100 % per 15 s behind a 300 s window."""
LLM_D_SCALE_DOWN = ScalingRules(stabilization_window_s=300.0,
                                policies=(RatePolicy(PolicyType.PERCENT, 100, 15.0),))
"""The saturation overlay's ``behavior.scaleDown``: 100 % per 15 s behind a 300 s window."""


@dataclass(frozen=True)
class LlmdKEDAParams:
    """llm-d's KEDA + EPP saturation ScaledObject (published defaults; see the module docstring).

    Attributes:
        saturation_threshold: the pool-saturation trigger's ``threshold`` (a normalized ratio).
        running_threshold: the running-requests trigger's ``threshold`` (per replica, tuned per deployment).
        polling_interval_s, cooldown_period_s: ``pollingInterval`` / ``cooldownPeriod``.
        min_replica_count, max_replica_count: ``minReplicaCount`` / ``maxReplicaCount``.
        scale_up, scale_down: the HPA behavior.
        epp: the EPP's flow control (on, as the guide requires) and saturation-detector thresholds.
    """

    saturation_threshold: float = 0.7
    running_threshold: float = 16.0
    polling_interval_s: float = 15.0
    cooldown_period_s: float = 300.0
    min_replica_count: int = 1
    max_replica_count: int = 10
    scale_up: ScalingRules = LLM_D_SCALE_UP
    scale_down: ScalingRules = LLM_D_SCALE_DOWN
    epp: EndpointPicker = field(default_factory=EndpointPicker)

    def keda_params(self) -> KEDAParams:
        """The ScaledObject as :func:`~planner.autoscale.keda.keda` runs it."""
        return KEDAParams(
            triggers=(Trigger(PromQuery.EPP_POOL_SATURATION, self.saturation_threshold),
                      Trigger(PromQuery.EPP_REQUEST_RUNNING, self.running_threshold)),
            polling_interval_s=self.polling_interval_s, cooldown_period_s=self.cooldown_period_s,
            min_replica_count=self.min_replica_count, max_replica_count=self.max_replica_count,
            scale_up=self.scale_up, scale_down=self.scale_down, epp=self.epp)


def llm_d_keda(ctx: ScalingContext, *, params: LlmdKEDAParams | None = None) -> ScalingDecision[KEDAState]:
    """llm-d's KEDA + EPP saturation policy: :func:`~planner.autoscale.keda.keda` with its ScaledObject."""
    return keda(ctx, params=(params or LlmdKEDAParams()).keda_params())

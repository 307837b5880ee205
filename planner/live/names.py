"""Names of the series fleetwise exports on ``/metrics`` (the contract with ``deploy/``).

Prometheus conventions: ``fleetwise_`` prefix, base units in the name (``_seconds``, ``_watts``,
``_ratio``, ``_dollars``), ``_total`` for counters, ``_info`` for constant-1 label carriers. Manifests,
alert rules and the Grafana dashboard must only name series listed here; ``tests/deploy`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Prometheus metric types used by the exporter."""

    GAUGE = "gauge"
    COUNTER = "counter"
    INFO = "info"


@dataclass(frozen=True)
class MetricName:
    """One exported family: its name (without the ``_total`` a counter sample adds), type, labels, help."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str


DESIRED_REPLICAS = MetricName(
    "fleetwise_desired_replicas", Kind.GAUGE, ("pool", "role", "model", "gpu"),
    "Replicas the planner/autoscaler wants now (what KEDA/HPA should scale the pool's Deployment to).")
CURRENT_REPLICAS = MetricName(
    "fleetwise_current_replicas", Kind.GAUGE, ("pool", "role"),
    "Ready replicas the autoscaler observed at its last read.")
POWER_CAP = MetricName(
    "fleetwise_power_cap_watts", Kind.GAUGE, ("scope", "id"),
    "Power cap the planner recommends per scope (gpu, server, rack, row).")
FORECAST_RATE = MetricName(
    "fleetwise_forecast_requests_per_second", Kind.GAUGE, ("pool", "forecast_quantile", "horizon_seconds"),
    "Forecast request arrival rate at a horizon, per quantile.")
FORECAST_TOKENS = MetricName(
    "fleetwise_forecast_tokens_per_second", Kind.GAUGE,
    ("pool", "kind", "forecast_quantile", "horizon_seconds"),
    "Forecast token demand (kind=prompt|generation) at a horizon, per quantile.")
PREDICTED_SLO = MetricName(
    "fleetwise_predicted_slo_attainment_ratio", Kind.GAUGE, ("pool", "slo_class"),
    "Fraction of requests predicted to meet their SLO under the current plan (0-1).")
PLAN_GPU_SECONDS = MetricName(
    "fleetwise_plan_gpu_seconds", Kind.GAUGE, ("pool",),
    "GPU time the latest plan or replay spends over its horizon (GPU-hours x 3600).")
PLAN_COST = MetricName(
    "fleetwise_plan_cost_dollars", Kind.GAUGE, ("pool",),
    "Cost of the latest plan or replay over its horizon.")
SOLVE_DURATION = MetricName(
    "fleetwise_last_solve_duration_seconds", Kind.GAUGE, ("solver",),
    "Wall time of the planner's last solve.")
SOLVE_TIMESTAMP = MetricName(
    "fleetwise_last_solve_timestamp_seconds", Kind.GAUGE, ("solver",),
    "Unix time the last solve finished.")
SOLVE_STATUS = MetricName(
    "fleetwise_last_solve_status", Kind.GAUGE, ("solver", "status"),
    "1 for the status of the last solve (optimal, feasible, infeasible, unknown, error), 0 for the others.")
INPUT_STALENESS = MetricName(
    "fleetwise_input_staleness_seconds", Kind.GAUGE, ("pool",),
    "Age of the newest metric sample the autoscaler used.")
INPUT_HEALTHY = MetricName(
    "fleetwise_input_healthy", Kind.GAUGE, ("pool",),
    "1 when the last read of the pool's metrics was complete, fresh and plausible; 0 when the last "
    "decision is being held.")
REPLICA_SLOW = MetricName(
    "fleetwise_replica_slow", Kind.GAUGE, ("pool", "pod"),
    "1 when the straggler detector flags the replica: its inter-token latency since the last read is an "
    "outlier above its peers' (robust z > 3.5 and > 1.3x their median); 0 otherwise.")
REPLICA_ITL = MetricName(
    "fleetwise_replica_inter_token_latency_seconds", Kind.GAUGE, ("pool", "pod"),
    "A replica's mean inter-token latency since the autoscaler's previous read (what the detector compares).")
BAD_INPUT = MetricName(
    "fleetwise_bad_input", Kind.COUNTER, ("pool", "reason"),
    "Reads rejected as missing, stale or absurd (the decision was held).")
SCALING_ACTIONS = MetricName(
    "fleetwise_scaling_actions", Kind.COUNTER, ("pool", "direction"),
    "Changes of the desired replica count (direction=up|down).")
BUILD_INFO = MetricName(
    "fleetwise_build", Kind.INFO, ("version",),
    "fleetwise version serving these metrics.")

EXPORTED: tuple[MetricName, ...] = (
    DESIRED_REPLICAS, CURRENT_REPLICAS, POWER_CAP, FORECAST_RATE, FORECAST_TOKENS, PREDICTED_SLO,
    PLAN_GPU_SECONDS, PLAN_COST, SOLVE_DURATION, SOLVE_TIMESTAMP, SOLVE_STATUS, INPUT_STALENESS,
    INPUT_HEALTHY, REPLICA_SLOW, REPLICA_ITL, BAD_INPUT, SCALING_ACTIONS, BUILD_INFO,
)
"""Every family the exporter may serve."""


def sample_names() -> frozenset[str]:
    """Series names as they appear in the exposition (counters get ``_total``, info families ``_info``)."""
    out: set[str] = set()
    for m in EXPORTED:
        if m.kind is Kind.COUNTER:
            out.update({m.name + "_total", m.name + "_created"})
        elif m.kind is Kind.INFO:
            out.add(m.name + "_info")
        else:
            out.add(m.name)
    return frozenset(out)

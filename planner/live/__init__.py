"""Live clusters: the Prometheus exporter, the autoscaler that reads vLLM metrics from Prometheus, and a
simulated vLLM fleet that exposes the same series (for closed-loop tests and demos).

Metric names are the contract with dashboards, alert rules and KEDA/HPA manifests: they live in
:mod:`planner.live.names`, and tests check every manifest against them.
"""

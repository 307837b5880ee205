"""Every verb of the ``fleetwise`` command: the module that registers it and its one-line summary.

Why a table that imports nothing: a command line that names a verb imports only that verb's module, and
``fleetwise --help`` lists the verbs from here, so neither pays for the imports of the others (OR-Tools,
Ray, scipy and the planner take about 2 s). Each module's help starts with its summary from here (one home);
a test checks the table against what the modules register.
"""

from __future__ import annotations

VERBS: dict[str, tuple[str, str]] = {
    "plan": (
        "planner.cli.plan_cmd",
        "Size a fleet for a trace, a model and SLOs (CP-SAT, verified by replay).",
    ),
    "traces": (
        "planner.cli.traces_cmd",
        "Request traces: inspect statistics, convert to Parquet, synthesize.",
    ),
    "catalog": (
        "planner.cli.catalog_cmd",
        "The hardware and model catalog, with a source for every number.",
    ),
    "perf": (
        "planner.cli.perf_cmd",
        "Predicted step latency (per-operator breakdown), memory and power of one replica.",
    ),
    "profile": (
        "planner.cli.profile_cmd",
        "Measure this GPU (GEMMs, attention, copies, steps, power); with --collectives, this host's GPUs "
        "together (NCCL, TP and EP steps).",
    ),
    "replay": (
        "planner.cli.replay_cmd",
        "Replay a request trace through N replicas (vLLM-class engines, router, prefix cache) and report "
        "latency, SLO attainment, GPU-hours, energy and cost.",
    ),
    "kv-tiers": (
        "planner.cli.kv_tiers_cmd",
        "Does a KV tier pay for itself? Size the fleet by replay with HBM only, +DRAM, +NVMe and +a shared "
        "pool, and compare GPUs and cost per hour.",
    ),
    "experts": (
        "planner.cli.experts_cmd",
        "Place MoE experts on GPUs; compare with DeepSeek's EPLB.",
    ),
    "power": (
        "planner.cli.power_cmd",
        "Plan servers per row under a power budget with POLCA-style clock locking; print the Pareto curve "
        "(extra servers vs time capped vs p99 inflation) beside nameplate and NVIDIA Dynamo's cap x "
        "replicas rule.",
    ),
    "dashboard": (
        "planner.cli.dashboard_cmd",
        "Start the what-if dashboard (Streamlit) in the browser.",
    ),
    "report": (
        "planner.cli.report_cmd",
        "Write a self-contained HTML report of a plan or a replay.",
    ),
    "autoscale-compare": (
        "planner.cli.autoscale_cmd",
        "Replay a trace with HPA, KEDA, Ray Serve, Dynamo SLA, llm-d WVA and fleetwise's forecast-driven "
        "MPC in the loop; report GPU-hours, SLO attainment, violation minutes and scaling actions per "
        "policy.",
    ),
    "bench": (
        "planner.cli.bench_cmd",
        "Benchmarks (speed and accuracy), printed side by side.",
    ),
    "serve-metrics": (
        "planner.cli.serve_metrics_cmd",
        "Serve the latest plan/replay results on /metrics for Prometheus (desired replicas, power caps, "
        "forecasts, predicted SLO attainment, GPU-seconds, cost, solver health).",
    ),
    "autoscale": (
        "planner.cli.live_autoscale_cmd",
        "Autoscale live vLLM pools: read their metrics from Prometheus (old and new vLLM names), run the "
        "simulator's policy, guard against missing/stale/absurd input, and export "
        "fleetwise_desired_replicas for KEDA/HPA on /metrics.",
    ),
    "calibrate": (
        "planner.cli.calibrate_cmd",
        "Fit the per-node model to a GPU's measured profile (from fleetwise profile) and write its "
        "calibration JSON; print the held-out error table.",
    ),
}


def summary(verb: str) -> str:
    """The verb's one-line summary (the first line of its ``--help``)."""
    return VERBS[verb][1]

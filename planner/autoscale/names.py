"""The autoscaling names users type (``--policies``, ``--workload``, pools.yaml): policies and benchmark
workloads.

Why a module of enums that imports nothing: ``fleetwise autoscale-compare --help`` shows them as option
choices and defaults, and the modules that use them (the policy registry :mod:`planner.autoscale.context`,
the comparison :mod:`planner.autoscale.compare`, :mod:`planner.autoscale.workloads`) import the policies,
the simulator, polars and OR-Tools: over a second before the help could print.
"""

from __future__ import annotations

from enum import StrEnum


class PolicyName(StrEnum):
    """Autoscaling policies by name (CLI/YAML)."""

    TARGET_TRACKING = "target-tracking"
    HPA = "hpa"
    KEDA = "keda"
    LLM_D_KEDA = "llm-d-keda"
    RAY_SERVE = "ray-serve"
    DYNAMO_SLA = "dynamo-sla"
    WVA = "wva"
    MPC = "mpc"


LEGACY: dict[PolicyName, str] = {
    PolicyName.WVA: ("llm-d's Workload Variant Autoscaler is deprecated upstream (v0.9.0 its last release; "
                     "llm-d now scales with KEDA on its endpoint picker's metrics, the llm-d-keda row): a "
                     "legacy baseline"),
}
"""Baselines the comparison keeps although their projects moved on, with what to tell the reader."""


DEFAULT_POLICIES: tuple[PolicyName, ...] = (
    PolicyName.HPA, PolicyName.KEDA, PolicyName.LLM_D_KEDA, PolicyName.RAY_SERVE, PolicyName.DYNAMO_SLA,
    PolicyName.WVA, PolicyName.MPC,
)
"""The policies :func:`planner.autoscale.compare.compare_autoscalers` replays unless told otherwise."""


class Workload(StrEnum):
    """The three benchmark workloads (:data:`planner.autoscale.workloads.WORKLOADS`)."""

    AZURE_CODE = "azure-code"
    AZURE_CONV = "azure-conv"
    SERVEGEN_M_SMALL = "servegen-m-small-14d"

"""A Dynamo planner's ``PlannerConfig`` read from its file, as the parameters of the ``dynamo-sla`` policy.

Source: ``ai-dynamo/dynamo`` ``components/src/dynamo/planner/config/planner_config.py`` (the pydantic model
the planner validates its ``--config`` against) and ``config/defaults.py``, and the Planner guide's field
reference (``docs/components/planner/planner-guide.md``; https://docs.nvidia.com/dynamo/latest/ "Planner
Configuration"). A config comes as YAML or JSON, bare or as a DynamoGraphDeploymentRequest with it under
``spec.features.planner``.

What is replayed is Dynamo's throughput-based (SLA) scaling (:mod:`planner.autoscale.dynamo`) with the
user's settings:

============================================ ====================================================
``throughput_adjustment_interval`` (s)        ``adjustment_interval_s`` (older name
                                               ``adjustment_interval``)
``ttft``, ``itl`` (ms)                         ``ttft_sla_s``, ``itl_sla_s``
``load_predictor``, ``load_predictor_log1p``   ``predictor`` (constant, arima), ``log1p``
``max_gpu_budget``, ``min_endpoint``           the same
============================================ ====================================================

``optimization_target`` ``throughput``, ``latency`` or ``load`` (and ``sla`` with
``enable_throughput_scaling: false``) scale by Dynamo's load-based loop alone (forward-pass metrics and
online regression), which the replay does not model: such a config is refused, naming the field. What the
replay does not reproduce of an accepted config (load-based scaling above the throughput floor, a Kalman or
Prophet predictor, disaggregated pools, fields Dynamo does not know) is said in one line
(:attr:`planner.autoscale.manifests.ManifestPolicy.notes`); fields that only place or observe the planner
(namespace, Prometheus endpoint, report folders...) change nothing in a replay and are not mentioned.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.autoscale.dynamo import DynamoParams, Predictor
from traces.errors import InputError

PLACEMENT_FIELDS: frozenset[str] = frozenset({
    "environment", "namespace", "backend", "log_dir", "profile_results_dir", "pre_deployment_sweeping_mode",
    "metric_pulling_prometheus_endpoint", "metric_reporting_prometheus_port", "throughput_metrics_source",
    "model_name", "global_planner_namespace", "report_interval_hours", "report_output_dir",
    "live_dashboard_port", "advisory_log_interval", "prophet_window_size", "kalman_q_level",
    "kalman_q_trend", "kalman_r", "kalman_min_points",
})
"""PlannerConfig fields that place, feed or observe the planner without changing what it decides on the
replay's cluster (the predictors' own knobs are covered by the predictor's note)."""

LOAD_FIELDS: frozenset[str] = frozenset({
    "load_adjustment_interval", "max_num_fpm_samples", "fpm_sample_bucket_size",
    "load_scaling_down_sensitivity", "load_metric_samples", "load_min_observations",
})
"""Settings of the load-based loop (forward-pass metrics), which the replay does not model."""

LOAD_ONLY_TARGETS = ("throughput", "latency", "load")
"""``optimization_target`` values that turn throughput-based scaling off (load-based scaling only)."""


class PlannerConfigModel(BaseModel):
    """The PlannerConfig fields the replay reads, typed as Dynamo types them; other keys are kept aside."""

    model_config = ConfigDict(extra="allow", frozen=True)

    optimization_target: Literal["throughput", "latency", "load", "sla"] | None = None
    enable_throughput_scaling: bool = True
    enable_load_scaling: bool = False
    throughput_adjustment_interval: int | None = Field(None, gt=0)
    adjustment_interval: int | None = Field(None, gt=0)
    ttft: float = Field(500.0, ge=1.0, allow_inf_nan=False)
    itl: float = Field(50.0, ge=1.0, allow_inf_nan=False)
    load_predictor: Literal["constant", "arima", "kalman", "prophet"] = "arima"
    load_predictor_log1p: bool = False
    load_predictor_warmup_trace: str | None = None
    max_gpu_budget: int = Field(8, ge=1)
    min_endpoint: int = Field(1, ge=0)
    mode: Literal["disagg", "prefill", "decode", "agg"] = "disagg"
    decode_engine_num_gpu: int | None = Field(None, ge=1)
    prefill_engine_num_gpu: int | None = Field(None, ge=1)
    no_operation: bool = False
    scaling_mode: Literal["active", "advisory"] = "active"


MODELLED: frozenset[str] = frozenset(PlannerConfigModel.model_fields)


def is_planner_config(doc: Mapping[str, Any]) -> bool:
    """Whether a parsed document is a PlannerConfig (bare, or a DGDR / ``features:`` wrapper around one)."""
    if doc.get("kind") == "DynamoGraphDeploymentRequest":
        return True
    if "kind" in doc or "apiVersion" in doc:
        return False
    if isinstance(doc.get("features"), Mapping) and "planner" in doc["features"]:
        return True
    return bool(set(doc) & (MODELLED | PLACEMENT_FIELDS | LOAD_FIELDS))


def _unwrap(doc: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], str, str]:
    """``(config, where it sits, a name)`` of the planner config in ``doc``."""
    if doc.get("kind") == "DynamoGraphDeploymentRequest":
        cfg = ((doc.get("spec") or {}).get("features") or {}).get("planner")
        if not isinstance(cfg, Mapping):
            raise InputError("no planner config", path=path, field="spec.features.planner",
                             expected="a PlannerConfig object")
        return cfg, "spec.features.planner.", str((doc.get("metadata") or {}).get("name", Path(path).stem))
    if "features" in doc:
        cfg = (doc.get("features") or {}).get("planner")
        if not isinstance(cfg, Mapping):
            raise InputError("no planner config", path=path, field="features.planner",
                             expected="a PlannerConfig object")
        return cfg, "features.planner.", Path(path).stem
    return doc, "", Path(path).stem


def planner_config_policy(doc: Mapping[str, Any], path: str) -> tuple[str, DynamoParams, str]:
    """``(row name, parameters without a profile, notes)`` of the PlannerConfig in ``doc``.

    Raises:
        InputError: a field of the wrong type or out of range (named with its path), or a config that
            scales by load alone.

    >>> name, p, notes = planner_config_policy({"optimization_target": "sla", "ttft": 300, "itl": 25,
    ...                                         "mode": "agg", "load_predictor": "constant"}, "cfg.yaml")
    >>> name, p.ttft_sla_s, p.itl_sla_s, p.predictor.value, notes
    ('dynamo:cfg', 0.3, 0.025, 'constant', '')
    """
    cfg, where, stem = _unwrap(doc, path)
    try:
        m = PlannerConfigModel.model_validate(dict(cfg))
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise InputError(f"{e['msg']} (got {e.get('input')!r})", path=path, field=f"{where}{loc}",
                         expected="the PlannerConfig schema (ttft and itl in milliseconds)") from None
    if m.optimization_target in LOAD_ONLY_TARGETS:
        raise InputError(
            f"optimization_target {m.optimization_target!r} scales on load alone (Dynamo's forward-pass "
            "regression loop), which the replay does not model", path=path,
            field=f"{where}optimization_target",
            expected="optimization_target: sla with enable_throughput_scaling (throughput-based scaling)")
    if not m.enable_throughput_scaling:
        raise InputError("throughput-based scaling is off: the config scales on load alone, which the replay "
                         "does not model", path=path, field=f"{where}enable_throughput_scaling",
                         expected="enable_throughput_scaling: true")
    interval = m.throughput_adjustment_interval or m.adjustment_interval or 180
    predictor = Predictor.CONSTANT if m.load_predictor == "constant" else Predictor.ARIMA
    params = DynamoParams(adjustment_interval_s=float(interval), ttft_sla_s=m.ttft / 1000.0,
                          itl_sla_s=m.itl / 1000.0, predictor=predictor, min_endpoint=m.min_endpoint,
                          max_gpu_budget=m.max_gpu_budget, log1p=m.load_predictor_log1p)
    return f"dynamo:{stem}", params, _notes(m, cfg)


def _notes(m: PlannerConfigModel, cfg: Mapping[str, Any]) -> str:
    """One line: what of the config the replay does not reproduce (empty when nothing)."""
    not_modelled: list[str] = []
    if m.optimization_target is None:
        not_modelled.append("no optimization_target: read as throughput-based scaling (releases with the "
                            "field default to 'throughput', load-based)")
    if m.enable_load_scaling:
        load = sorted(k for k in cfg if k in LOAD_FIELDS)
        not_modelled.append("enable_load_scaling (load-based scaling above the throughput floor"
                            + (f": {', '.join(load)}" if load else "") + ")")
    if m.load_predictor in ("kalman", "prophet"):
        not_modelled.append(f"load_predictor {m.load_predictor} (replayed with arima)")
    if m.load_predictor_warmup_trace:
        not_modelled.append("load_predictor_warmup_trace (predictors start empty)")
    if m.mode != "agg":
        not_modelled.append(f"mode {m.mode} (replayed on aggregated replicas: prefill and decode GPUs "
                            "add up)")
    for f in ("decode_engine_num_gpu", "prefill_engine_num_gpu"):
        if getattr(m, f) is not None:
            not_modelled.append(f"{f} (GPUs per engine are the replica's, --tp)")
    if m.no_operation or m.scaling_mode == "advisory":
        not_modelled.append("no_operation/advisory (replayed as if the planner acted)")
    unknown = sorted(k for k in cfg if k not in MODELLED | PLACEMENT_FIELDS | LOAD_FIELDS)
    parts = []
    if not_modelled:
        parts.append("not replayed: " + "; ".join(not_modelled))
    if unknown:
        parts.append("unknown to PlannerConfig (ignored, as Dynamo does): " + ", ".join(unknown))
    return ". ".join(parts)

"""The user's own controller settings: a KEDA ``ScaledObject``, an ``autoscaling/v2``
``HorizontalPodAutoscaler`` or a Dynamo planner config read from its file and replayed as that exact policy
(``fleetwise autoscale-compare --policy-from FILE``).

Why: the comparison's HPA and KEDA rows use published defaults and a target derived from the replica's
capacity; an operator wants to know what *their* thresholds, windows and rate limits cost and miss on
their traffic, beside what fleetwise's policy would do. Fields follow the published schemas (KEDA
``keda.sh/v1alpha1`` ScaledObject, Kubernetes ``autoscaling/v2``, Dynamo's ``PlannerConfig``:
:mod:`planner.autoscale.dynamo_config`); what the replay cannot reproduce (a trigger other than
Prometheus, a query over series the simulator does not expose, a metric type other than ``AverageValue``,
``scalingModifiers`` formulas) is refused with the field named, never guessed.

A ScaledObject's queries may read vLLM's gauges or llm-d's endpoint-picker gauges
(``llm_d_epp_flow_control_pool_saturation``, ``llm_d_epp_request_running``,
``llm_d_epp_flow_control_queue_size``: :mod:`planner.autoscale.epp`); the EPP keeps the settings llm-d's
guide gives it (flow control on, the saturation detector's queue depth 5 and KV use 0.8), as the ScaledObject
does not carry them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from planner.autoscale import epp
from planner.autoscale.dynamo import DynamoParams, DynamoProfile, dynamo_sla
from planner.autoscale.dynamo_config import is_planner_config, planner_config_policy
from planner.autoscale.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPAParams,
    MetricSource,
    MetricTarget,
    PolicyType,
    RatePolicy,
    ScalingRules,
    SelectPolicy,
    VllmMetric,
    hpa,
)
from planner.autoscale.keda import KEDAParams, PromQuery, Trigger, keda
from planner.contracts.scaling import PolicyFn
from traces.errors import InputError


@dataclass(frozen=True)
class ManifestPolicy:
    """A controller read from a file: its row name in the comparison, the parameters, and what of the file
    the replay does not reproduce (one line, empty when everything is).

    A Dynamo planner's parameters lack the profile its planner interpolates: the comparison builds it from
    the same perf model as its own ``dynamo-sla`` row and passes it to :meth:`policy`.
    """

    name: str
    params: KEDAParams | HPAParams | DynamoParams
    notes: str = ""

    def policy(self, profile: DynamoProfile | None = None) -> PolicyFn:
        """The policy function with these parameters (``profile``: a Dynamo planner's, when it has none).

        Raises:
            InputError: a Dynamo planner without a profile.
        """
        if isinstance(self.params, KEDAParams):
            return functools.partial(keda, params=self.params)
        if isinstance(self.params, DynamoParams):
            p = self.params if self.params.profile is not None or profile is None else dataclasses.replace(
                self.params, profile=profile)
            if p.profile is None:
                raise InputError("a Dynamo planner needs its profile", field="profile",
                                 expected="the replica's profile (planner.autoscale.compare.dynamo_profile)")
            return functools.partial(dynamo_sla, params=p)
        return functools.partial(hpa, params=self.params)


_SUFFIX = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value: object, *, path: str, field: str) -> float:
    """A Kubernetes quantity (``32``, ``500m``, ``2k``) or a number.

    >>> quantity("500m", path="x", field="f"), quantity(32, path="x", field="f")
    (0.5, 32.0)
    """
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([mkMG]?)", text)
    if m is None:
        raise InputError(
            f"{text!r} is not a quantity",
            path=path,
            field=field,
            expected="a number or a Kubernetes quantity such as 500m or 32",
        )
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def _vllm_metric(name: str, *, path: str, field: str) -> VllmMetric:
    """The simulated vLLM series a metric name or PromQL query reads."""
    run = "num_requests_running" in name
    wait = "num_requests_waiting" in name
    if run and wait:
        return VllmMetric.IN_SYSTEM
    if run:
        return VllmMetric.RUNNING
    if wait:
        return VllmMetric.WAITING
    if "kv_cache_usage" in name or "gpu_cache_usage" in name:
        return VllmMetric.KV_CACHE
    raise InputError(
        f"{name!r} reads no series the replay has",
        path=path,
        field=field,
        expected="vLLM's num_requests_running, num_requests_waiting (or their sum) or kv_cache_usage_perc",
    )


def _rules(doc: Mapping[str, Any] | None, default: ScalingRules, *, path: str, field: str) -> ScalingRules:
    if not doc:
        return default
    policies = (
        tuple(
            RatePolicy(PolicyType(p["type"]), int(p["value"]), float(p["periodSeconds"]))
            for p in doc.get("policies", ())
        )
        or default.policies
    )
    try:
        select = SelectPolicy(doc.get("selectPolicy", "Max"))
    except ValueError:
        raise InputError(
            f"selectPolicy {doc.get('selectPolicy')!r}",
            path=path,
            field=f"{field}.selectPolicy",
            expected="Max, Min or Disabled",
        ) from None
    window = float(doc.get("stabilizationWindowSeconds", default.stabilization_window_s))
    tol = doc.get("tolerance")
    return ScalingRules(
        stabilization_window_s=window,
        policies=policies,
        select_policy=select,
        tolerance=default.tolerance if tol is None else quantity(tol, path=path, field=field),
    )


def _behavior(doc: Mapping[str, Any] | None, *, path: str, field: str) -> tuple[ScalingRules, ScalingRules]:
    b = doc or {}
    return (
        _rules(b.get("scaleUp"), DEFAULT_SCALE_UP, path=path, field=f"{field}.scaleUp"),
        _rules(b.get("scaleDown"), DEFAULT_SCALE_DOWN, path=path, field=f"{field}.scaleDown"),
    )


_VLLM_QUERIES = {VllmMetric.IN_SYSTEM: PromQuery.SUM_IN_SYSTEM, VllmMetric.WAITING: PromQuery.SUM_WAITING}
_EPP_QUERIES = {epp.POOL_SATURATION: PromQuery.EPP_POOL_SATURATION,
                epp.REQUEST_RUNNING: PromQuery.EPP_REQUEST_RUNNING, epp.QUEUE_SIZE: PromQuery.EPP_QUEUE_SIZE}


def _query(text: str, *, path: str, field: str) -> PromQuery:
    """What a trigger's PromQL reads: one of the EPP's gauges, or vLLM's requests in the system / waiting.

    >>> _query('max(llm_d_epp_flow_control_pool_saturation{inference_pool="p"})', path="x", field="q")
    <PromQuery.EPP_POOL_SATURATION: 'epp_pool_saturation'>
    """
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    found = {_EPP_QUERIES[epp.LEGACY_NAMES.get(n, n)] for n in names
             if epp.LEGACY_NAMES.get(n, n) in _EPP_QUERIES}
    if len(found) > 1:
        raise InputError(f"a query over {len(found)} EPP series", path=path, field=field,
                         expected="one EPP series per trigger (the HPA races triggers; write one per series)")
    if found:
        return found.pop()
    metric = _vllm_metric(text, path=path, field=field)
    if metric not in _VLLM_QUERIES:
        raise InputError(
            f"a {metric.value} query",
            path=path,
            field=field,
            expected="the sum of running and waiting requests, or of waiting requests, or an EPP gauge "
            "(llm_d_epp_flow_control_pool_saturation, llm_d_epp_request_running, "
            "llm_d_epp_flow_control_queue_size)",
        )
    return _VLLM_QUERIES[metric]


def _trigger(t: Mapping[str, Any], i: int, path: str) -> Trigger:
    field = f"spec.triggers[{i}]"
    if t.get("type") != "prometheus":
        raise InputError(f"trigger type {t.get('type')!r}", path=path, field=f"{field}.type",
                         expected="prometheus (the only trigger the replay can evaluate)")
    kind = t.get("metricType", "AverageValue")
    if kind != "AverageValue":
        raise InputError(f"metricType {kind!r}", path=path, field=f"{field}.metricType",
                         expected="AverageValue (KEDA's default for the Prometheus scaler)")
    meta = t.get("metadata") or {}
    threshold = quantity(meta.get("threshold", ""), path=path, field=f"{field}.metadata.threshold")
    if threshold <= 0:
        raise InputError(f"threshold {threshold:g}", path=path, field=f"{field}.metadata.threshold",
                         expected="a quantity > 0")
    return Trigger(
        query=_query(str(meta.get("query", "")), path=path, field=f"{field}.metadata.query"),
        threshold=threshold,
        activation_threshold=quantity(meta.get("activationThreshold", 0), path=path,
                                      field=f"{field}.metadata.activationThreshold"),
    )


def _scaled_object(doc: Mapping[str, Any], path: str) -> ManifestPolicy:
    spec = doc.get("spec") or {}
    raw = spec.get("triggers") or ()
    if not raw:
        raise InputError(
            "no triggers",
            path=path,
            field="spec.triggers",
            expected="triggers of type prometheus (the one the replay can evaluate)",
        )
    advanced = spec.get("advanced") or {}
    if advanced.get("scalingModifiers"):
        raise InputError("a scalingModifiers formula", path=path, field="spec.advanced.scalingModifiers",
                         expected="triggers raced by the HPA (the replay does not evaluate expr-lang "
                         "formulas)")
    triggers = tuple(_trigger(t, i, path) for i, t in enumerate(raw))
    up, down = _behavior(
        (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior"),
        path=path,
        field="spec.advanced.horizontalPodAutoscalerConfig.behavior",
    )
    params = KEDAParams(
        triggers=triggers,
        polling_interval_s=float(spec.get("pollingInterval", 30)),
        cooldown_period_s=float(spec.get("cooldownPeriod", 300)),
        initial_cooldown_period_s=float(spec.get("initialCooldownPeriod", 0)),
        min_replica_count=int(spec.get("minReplicaCount", 0)),
        max_replica_count=int(spec.get("maxReplicaCount", 100)),
        scale_up=up,
        scale_down=down,
    )
    return ManifestPolicy(f"keda:{(doc.get('metadata') or {}).get('name', Path(path).stem)}", params)


def _hpa(doc: Mapping[str, Any], path: str) -> ManifestPolicy:
    spec = doc.get("spec") or {}
    metrics = []
    for i, m in enumerate(spec.get("metrics", ())):
        kind = m.get("type")
        field = f"spec.metrics[{i}]"
        if kind not in ("Pods", "External"):
            raise InputError(
                f"metric type {kind!r}",
                path=path,
                field=f"{field}.type",
                expected="Pods or External (the replay has no CPU or memory)",
            )
        body = m.get(kind.lower()) or {}
        target = body.get("target") or {}
        if target.get("type", "AverageValue") != "AverageValue":
            raise InputError(
                f"target type {target.get('type')!r}",
                path=path,
                field=f"{field}.target.type",
                expected="AverageValue",
            )
        name = str((body.get("metric") or {}).get("name", ""))
        metrics.append(
            MetricTarget(
                _vllm_metric(name, path=path, field=f"{field}.metric.name"),
                quantity(target.get("averageValue", ""), path=path, field=f"{field}.target.averageValue"),
                MetricSource.PODS if kind == "Pods" else MetricSource.EXTERNAL,
            )
        )
    if not metrics:
        raise InputError("no metrics", path=path, field="spec.metrics", expected="at least one Pods metric")
    up, down = _behavior(spec.get("behavior"), path=path, field="spec.behavior")
    params = HPAParams(
        metrics=tuple(metrics),
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec.get("maxReplicas", 100)),
        scale_up=up,
        scale_down=down,
    )
    return ManifestPolicy(f"hpa:{(doc.get('metadata') or {}).get('name', Path(path).stem)}", params)


def load_policy(path: str | Path) -> ManifestPolicy:
    """The first ScaledObject or HorizontalPodAutoscaler in a YAML file (more documents may follow), or a
    Dynamo planner config (YAML or JSON: a ``PlannerConfig``, or a DynamoGraphDeploymentRequest with one
    under ``spec.features.planner``).

    Raises:
        InputError: unreadable file, bad YAML, no such object, or a field the replay cannot reproduce.
    """
    p = str(path)
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if isinstance(d, dict)]
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=p) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not YAML or JSON: {str(exc).splitlines()[0]}", path=p) from None
    for d in docs:
        try:
            if d.get("kind") == "ScaledObject":
                return _scaled_object(d, p)
            if d.get("kind") == "HorizontalPodAutoscaler":
                return _hpa(d, p)
            if is_planner_config(d):
                name, params, notes = planner_config_policy(d, p)
                return ManifestPolicy(name, params, notes)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"malformed {d.get('kind')}: {exc}", path=p, field="spec", expected="the published schema"
            ) from None
    raise InputError(
        "no ScaledObject, HorizontalPodAutoscaler or Dynamo planner config",
        path=p,
        field="kind",
        expected="a KEDA ScaledObject, an autoscaling/v2 HorizontalPodAutoscaler or a Dynamo PlannerConfig",
    )

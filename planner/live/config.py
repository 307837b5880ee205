"""``pools.yaml``: which serving pools (vLLM, SGLang, trtllm-serve) the live autoscaler reads, with which
policy, within which bounds.

Validated at the boundary with pydantic (unknown keys rejected with their path), then frozen into
:class:`LiveConfig` / :class:`PoolSpec`, which hold the bound policy function so the controller never looks
anything up by name again. Errors are :class:`~traces.errors.InputError` naming the file and the key path.

Example file::

    scrape_interval_s: 15        # Prometheus' scrape interval for the vLLM targets
    stale_after_scrapes: 3       # a sample older than 3 scrapes is stale
    interval_s: 15               # control period (the CLI's --interval-s overrides it)
    pools:
      chat:
        selector: {model_name: meta-llama/Llama-3.1-8B-Instruct, namespace: prod}
        model: Llama-3.1-8B
        gpu: H100-SXM
        policy: target-tracking
        params: {target_running_per_replica: 32, scale_down_delay_s: 300}
        min_replicas: 1
        max_replicas: 16
        max_step_up: 4
        max_step_down: 1
      reasoning:
        engine: sglang           # read SGLang's series (sglang:num_running_reqs, ...); also trtllm
        selector: {model_name: Qwen/Qwen3-32B}
        max_replicas: 8
      chat-8b:                   # behind llm-d's endpoint picker (deploy/inference-gateway)
        selector: {namespace: prod, pool: chat-8b}
        policy: llm-d-keda       # llm-d's KEDA policy: EPP pool saturation (0.7) and running requests
        params: {running_threshold: 24}
        pending_query: sum(llm_d_epp_flow_control_queue_size{inference_pool="chat-8b"})

>>> cfg = parse_config({"pools": {"chat": {"selector": {"model_name": "m"}, "max_replicas": 4}}}, source="x")
>>> cfg.pools[0].name, cfg.pools[0].min_replicas, cfg.pools[0].max_replicas, cfg.pools[0].policy_name
('chat', 1, 4, 'target-tracking')
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    model_validator,
)

from planner.autoscale.context import POLICIES, PolicyName
from planner.autoscale.keda import KEDAParams, one_trigger_shorthand
from planner.contracts.scaling import PolicyFn
from planner.live.engines import Engine
from traces.errors import InputError

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolModel(_Strict):
    """One pool in ``pools.yaml`` (see the module docstring)."""

    selector: dict[str, str] = Field(
        description="label matchers selecting the pool's vLLM series, e.g. {model_name: ..., namespace: ...}")
    role: str = Field("both", description="pool role label: both, prefill or decode")
    model: str = Field("", description="model label of fleetwise_desired_replicas")
    gpu: str = Field("", description="GPU label of fleetwise_desired_replicas")
    replica_label: str = Field("pod", description="label that tells replicas apart (pod or replica)")
    engine: Engine = Field(Engine.VLLM, description="serving engine whose series the pool exports: vllm, "
                           "sglang or trtllm (trtllm: the inference-extension gauges only)")
    policy: PolicyName = Field(PolicyName.TARGET_TRACKING,
                               description="autoscaling policy, as in the simulator")
    params: dict[str, Any] = Field(default_factory=dict, description="the policy's parameters")
    min_replicas: int = Field(1, ge=0, description="never fewer replicas")
    max_replicas: PositiveInt = Field(64, description="never more replicas")
    max_step_up: PositiveInt = Field(4, description="most replicas added per control interval")
    max_step_down: PositiveInt = Field(1, description="most replicas removed per control interval")
    replicas_query: str | None = Field(
        None, description="PromQL for the Deployment's spec.replicas (kube-state-metrics); default: the "
        "autoscaler's own last decision")
    pending_query: str | None = Field(
        None, description="PromQL for requests queued at the gateway (the load signal at zero replicas)")
    ready_query: str | None = Field(
        None, description="PromQL for the pool's ready replicas (kube-state-metrics' "
        "kube_deployment_status_replicas_ready): fewer replicas exposing vLLM series than ready ones is "
        "a partial scrape (unhealthy), not a lighter load")

    @model_validator(mode="after")
    def _bounds(self) -> PoolModel:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} < min_replicas {self.min_replicas}")
        if self.min_replicas == 0 and not self.pending_query:
            # at zero replicas no vLLM series exist: without the gateway's queue nothing could ever
            # say that load came back, and the pool would stay at zero reporting healthy
            raise ValueError("min_replicas 0 needs a pending_query (the gateway's queue is the only load "
                             "signal at zero replicas)")
        if not self.selector:
            raise ValueError("selector is empty: give at least one label matcher")
        for k in (*self.selector, self.replica_label):
            if not _LABEL.match(k):
                raise ValueError(f"{k!r} is not a Prometheus label name")
        return self


Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
"""A finite period: more than 0, at most a day (``.inf`` or ``nan`` in a config is an input error)."""


class ConfigModel(_Strict):
    """The whole ``pools.yaml``."""

    scrape_interval_s: Seconds = Field(15.0, description="scrape interval of the vLLM targets, s")
    stale_after_scrapes: Annotated[float, Field(gt=0, le=1_000, allow_inf_nan=False)] = Field(
        3.0, description="samples older than this many scrapes: stale")
    interval_s: Seconds = Field(15.0, description="control period, s")
    max_requests_per_replica: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        100_000.0, description="plausibility limit: a replica reporting more running + waiting requests is "
        "absurd input, not load")
    unhealthy_deadline_s: Seconds = Field(
        300.0, description="the liveness endpoint fails once every tick has failed for this long")
    pools: dict[str, PoolModel] = Field(description="pools by name")

    @model_validator(mode="after")
    def _some(self) -> ConfigModel:
        if not self.pools:
            raise ValueError("no pools")
        return self


@dataclass(frozen=True)
class PoolSpec:
    """One pool, frozen, with its policy bound to its parameters.

    Attributes:
        name, role, model, gpu: labels of the exported series.
        selector: label matchers of the pool's vLLM series.
        replica_label: the label that tells replicas apart.
        engine: the serving engine (:class:`planner.live.engines.Engine` value), naming the series read.
        policy_name: the policy's registry name.
        policy: the bound policy function (``POLICIES[name]`` with ``params=``).
        min_replicas, max_replicas: hard bounds applied after the policy.
        max_step_up, max_step_down: ramp limits per control interval.
        replicas_query, pending_query, ready_query: optional PromQL (see :class:`PoolModel`).
    """

    name: str
    role: str
    model: str
    gpu: str
    selector: tuple[tuple[str, str], ...]
    replica_label: str
    policy_name: str
    policy: PolicyFn
    min_replicas: int
    max_replicas: int
    max_step_up: int
    max_step_down: int
    replicas_query: str | None = None
    pending_query: str | None = None
    ready_query: str | None = None
    engine: str = "vllm"


@dataclass(frozen=True)
class LiveConfig:
    """The validated ``pools.yaml``."""

    scrape_interval_s: float
    stale_after_scrapes: float
    interval_s: float
    pools: tuple[PoolSpec, ...]
    max_requests_per_replica: float = 100_000.0
    unhealthy_deadline_s: float = 300.0

    @property
    def stale_after_s(self) -> float:
        """Samples older than this are stale."""
        return self.scrape_interval_s * self.stale_after_scrapes


def params_class(policy: PolicyName) -> type[Any]:
    """The frozen parameter dataclass of ``policy`` (from its ``params`` annotation)."""
    hint = typing.get_type_hints(POLICIES[policy])["params"]
    cls: type[Any] = next(a for a in typing.get_args(hint) if a is not type(None))
    return cls


def _unknown_keys(cls: type[Any], data: object, path: str) -> str | None:
    """The path of the first key of ``data`` that ``cls`` (a dataclass, nested ones too) does not have."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return None
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        if k not in hints:
            return f"{path}.{k}"
        inner = [a for a in (typing.get_args(hints[k]) or (hints[k],))
                 if isinstance(a, type) and dataclasses.is_dataclass(a)]
        items = list(enumerate(v)) if isinstance(v, list) else [(None, v)]
        for a in inner:
            for i, item in items:
                bad = _unknown_keys(a, item, f"{path}.{k}" if i is None else f"{path}.{k}[{i}]")
                if bad:
                    return bad
    return None


def _bind(name: str, p: PoolModel, source: str) -> PolicyFn:
    cls = params_class(p.policy)
    where = f"pools.{name}.params"
    given = one_trigger_shorthand(dict(p.params)) if cls is KEDAParams else dict(p.params)
    bad = _unknown_keys(cls, given, where)
    if bad:
        raise InputError(f"unknown key for policy {p.policy.value}", path=source, field=bad,
                         expected="one of " + ", ".join(f.name for f in dataclasses.fields(cls)))
    raw = dict(given)
    fields = {f.name for f in dataclasses.fields(cls)}
    for lo, hi in (("min_replicas", "max_replicas"), ("min_replica_count", "max_replica_count")):
        if lo in fields and lo not in raw:
            raw[lo] = p.min_replicas
        if hi in fields and hi not in raw:
            raw[hi] = p.max_replicas
    from pydantic import TypeAdapter

    try:
        params = TypeAdapter(cls).validate_python(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise InputError(e["msg"], path=source, field=".".join([where, *(str(x) for x in e["loc"])]),
                         expected=f"parameters of {cls.__name__}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path=source, field=where,
                         expected=f"parameters of {cls.__name__}") from None
    bound: PolicyFn = functools.partial(POLICIES[p.policy], params=params)  # type: ignore[call-arg]
    return bound


def parse_config(data: object, *, source: str) -> LiveConfig:
    """Validate a parsed ``pools.yaml`` and freeze it.

    Raises:
        InputError: unknown key, wrong type, bad bounds; the message names the key path.
    """
    try:
        m = ConfigModel.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        raise InputError(msg, path=source, field=loc, expected="see 'fleetwise autoscale --help'") from None
    pools = tuple(
        PoolSpec(name=name, role=p.role, model=p.model, gpu=p.gpu, selector=tuple(sorted(p.selector.items())),
                 replica_label=p.replica_label, policy_name=p.policy.value, policy=_bind(name, p, source),
                 min_replicas=p.min_replicas, max_replicas=p.max_replicas, max_step_up=p.max_step_up,
                 max_step_down=p.max_step_down, replicas_query=p.replicas_query, ready_query=p.ready_query,
                 pending_query=p.pending_query, engine=p.engine.value)
        for name, p in m.pools.items())
    return LiveConfig(scrape_interval_s=m.scrape_interval_s, stale_after_scrapes=m.stale_after_scrapes,
                      interval_s=m.interval_s, pools=pools,
                      max_requests_per_replica=m.max_requests_per_replica,
                      unhealthy_deadline_s=m.unhealthy_deadline_s)


def load_config(path: Path) -> LiveConfig:
    """Read and validate ``pools.yaml``.

    Raises:
        InputError: unreadable file, bad YAML, or invalid content.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path), field="--config",
                         expected="a pools.yaml file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=str(path),
                         row=None if mark is None else mark.line + 1) from None
    return parse_config(data, source=str(path))

"""Load and validate catalog YAML files (pydantic at the edge, frozen dataclasses inside).

The bundled files live next to this module in ``data/``. Users extend or override entries with their
own YAML of the same shape (``--catalog my.yaml`` on the CLI): an entry with an existing name replaces
the bundled one field by field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from planner.catalog.schema import Catalog, GPUSpec, MLASpec, ModelSpec, MoESpec
from traces.errors import InputError

PARAM_TOLERANCE = 0.03
"""Computed parameter count must be within 3 % of the published one (rounding in model cards)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPURecord(_Strict):
    vendor: str
    bf16_tflops: PositiveFloat
    fp8_tflops: float = Field(ge=0)
    hbm_gb: PositiveFloat
    hbm_tbps: PositiveFloat
    tdp_w: PositiveFloat
    idle_w: PositiveFloat
    link_gbps: PositiveFloat
    nic_gbit: PositiveFloat
    gpus_per_node: PositiveInt = 8
    max_sm_clock_mhz: PositiveFloat
    min_sm_clock_mhz: PositiveFloat
    price_per_hour: PositiveFloat
    sources: dict[str, str]

    @model_validator(mode="after")
    def _check(self) -> GPURecord:
        if self.idle_w >= self.tdp_w:
            raise ValueError("idle_w must be below tdp_w")
        if self.min_sm_clock_mhz > self.max_sm_clock_mhz:
            raise ValueError("min_sm_clock_mhz must not exceed max_sm_clock_mhz")
        return self


class MoERecord(_Strict):
    num_experts: PositiveInt
    experts_per_token: PositiveInt
    num_shared_experts: int = Field(0, ge=0)
    expert_ffn_size: PositiveInt
    first_dense_layers: int = Field(0, ge=0)
    dense_ffn_size: int = Field(0, ge=0)
    num_groups: PositiveInt = 1

    @model_validator(mode="after")
    def _check(self) -> MoERecord:
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token must not exceed num_experts")
        if self.first_dense_layers and not self.dense_ffn_size:
            raise ValueError("first_dense_layers needs dense_ffn_size")
        return self


class MLARecord(_Strict):
    q_lora_rank: int = Field(ge=0)
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class ModelRecord(_Strict):
    hf_id: str
    num_layers: PositiveInt
    hidden_size: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    ffn_size: int = Field(ge=0)
    vocab_size: PositiveInt
    gated_mlp: bool = True
    tied_embeddings: bool = False
    params_b: PositiveFloat
    moe: MoERecord | None = None
    mla: MLARecord | None = None
    sources: dict[str, str]

    @model_validator(mode="after")
    def _check(self) -> ModelRecord:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.moe is None and self.ffn_size == 0:
            raise ValueError("dense models need ffn_size > 0")
        return self


class CatalogFile(_Strict):
    gpus: dict[str, GPURecord] = Field(default_factory=dict)
    models: dict[str, ModelRecord] = Field(default_factory=dict)


def _to_gpu(name: str, r: GPURecord) -> GPUSpec:
    return GPUSpec(name=name, **r.model_dump())


def _to_model(name: str, r: ModelRecord) -> ModelSpec:
    d = r.model_dump(exclude={"moe", "mla"})
    moe = MoESpec(**r.moe.model_dump()) if r.moe else None
    mla = MLASpec(**r.mla.model_dump()) if r.mla else None
    return ModelSpec(name=name, moe=moe, mla=mla, **d)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", path=path, expected="a UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path, row=row) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("top level must be a mapping", path=path, expected="keys 'gpus' and/or 'models'")
    return data


def _validate(raw: Mapping[str, Any], path: str) -> CatalogFile:
    try:
        return CatalogFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(err["msg"], path=path, field=loc) from None


def _bundled_paths() -> list[str]:
    root = resources.files("planner.catalog") / "data"
    return [str(root / "gpus.yaml"), str(root / "models.yaml")]


def load_catalog(extra: Iterable[str | Path] = ()) -> Catalog:
    """Load the bundled catalog, then apply user YAML files in order.

    Args:
        extra: user catalog files; entries with a known name are merged field by field over the
            bundled entry, new names are added.

    Raises:
        InputError: a file is missing, not YAML, has unknown keys or invalid values (the message
            names the file and the dotted key path), or a model's parameter count disagrees with its
            architecture by more than 3 %.
    """
    merged: dict[str, Any] = {"gpus": {}, "models": {}}
    origin: dict[tuple[str, str], str] = {}
    for path in [*_bundled_paths(), *(str(p) for p in extra)]:
        raw = _read_yaml(path)
        unknown = set(raw) - {"gpus", "models"}
        if unknown:
            raise InputError(f"unknown top-level key {sorted(unknown)[0]!r}", path=path,
                             expected="'gpus' and/or 'models'")
        for section in ("gpus", "models"):
            entries = raw.get(section) or {}
            if not isinstance(entries, dict):
                raise InputError("must be a mapping of name -> entry", path=path, field=section)
            for name, entry in entries.items():
                merged[section][name] = _deep_merge(merged[section].get(name, {}), entry or {})
                origin[(section, name)] = path
    # Validate each entry against the file that last touched it, so errors name the right file.
    gpus: dict[str, GPUSpec] = {}
    models: dict[str, ModelSpec] = {}
    for name, entry in merged["gpus"].items():
        rec = _validate({"gpus": {name: entry}}, origin[("gpus", name)]).gpus[name]
        gpus[name] = _to_gpu(name, rec)
    for name, entry in merged["models"].items():
        path = origin[("models", name)]
        mrec = _validate({"models": {name: entry}}, path).models[name]
        spec = _to_model(name, mrec)
        computed = spec.computed_params() / 1e9
        if abs(computed - spec.params_b) > PARAM_TOLERANCE * spec.params_b:
            raise InputError(
                f"architecture gives {computed:.2f}B parameters but params_b says {spec.params_b}B",
                path=path, field=f"models.{name}.params_b",
                expected=f"within {PARAM_TOLERANCE:.0%} of the computed count",
            )
        models[name] = spec
    return Catalog(gpus=gpus, models=models)

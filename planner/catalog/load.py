"""Load and validate catalog YAML files (pydantic at the edge, frozen dataclasses inside).

The bundled files live next to this module in ``data/``. Users extend or override entries with their
own YAML of the same shape (``--catalog my.yaml`` on the CLI): an entry with an existing name (or
alias, case-insensitively) replaces the bundled one field by field; a new name adds an entry.

Everything that can be wrong with such a file becomes an :class:`~traces.errors.InputError` naming the
file, the line and the dotted key path (``gpus.H100-SXM.tdp_w``): unknown keys, wrong types
(``strict`` mode: ``"700"`` is not a number), negative or non-finite numbers, duplicate keys, a number
without a source, and a model whose published parameter count disagrees with its architecture.

Sources: every number in a catalog entry carries a source string. Bundled entries must cite one for
each field (models may cite one ``architecture`` source for all shape fields, or one per ``moe`` /
``mla`` block); fields set by a user file without a source are recorded as ``user catalog <file>``,
so ``fleetwise catalog show`` always says where a number came from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from planner.catalog.schema import Catalog, GPUSpec, KVTierSpec, MLASpec, ModelSpec, MoESpec
from traces.errors import InputError

PARAM_TOLERANCE = 0.03
"""Computed parameter count must be within 3 % of the published one (rounding in model cards)."""

SECTIONS: tuple[str, ...] = ("gpus", "models", "kv_tiers")
"""Top-level keys of a catalog file."""

ARCHITECTURE_SOURCE = "architecture"
"""Source key that covers every shape field of a model (they all come from one config.json)."""

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KVTierRecord(_Strict):
    """One KV tier entry as written in YAML (see :class:`~planner.catalog.schema.KVTierSpec`)."""

    capacity_gb: PosFloat
    read_gbps: PosFloat
    latency_us: NonNegFloat
    price_per_gb_hour: NonNegFloat
    shared: bool = False
    sources: dict[str, str] = Field(default_factory=dict)


class GPURecord(_Strict):
    """One GPU entry as written in YAML (see :class:`~planner.catalog.schema.GPUSpec` for meanings)."""

    vendor: Annotated[str, Field(min_length=1)]
    arch: str = ""
    bf16_tflops: PosFloat
    fp8_tflops: NonNegFloat
    hbm_gb: PosFloat
    cuda_memory_gib: NonNegFloat = 0.0
    hbm_tbps: PosFloat
    tdp_w: PosFloat
    idle_w: PosFloat
    link_gbps: PosFloat
    nic_gbit: PosFloat
    gpus_per_node: PosInt = 8
    max_sm_clock_mhz: PosFloat
    min_sm_clock_mhz: PosFloat
    price_per_hour: PosFloat
    node_max_w: PosFloat | None = None
    aliases: list[str] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> GPURecord:
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) must be below tdp_w ({self.tdp_w:g})")
        if self.cuda_memory_gib * 2**30 > self.hbm_gb * 1.1e9:
            raise ValueError(f"cuda_memory_gib ({self.cuda_memory_gib:g}) exceeds hbm_gb "
                             f"({self.hbm_gb:g} GB)")
        if self.min_sm_clock_mhz > self.max_sm_clock_mhz:
            raise ValueError(f"min_sm_clock_mhz ({self.min_sm_clock_mhz:g}) must not exceed "
                             f"max_sm_clock_mhz ({self.max_sm_clock_mhz:g})")
        if self.node_max_w is not None and self.node_max_w <= self.gpus_per_node * self.tdp_w:
            raise ValueError(f"node_max_w ({self.node_max_w:g}) must exceed gpus_per_node x tdp_w "
                             f"({self.gpus_per_node * self.tdp_w:g}): the server powers its GPUs and more")
        return self


class MoERecord(_Strict):
    """The ``moe`` block of a model entry."""

    num_experts: PosInt
    experts_per_token: PosInt
    num_shared_experts: NonNegInt = 0
    expert_ffn_size: PosInt
    first_dense_layers: NonNegInt = 0
    dense_ffn_size: NonNegInt = 0
    num_groups: PosInt = 1
    router_bias: bool = False

    @model_validator(mode="after")
    def _check(self) -> MoERecord:
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token must not exceed num_experts")
        if self.first_dense_layers and not self.dense_ffn_size:
            raise ValueError("first_dense_layers needs dense_ffn_size")
        if self.num_experts % self.num_groups:
            raise ValueError("num_groups must divide num_experts")
        return self


class MLARecord(_Strict):
    """The ``mla`` block of a model entry."""

    q_lora_rank: NonNegInt
    kv_lora_rank: PosInt
    qk_nope_head_dim: PosInt
    qk_rope_head_dim: PosInt
    v_head_dim: PosInt


class ModelRecord(_Strict):
    """One model entry as written in YAML (see :class:`~planner.catalog.schema.ModelSpec`)."""

    hf_id: str = ""
    num_layers: PosInt
    hidden_size: PosInt
    num_heads: PosInt
    num_kv_heads: PosInt
    head_dim: PosInt
    ffn_size: NonNegInt
    vocab_size: PosInt
    gated_mlp: bool = True
    tied_embeddings: bool = False
    params_b: PosFloat
    moe: MoERecord | None = None
    mla: MLARecord | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: NonNegInt = 2
    learned_pos_embeddings: NonNegInt = 0
    context_length: PosInt | None = None
    native_dtype: Literal["bf16", "fp8"] = "bf16"
    mtp_layers: NonNegInt = 0
    active_params_b: PosFloat | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelRecord:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.moe is None and self.ffn_size == 0:
            raise ValueError("dense models need ffn_size > 0")
        if self.moe is not None and self.moe.first_dense_layers >= self.num_layers:
            raise ValueError("moe.first_dense_layers must be below num_layers")
        if self.active_params_b is not None and self.active_params_b > self.params_b:
            raise ValueError("active_params_b must not exceed params_b")
        return self


_RECORDS: dict[str, type[_Strict]] = {"gpus": GPURecord, "models": ModelRecord, "kv_tiers": KVTierRecord}
_BLOCKS: dict[str, type[_Strict]] = {"moe": MoERecord, "mla": MLARecord}
_UNSOURCED = frozenset({"vendor", "arch", "hf_id", "aliases", "sources", "shared"})
"""Fields that are names or text, not numbers: they need no source."""
_OWN_SOURCE = frozenset({"params_b", "active_params_b"})
"""Model fields that need a source of their own (published counts, not config.json shapes)."""


@dataclass(frozen=True)
class _Origin:
    """The file that last touched an entry, and how the entry's name is spelled there."""

    path: str
    spelled: str
    text: str
    rank: int = 0
    """Position of the file in load order (later files win, and take the blame for conflicts)."""


_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (about 10x faster), else the pure-Python one."""


class _UniqueKeyLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """Safe loader that refuses duplicate keys (plain YAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path, expected="an existing catalog YAML file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                         expected="a UTF-8 YAML file") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path,
                         expected="a readable catalog YAML file") from None


def _parse_yaml(text: str, path: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path=path, row=row,
                         expected="a YAML mapping with keys 'gpus', 'models' and/or 'kv_tiers'") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("top level must be a mapping", path=path,
                         expected="keys 'gpus', 'models' and/or 'kv_tiers'")
    return data


def _locate(text: str, keys: Sequence[str]) -> int | None:
    """1-based line of the deepest key of ``keys`` found in the YAML ``text`` (None if none is)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line = k.start_mark.line + 1
                node = v
                break
        else:
            break
    return line


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _with_user_sources(entry: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Record ``user catalog <path>`` as the source of every field a user file sets without one."""
    out = dict(entry)
    sources = out.get("sources")
    if sources is None:
        sources = {}
    if not isinstance(sources, Mapping):
        return out  # pydantic reports the wrong type with its path
    filled = dict(sources)
    for key in entry:
        if key not in _UNSOURCED and key not in filled:
            filled[key] = f"user catalog {path}"
    out["sources"] = filled
    return out


def _canonical(existing: Mapping[str, Any], aliases: Mapping[str, str], spelled: str) -> str:
    """The existing entry a user name refers to (case-insensitive, aliases too), else the name itself."""
    folded = {k.lower(): k for k in existing}
    folded.update({a.lower(): k for a, k in aliases.items() if a.lower() not in folded})
    return folded.get(spelled.lower(), spelled)


def _error_text(err: ErrorDetails, section: str, rel: tuple[str | int, ...]) -> tuple[str, str | None]:
    """Message and ``expected`` for one pydantic error, in the catalog's terms."""
    kind = err["type"]
    if kind == "extra_forbidden":
        block = _BLOCKS.get(str(rel[0])) if len(rel) == 2 else None
        cls = block if block is not None else _RECORDS[section]
        return f"unknown key {rel[-1]!r}", "one of " + ", ".join(cls.model_fields)
    if kind == "missing":
        return "required key is missing", None
    msg = err["msg"].removeprefix("Value error, ")
    if rel and "input" in err and kind != "value_error":
        shown = repr(err["input"])
        msg += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
    return msg, None


def _validate(section: str, name: str, entry: Mapping[str, Any], origin: _Origin) -> _Strict:
    try:
        return _RECORDS[section].model_validate(entry)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        rel = tuple(err["loc"])
        message, expected = _error_text(err, section, rel)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in this entry)"
        keys = [section, origin.spelled, *(str(p) for p in rel)]
        raise InputError(message, path=origin.path, row=_locate(origin.text, keys),
                         field=".".join(keys), expected=expected) from None


def _source_keys(rec: _Strict) -> list[str]:
    """Fields written in the file that hold a number or shape fact and so need a source.

    Fields left at their schema default (``gpus_per_node: 8``, ``gated_mlp: true``) need none: the
    default is documented in the schema.
    """
    return [key for key in type(rec).model_fields
            if key not in _UNSOURCED and key in rec.model_fields_set and getattr(rec, key) is not None]


def _check_sources(section: str, rec: _Strict, origin: _Origin) -> None:
    sources: dict[str, str] = getattr(rec, "sources")  # noqa: B009 - both record types have it
    allowed = set(type(rec).model_fields) - _UNSOURCED
    if section == "models":
        allowed.add(ARCHITECTURE_SOURCE)
    base = [section, origin.spelled, "sources"]
    for key, text in sources.items():
        if key not in allowed:
            raise InputError(f"unknown source key {key!r}", path=origin.path,
                             row=_locate(origin.text, [*base, key]), field=".".join([*base, key]),
                             expected="a field name of this entry" +
                             (" or 'architecture'" if section == "models" else ""))
        if not text.strip():
            raise InputError("empty source", path=origin.path, row=_locate(origin.text, [*base, key]),
                             field=".".join([*base, key]), expected="where the number came from")
    for key in _source_keys(rec):
        covered = key in sources or (
            section == "models" and key not in _OWN_SOURCE and ARCHITECTURE_SOURCE in sources)
        if not covered:
            raise InputError(f"no source for {key!r}", path=origin.path,
                             row=_locate(origin.text, [section, origin.spelled]),
                             field=".".join([*base, key]),
                             expected="a datasheet, paper or config.json reference, or 'measured: ...'")


def _to_gpu(name: str, r: GPURecord) -> GPUSpec:
    d = r.model_dump(exclude={"aliases"})
    return GPUSpec(name=name, aliases=tuple(r.aliases), **d)


def _to_model(name: str, r: ModelRecord) -> ModelSpec:
    d = r.model_dump(exclude={"moe", "mla"})
    moe = MoESpec(**r.moe.model_dump()) if r.moe else None
    mla = MLASpec(**r.mla.model_dump()) if r.mla else None
    return ModelSpec(name=name, moe=moe, mla=mla, **d)


def _check_params(spec: ModelSpec, origin: _Origin) -> None:
    checks = [("params_b", spec.params_b, spec.computed_params())]
    if spec.active_params_b is not None:
        checks.append(("active_params_b", spec.active_params_b, spec.active_params()))
    for key, published, computed_n in checks:
        computed = computed_n / 1e9
        if not math.isclose(computed, published, rel_tol=PARAM_TOLERANCE):
            keys = ["models", origin.spelled, key]
            raise InputError(
                f"architecture gives {computed:.2f}B parameters but {key} says {published:g}B",
                path=origin.path, row=_locate(origin.text, keys), field=".".join(keys),
                expected=f"{key} within {PARAM_TOLERANCE:.0%} of the computed count, or fixed shape fields",
            )


def _check_aliases(gpus: Mapping[str, GPUSpec], origins: Mapping[str, _Origin]) -> None:
    owner: dict[str, str] = {name.lower(): name for name in gpus}
    for name, spec in gpus.items():
        for alias in spec.aliases:
            other = owner.setdefault(alias.lower(), name)
            if other != name:
                # Blame the entry from the later file: that is the one the user just wrote.
                culprit, kept = (name, other) if origins[name].rank >= origins[other].rank else (other, name)
                o = origins[culprit]
                keys = ["gpus", o.spelled, "aliases"]
                raise InputError(f"alias {alias!r} collides with GPU {kept!r}", path=o.path,
                                 row=_locate(o.text, keys), field=".".join(keys),
                                 expected="aliases unique across all GPUs")


def _merge_entry(section: str, spelled: object, entry: object, where: _Origin, *, user: bool,
                 merged: dict[str, dict[str, Any]], aliases: dict[str, str],
                 origin: dict[tuple[str, str], _Origin]) -> None:
    """Merge one file's entry over what earlier files said about the same name (mutates the maps)."""
    path, text = where.path, where.text
    if not isinstance(spelled, str) or not spelled.strip():
        raise InputError(f"entry name {spelled!r} is not a name", path=path, field=section,
                         expected="a non-empty text key such as 'H100-SXM'")
    fields: object = {} if entry is None else entry
    if not isinstance(fields, dict):
        raise InputError("entry must be a mapping of fields", path=path,
                         row=_locate(text, [section, spelled]), field=f"{section}.{spelled}",
                         expected="keys such as bf16_tflops: 989.4")
    name = _canonical(merged, aliases if section == "gpus" else {}, spelled)
    if user:
        fields = _with_user_sources(fields, path)
    merged[name] = _deep_merge(merged.get(name, {}), fields)
    origin[(section, name)] = where
    if section == "gpus" and isinstance(fields.get("aliases"), list):
        aliases.update({str(a): name for a in fields["aliases"]})


def _checked(section: str, merged: Mapping[str, Mapping[str, Any]],
             origin: Mapping[tuple[str, str], _Origin]) -> Iterator[tuple[str, _Strict, _Origin]]:
    """Each merged entry of ``section`` validated against its record type, its numbers' sources checked."""
    for name, raw_entry in merged[section].items():
        o = origin[(section, name)]
        rec = _validate(section, name, raw_entry, o)
        _check_sources(section, rec, o)
        yield name, rec, o


def bundled_paths() -> list[str]:
    """The catalog files shipped with fleetwise, in load order."""
    root = resources.files("planner.catalog") / "data"
    return [str(root / "gpus.yaml"), str(root / "models.yaml"), str(root / "kv_tiers.yaml")]


def load_catalog(extra: Iterable[str | Path] = ()) -> Catalog:
    """Load the bundled catalog, then apply user YAML files in order.

    Args:
        extra: user catalog files; entries with a known name (or GPU alias, any case) are merged
            field by field over the bundled entry, new names are added.

    Returns:
        The validated catalog.

    Raises:
        InputError: a file is missing, not UTF-8, not YAML, has duplicate or unknown keys, invalid
            values or numbers without a source (the message names the file, line and dotted key
            path), or a model's parameter count disagrees with its architecture by more than 3 %.

    >>> cat = load_catalog()
    >>> cat.gpu("H100-SXM").tdp_w, cat.model("DeepSeek-V3").moe.num_experts
    (700.0, 256)
    """
    merged: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in SECTIONS}
    aliases: dict[str, str] = {}
    origin: dict[tuple[str, str], _Origin] = {}
    bundled = bundled_paths()
    for rank, path in enumerate([*bundled, *(str(p) for p in extra)]):
        text = _read_text(path)
        raw = _parse_yaml(text, path)
        for key in raw:
            if key not in SECTIONS:
                raise InputError(f"unknown top-level key {key!r}", path=path, row=_locate(text, [str(key)]),
                                 field=str(key), expected="'gpus', 'models' and/or 'kv_tiers'")
        for section in SECTIONS:
            entries = raw.get(section)
            if entries is None:
                continue
            if not isinstance(entries, dict):
                raise InputError("must be a mapping of name -> entry", path=path,
                                 row=_locate(text, [section]), field=section)
            for spelled, entry in entries.items():
                _merge_entry(section, spelled, entry, _Origin(path, str(spelled), text, rank),
                             user=path not in bundled, merged=merged[section], aliases=aliases, origin=origin)

    gpus: dict[str, GPUSpec] = {}
    for name, rec, _ in _checked("gpus", merged, origin):
        assert isinstance(rec, GPURecord)
        gpus[name] = _to_gpu(name, rec)
    _check_aliases(gpus, {n: origin[("gpus", n)] for n in gpus})

    models: dict[str, ModelSpec] = {}
    for name, rec, o in _checked("models", merged, origin):
        assert isinstance(rec, ModelRecord)
        spec = _to_model(name, rec)
        _check_params(spec, o)
        models[name] = spec
    tiers: dict[str, KVTierSpec] = {}
    for name, rec, _ in _checked("kv_tiers", merged, origin):
        assert isinstance(rec, KVTierRecord)
        tiers[name] = KVTierSpec(name=name, **rec.model_dump())
    return Catalog(gpus=gpus, models=models, kv_tiers=tiers)


def source_of(spec: GPUSpec | ModelSpec, field: str) -> str | None:
    """Where ``field`` of a catalog entry came from (a model's shape fields fall back to ``architecture``).

    >>> source_of(load_catalog().model("Llama-3.1-8B"), "num_layers")[:30]
    'huggingface.co/meta-llama/Llam'
    """
    top = field.split(".", 1)[0]
    if top in _UNSOURCED:
        return None
    for key in (field, top):
        if key in spec.sources:
            return spec.sources[key]
    if isinstance(spec, ModelSpec) and top not in _OWN_SOURCE:
        return spec.sources.get(ARCHITECTURE_SOURCE)
    return None

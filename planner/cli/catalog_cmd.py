"""``fleetwise catalog``: list and show the GPUs and models the planner knows, with their sources.

The views read :func:`planner.catalog.load_catalog` and the spec methods; they compute nothing of
their own beyond formatting (the derived columns come from :class:`~planner.catalog.ModelSpec`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import GPUSpec, ModelSpec, load_catalog
from planner.catalog.load import ARCHITECTURE_SOURCE, source_of
from planner.catalog.schema import Catalog
from planner.cli.console import Col, fitted_table, table_console
from planner.cli.verbs import summary
from traces.errors import InputError

EXAMPLE = """
Examples:

  fleetwise catalog list
  fleetwise catalog list --json
  fleetwise catalog show H100-SXM
  fleetwise catalog show DeepSeek-V3 --json
  fleetwise catalog list --catalog my-prices.yaml   # gpus: {H100-SXM: {price_per_hour: 2.1}}
"""

CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="extra catalog YAML that adds or overrides entries (repeatable)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def gpu_record(spec: GPUSpec) -> dict[str, Any]:
    """A GPU as a JSON-ready mapping: every field, sources included."""
    out = asdict(spec)
    out["aliases"] = list(spec.aliases)
    return out


def model_record(spec: ModelSpec) -> dict[str, Any]:
    """A model as a JSON-ready mapping: every field plus the derived sizes the planner uses."""
    out = asdict(spec)
    out["derived"] = {
        "computed_params": spec.computed_params(),
        "active_params": spec.active_params(),
        "weight_gb_bf16": spec.weight_bytes(2.0) / 1e9,
        "kv_values_per_token_per_layer": spec.kv_values_per_token_per_layer(),
        "kv_bytes_per_token_bf16": spec.kv_bytes_per_token(2.0),
    }
    return out


def _console() -> Console:
    return table_console()


def _attention(spec: ModelSpec) -> str:
    if spec.mla is not None:
        return "MLA"
    return "MHA" if spec.num_kv_heads == spec.num_heads else f"GQA/{spec.num_heads // spec.num_kv_heads}"


def _gpu_table(cat: Catalog, console: Console) -> Table:
    cols = (Col("name", left=True, keep=9), Col("vendor", left=True), Col("BF16 TF", keep=6),
            Col("FP8 TF", keep=5), Col("mem GB", keep=8), Col("TB/s", keep=7), Col("TDP W", keep=4),
            Col("idle W", keep=1), Col("link GB/s", keep=3), Col("NIC Gb/s", keep=1),
            Col("clock MHz", keep=2), Col("$/GPU-h", keep=8))
    rows = [(g.name, g.vendor, f"{g.bf16_tflops:g}", f"{g.fp8_tflops:g}", f"{g.hbm_gb:g}", f"{g.hbm_tbps:g}",
             f"{g.tdp_w:g}", f"{g.idle_w:g}", f"{g.link_gbps:g}", f"{g.nic_gbit:g}",
             f"{g.min_sm_clock_mhz:g}-{g.max_sm_clock_mhz:g}", f"{g.price_per_hour:.2f}")
            for g in cat.gpus.values()]
    return fitted_table(console, "GPUs (dense peaks, per GPU)", cols, rows)


def _model_table(cat: Catalog, console: Console) -> Table:
    cols = (Col("name", left=True, keep=9), Col("params B", keep=8), Col("active B", keep=6),
            Col("layers", keep=2), Col("hidden", keep=1), Col("heads", keep=1),
            Col("attention", left=True, keep=4), Col("experts", left=True, keep=5, wrap=True),
            Col("weights GB", keep=7), Col("KV KiB/token", keep=6), Col("context", keep=3))
    rows = []
    for m in cat.models.values():
        experts = "-" if m.moe is None else f"{m.moe.num_experts} top-{m.moe.experts_per_token}" + (
            f" +{m.moe.num_shared_experts}" if m.moe.num_shared_experts else "")
        rows.append((m.name, f"{m.params_b:g}", f"{m.active_params() / 1e9:.1f}", str(m.num_layers),
                     str(m.hidden_size), str(m.num_heads), _attention(m), experts,
                     f"{m.weight_bytes(2.0) / 1e9:.1f}", f"{m.kv_bytes_per_token(2.0) / 1024:g}",
                     "-" if m.context_length is None else str(m.context_length)))
    return fitted_table(console, "Models (sizes at BF16)", cols, rows)


def _show_table(spec: GPUSpec | ModelSpec) -> Table:
    kind = "GPU" if isinstance(spec, GPUSpec) else "model"
    t = Table(title=f"{kind} {spec.name}")
    t.add_column("field", no_wrap=True)
    t.add_column("value", no_wrap=True, justify="right")
    t.add_column("source", overflow="fold")
    shared = spec.sources.get(ARCHITECTURE_SOURCE)

    def src(key: str) -> str:
        text = source_of(spec, key) or ""
        return f"{ARCHITECTURE_SOURCE} (below)" if shared is not None and text == shared else text

    for f in fields(spec):
        if f.name in ("name", "sources"):
            continue
        value = getattr(spec, f.name)
        if f.name in ("moe", "mla"):
            if value is None:
                continue
            for sub, v in asdict(value).items():
                key = f"{f.name}.{sub}"
                t.add_row(key, str(v), src(key))
            continue
        if value is None or value == ():
            continue
        shown = ", ".join(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(
            value, float) else str(value)
        t.add_row(f.name, shown, src(f.name))
    if isinstance(spec, ModelSpec):
        t.add_row("(computed params)", f"{spec.computed_params() / 1e9:.2f}B", "from the architecture")
        t.add_row("(active params)", f"{spec.active_params() / 1e9:.2f}B", "from the architecture")
        t.add_row("(weights, BF16)", f"{spec.weight_bytes(2.0) / 1e9:.2f} GB", "from the architecture")
        t.add_row("(KV cache, BF16)", f"{spec.kv_bytes_per_token(2.0):g} B/token", "from the architecture")
    if shared is not None:
        t.add_row(ARCHITECTURE_SOURCE, "", shared)
    return t


def find_entry(cat: Catalog, name: str) -> GPUSpec | ModelSpec:
    """The GPU or model called ``name`` (GPUs first; aliases and HF ids accepted).

    Raises:
        InputError: neither a GPU nor a model has that name; the message lists both.

    >>> find_entry(load_catalog(), "mixtral-8x7b").name
    'Mixtral-8x7B'
    """
    try:
        return cat.gpu(name)
    except InputError:
        pass
    try:
        return cat.model(name)
    except InputError:
        raise InputError(f"no GPU or model named {name!r}", field="name",
                         expected="one of " + ", ".join([*cat.gpus, *cat.models])) from None


def register(app: typer.Typer) -> None:
    """Add ``fleetwise catalog list|show``."""
    catalog_app = typer.Typer(help=summary("catalog") + EXAMPLE, no_args_is_help=True)

    @catalog_app.command("list", help="List every GPU and model (bundled plus --catalog files)." + EXAMPLE)
    def list_cmd(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
        cat = load_catalog(catalog or [])
        if as_json:
            doc = {"gpus": [gpu_record(g) for g in cat.gpus.values()],
                   "models": [model_record(m) for m in cat.models.values()]}
            typer.echo(json.dumps(doc, indent=2))
            return
        console = _console()
        console.print(_gpu_table(cat, console))
        console.print(_model_table(cat, console))

    @catalog_app.command("show", help="Show one GPU or model, field by field, with sources." + EXAMPLE)
    def show_cmd(
        name: Annotated[str, typer.Argument(help="GPU or model name (case-insensitive; aliases, HF ids)")],
        catalog: CatalogOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        cat = load_catalog(catalog or [])
        spec = find_entry(cat, name)
        if as_json:
            doc = {"kind": "gpu", **gpu_record(spec)} if isinstance(spec, GPUSpec) else {
                "kind": "model", **model_record(spec)}
            typer.echo(json.dumps(doc, indent=2))
            return
        _console().print(_show_table(spec))

    app.add_typer(catalog_app, name="catalog")

"""``fleetwise perf``: what one engine step of one replica costs (latency, memory, power).

Like the roofline calculators (LLM-Viewer, GenZ), but calibrated on measured profiles: the answer is
the same model the simulator and the solvers use (:func:`planner.perf.build_replica_perf`); this module
only parses flags and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.layout_option import DPAttentionOpt
from planner.cli.spec_option import SpecDecodeOpt
from planner.cli.verbs import summary
from traces.errors import InputError

EXAMPLE = (
    "Example:\n\n"
    "  fleetwise perf --model Llama-3.1-8B --gpu H100-SXM --tp 1 --decode-batch 64 --context 2048\n\n"
    "  fleetwise perf --model Llama-3.1-70B --gpu H100-SXM --tp 4 --prefill-tokens 4096 --context 0 "
    "--json\n\n"
    "  fleetwise perf --model Llama-3.1-8B --gpu H100-SXM --decode-batch 8 --context 2048 --spec-decode eagle"
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise perf``."""
    app.command("perf", help=summary("perf") + "\n\n" + EXAMPLE)(perf)


def perf(
    model: Annotated[str | None, typer.Option(help="catalog model key, e.g. Llama-3.1-8B")] = None,
    gpu: Annotated[str | None, typer.Option(help="catalog GPU key, e.g. H100-SXM")] = None,
    tp: Annotated[int, typer.Option(help="tensor-parallel degree")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree")] = 1,
    ep: Annotated[int, typer.Option(help="expert-parallel degree (MoE; divides tp)")] = 1,
    dp_attention: DPAttentionOpt = False,
    prefill_tokens: Annotated[int | None, typer.Option(help="new prompt tokens in one prefill chunk")] = None,
    decode_batch: Annotated[int | None, typer.Option(help="sequences decoding one token each")] = None,
    context: Annotated[int, typer.Option(help="tokens already in the KV cache per sequence")] = 0,
    clock_mhz: Annotated[float | None, typer.Option(help="locked SM clock in MHz (default: max)")] = None,
    weight_dtype: Annotated[str, typer.Option(help="bf16 or fp8 weights")] = "bf16",
    kv_dtype: Annotated[str, typer.Option(help="bf16 or fp8 KV cache")] = "bf16",
    expert_imbalance: Annotated[float, typer.Option(help="MoE busiest-GPU load over mean (>= 1)")] = 1.0,
    spec_decode: SpecDecodeOpt = None,
    catalog: Annotated[list[Path] | None, typer.Option(help="extra catalog YAML (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> int:
    """Print one step's latency breakdown, memory and power."""
    if model is None or gpu is None:
        raise InputError("--model and --gpu are required",
                         expected="e.g. --model Llama-3.1-8B --gpu H100-SXM")
    if (prefill_tokens is None) == (decode_batch is None):
        raise InputError("give exactly one of --prefill-tokens or --decode-batch", field="--prefill-tokens",
                         expected="--prefill-tokens N --context C, or --decode-batch B --context C")
    if context < 0 or (prefill_tokens is not None and prefill_tokens < 1) or (
            decode_batch is not None and decode_batch < 1):
        raise InputError("token counts must be positive (context >= 0)", field="--context")
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf
    from planner.perf.spec_decode import parse_spec_decode

    spec = parse_spec_decode(spec_decode) if spec_decode is not None else None
    cat = load_catalog(catalog or [])
    m, g = cat.model(model), cat.gpu(gpu)
    layout = Parallelism(tp=tp, pp=pp, ep=ep, dp_attention=dp_attention)
    rp = build_replica_perf(m, g, layout, weight_dtype=weight_dtype,
                            kv_dtype=kv_dtype, sm_clock_mhz=clock_mhz, expert_imbalance=expert_imbalance,
                            spec_decode=spec)
    if prefill_tokens is not None:
        n = float(prefill_tokens)
        comp = (n, n * (context + (n + 1) / 2), 0.0, 0.0)
        what = f"prefill {prefill_tokens} tokens after {context} cached"
    else:
        b = float(decode_batch or 0)
        comp = (0.0, 0.0, b, b * (context + 1))
        what = f"decode {decode_batch} sequences at context {context}"
        if spec is not None:
            what += f" (token-equivalent step, E = {spec.expected_tokens:.3f})"
    bd = rp.breakdown(*comp)
    tokens = comp[0] + comp[2]
    result = {
        "model": m.name, "gpu": g.name, "tp": tp, "pp": pp, "ep": ep, "gpus": rp.gpus,
        "weight_dtype": weight_dtype, "kv_dtype": kv_dtype, "sm_clock_mhz": rp.sm_clock_mhz,
        "step": what,
        "step_s": bd.total_s,
        "tokens_per_s": tokens / bd.total_s,
        "breakdown_s": bd.families_s,
        "memory": {
            "weights_gb_per_gpu": rp.memory.weights / 1e9,
            "activations_gb_per_gpu": rp.memory.activations / 1e9,
            "reserve_gb_per_gpu": rp.memory.reserve / 1e9,
            "kv_bytes_per_token_per_gpu": rp.memory.kv_bytes_per_token,
            "kv_capacity_tokens": rp.kv_capacity_tokens,
        },
        "power_w_per_gpu": bd.power_w,
        "power_w_replica": bd.power_w * rp.gpus,
        "flops_per_gpu": bd.flops_per_gpu,
        "bytes_per_gpu": bd.bytes_per_gpu,
        "calibration": rp.calibration.source,
        "spec_decode": spec.to_json() if spec is not None else None,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return 0
    con = Console()
    t = Table(title=f"{m.name} on {g.name} (tp={tp} pp={pp} ep={ep}, {weight_dtype}), {what}")
    t.add_column("operator")
    t.add_column("ms", justify="right")
    t.add_column("share", justify="right")
    for name, s in sorted(bd.families_s.items(), key=lambda kv: -kv[1]):
        t.add_row(name, f"{s * 1e3:.3f}", f"{s / bd.total_s:.1%}")
    t.add_row("[bold]step[/]", f"[bold]{bd.total_s * 1e3:.3f}[/]", f"{tokens / bd.total_s:,.0f} tok/s")
    con.print(t)
    mem = rp.memory
    con.print(f"memory per GPU: weights {mem.weights / 1e9:.2f} GB, "
              f"activations {mem.activations / 1e9:.2f} GB, "
              f"reserve {mem.reserve / 1e9:.2f} GB; KV {mem.kv_bytes_per_token / 1024:.1f} KiB/token, "
              f"capacity {mem.kv_capacity_tokens:,} tokens")
    con.print(f"power: {bd.power_w:.0f} W per GPU, {bd.power_w * rp.gpus:.0f} W per replica "
              f"(idle {rp.calibration.power.idle_w:.0f} W, TDP {g.tdp_w:.0f} W) at {rp.sm_clock_mhz:.0f} MHz")
    con.print(f"[dim]calibration: {rp.calibration.source}[/]")
    if spec is not None:
        con.print(spec.describe(), highlight=False)
    return 0

"""``fleetwise kv-tiers``: the KV-tier ablation (HBM only, +DRAM, +NVMe, +a shared pool), each case sized by
replay to the SLO; flags are validated here, the work is :func:`dashboards.scenario.run_kv_tier_study` (the
dashboard's and the report's path too) over :func:`planner.tier_study.run_tier_study`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.engine_option import EngineOpt
from planner.cli.kv_tier_option import KVLoad, KVLoadOpt, KVPolicy, KVPolicyOpt
from planner.cli.precision_option import PrecisionOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.perf.engine_profile import DEFAULT_ENGINE
from planner.sim.config import RouterName

EXAMPLE = (
    "Example:\n\n"
    "  fleetwise traces synth --out chat.parquet --rate 1 --duration 1200 --sessions --mean-turns 6 "
    "--think-s 90 --system-tokens 2000 --input-mean 1200 --input-median 600\n\n"
    "  fleetwise kv-tiers --trace chat.parquet --model Llama-3.1-70B --gpu H100-SXM --tp 4 "
    "--router precise-prefix --slo-ttft-ms 2000"
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise kv-tiers``."""
    app.command("kv-tiers", help=summary("kv-tiers") + "\n\n" + EXAMPLE)(kv_tiers_cmd)


def kv_tiers_cmd(
    trace: TraceOpt = "default",
    model: Annotated[str, typer.Option(help="catalog model key")] = "Llama-3.1-8B",
    gpu: Annotated[str, typer.Option(help="catalog GPU key")] = "H100-SXM",
    tp: Annotated[int, typer.Option(help="tensor-parallel degree per replica")] = 1,
    router: Annotated[RouterName, typer.Option(help="request router")] = RouterName.PRECISE_PREFIX,
    tiers: Annotated[str, typer.Option(help="tiers to add one after another, comma-separated (catalog "
                                              "kv_tiers)")] = "dram,ssd,remote",
    kv_load: KVLoadOpt = KVLoad.OVERLAP,
    kv_policy: KVPolicyOpt = KVPolicy.LRU,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms")] = 100.0,
    target: Annotated[float, typer.Option(help="share of requests within both targets")] = 0.99,
    max_replicas: Annotated[int, typer.Option(help="largest fleet searched")] = 256,
    precision: PrecisionOpt = "native",
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    engine: EngineOpt = DEFAULT_ENGINE,
    as_json: Annotated[bool, typer.Option("--json", help="print the study as JSON")] = False,
) -> int:
    """Size the fleet for each tier case and print the ablation table."""
    from dashboards import scenario as sc
    from dashboards.tables import kv_tier_table
    from traces.default import load_trace_arg
    from traces.errors import InputError

    if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
        raise InputError("SLO targets must be positive", field="--slo-ttft-ms/--slo-tpot-ms",
                         expected="milliseconds > 0")
    spec = sc.ReplaySpec(model=model, gpu=gpu, tp=tp, replicas=1, router=router.value,
                         ttft_s=slo_ttft_ms / 1000.0, tpot_s=slo_tpot_ms / 1000.0, engine=engine,
                         precision=precision, kv_overlap=kv_load is KVLoad.OVERLAP)
    tr = load_trace_arg(trace, start_s=start_s, duration_s=duration_s)
    err = Console(stderr=True)
    study = sc.run_kv_tier_study(
        tr, spec, tiers=[t.strip() for t in tiers.split(",") if t.strip()], target=target,
        cost_aware=kv_policy is KVPolicy.COST_AWARE, max_replicas=max_replicas,
        progress=None if as_json else lambda c, r, a: err.print(f"  {c}: {r} replicas -> {a:.2%}",
                                                                highlight=False))
    if as_json:
        typer.echo(json.dumps(study.as_dict(), indent=2, default=float))
        return 0
    df = kv_tier_table(study)
    table = Table(title=f"{model} on {gpu} TP{tp} ({router.value}): fewest replicas meeting {target:.0%} of "
                        f"TTFT <= {slo_ttft_ms:g} ms and TPOT <= {slo_tpot_ms:g} ms in replay")
    for col in df.columns:
        table.add_column(col)
    for row in df.iter_rows():
        table.add_row(*(str(v) for v in row))
    out = Console()
    out.print(table)
    out.print(study.verdict(), highlight=False)
    out.print(f"{study.replays} replays; tier capacities, bandwidths and prices from the catalog's kv_tiers "
              "(fleetwise catalog; estimates are marked there), GPU price from the catalog; "
              + sc.engine_line(engine, gpu), highlight=False)
    return 0

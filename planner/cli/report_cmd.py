"""``fleetwise report``: a self-contained HTML report of a plan or a replay (the dashboard's plots).

The verb gathers inputs, calls the same functions as the dashboard (:mod:`dashboards.scenario`) and writes
the file that :func:`dashboards.report.render_report` returns; nothing is computed here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from planner.catalog import load_catalog
from planner.cli.engine_option import EngineOpt
from planner.cli.fault_option import DetectMode, DetectOpt, FaultsOpt, SlowRateOpt
from planner.cli.kv_tier_option import KVTierOpt
from planner.cli.session_option import ClosedLoopOpt
from planner.cli.slo_option import E2EOpt, SLOClassOpt, StatisticOpt
from planner.cli.spec_option import SpecDecodeOpt
from planner.cli.switching_option import DwellOpt, ReplicaStartOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.perf.engine_profile import DEFAULT_ENGINE
from planner.sim import RouterName
from traces.atomic import write_text_atomic
from traces.errors import InputError

EXAMPLE = """
Example:

  fleetwise report --out plan.html                                   # plan for the bundled trace
  fleetwise report --out r.html --kind replay --trace conv.csv --gpu H200-SXM --replicas 2 --load-factor 2
"""


class ReportKind(StrEnum):
    """What the report shows."""

    PLAN = "plan"
    REPLAY = "replay"
    KV_TIERS = "kv-tiers"
    SPARES = "spares"


def register(app: typer.Typer) -> None:
    """Add ``fleetwise report``."""
    app.command("report", help=summary("report") + EXAMPLE)(report)


def report(
    out: Annotated[Path, typer.Option(help="HTML file to write")],
    kind: Annotated[
        ReportKind,
        typer.Option(help="plan: size the fleet and verify it by replay; replay: replay a given fleet; "
                          "kv-tiers: does a KV tier pay for itself on the --gpu/--tp layout; spares: how "
                          "many spare replicas the --replicas fleet needs under faults (--availability)"),
    ] = ReportKind.PLAN,
    trace: TraceOpt = "default",
    fmt: Annotated[str | None, typer.Option("--format", help="trace format (auto-detected)")] = None,
    load_factor: Annotated[float, typer.Option(help="request-rate multiplier")] = 1.0,
    model: Annotated[str, typer.Option(help="catalog model")] = "Llama-3.1-8B",
    gpus: Annotated[str, typer.Option(help="plan: comma-separated GPU types, or 'all'")] = "all",
    gpu: Annotated[str, typer.Option(help="replay: GPU type")] = "H100-SXM",
    tp: Annotated[int, typer.Option(help="replay: tensor-parallel degree")] = 1,
    replicas: Annotated[int, typer.Option(help="replay: replicas")] = 1,
    router: Annotated[RouterName, typer.Option(help="replay: request router")] = RouterName.LEAST_OUTSTANDING,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms (plan: at --slo-statistic)")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms (plan: at --slo-statistic)")] = 100.0,
    slo_statistic: StatisticOpt = "p99",
    slo_e2e_ms: E2EOpt = None,
    slo_class: SLOClassOpt = None,
    seed: Annotated[int, typer.Option(help="seed of load scaling and routing")] = 0,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
    engine: EngineOpt = DEFAULT_ENGINE,
    precision: Annotated[str, typer.Option(
        help="with a plan: native, all or labels (fleetwise plan --precision); with --gpu: native or one "
             "label such as fp8")] = "native",
    replica_start_s: ReplicaStartOpt = None,
    min_dwell_windows: DwellOpt = 1,
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    kv_tier: KVTierOpt = None,
    faults: FaultsOpt = None,
    slow_per_replica_hour: SlowRateOpt = 0.0,
    detect: DetectOpt = DetectMode.NONE,
    closed_loop: ClosedLoopOpt = False,
    spec_decode: SpecDecodeOpt = None,
    availability: Annotated[float, typer.Option(
        help="spares: share of 5-minute windows meeting the SLO")] = 0.999,
    fault_rate_scale: Annotated[float, typer.Option(
        help="spares: fail-stop rate as a multiple of Llama 3's published 2.0e-5 per GPU-hour")] = 1.0,
) -> int:
    """Build the report and write it to ``out``."""
    from dashboards import report as rp
    from dashboards import scenario as sc
    from traces.stats import describe

    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(
            "the report is HTML", path=str(out), field="--out", expected="a path ending in .html"
        )
    from traces.default import BUNDLED_NAMES

    src = sc.default_source(trace) if trace in BUNDLED_NAMES else sc.file_source(trace, format=fmt)
    if start_s is not None or duration_s is not None:
        span = (f", {start_s or 0:g} s + {duration_s:g} s" if duration_s is not None
                else f", from {start_s:g} s")
        src = replace(src, start_s=start_s, duration_s=duration_s, label=src.label + span)
    ttft_s, tpot_s = slo_ttft_ms / 1e3, slo_tpot_ms / 1e3
    console = Console(stderr=True)
    with console.status("loading the trace..."):
        tr = sc.with_load(sc.load_source(src), load_factor, seed=seed)
        stats = describe(tr)
    label = src.label + (f" at {load_factor:g}x rate" if load_factor != 1.0 else "")
    sections = [rp.trace_section(tr, stats, label=label)]
    if kind is ReportKind.PLAN:
        names = (
            tuple(load_catalog().gpus)
            if gpus == "all"
            else tuple(g.strip() for g in gpus.split(",") if g.strip())
        )
        with console.status("scoring candidates, solving, verifying by replay..."):
            plan = sc.run_plan(
                tr, sc.PlanSpec(model=model, gpus=names, ttft_p99_s=ttft_s, tpot_p99_s=tpot_s, seed=seed,
                                engine=engine, precision=precision, replica_start_s=replica_start_s,
                                min_dwell_windows=min_dwell_windows, slo_statistic=slo_statistic,
                                e2e_s=None if slo_e2e_ms is None else slo_e2e_ms / 1e3,
                                slo_classes=tuple(slo_class or ()))
            )
        sections.append(rp.plan_section(plan, model=model))
        if plan.plan.feasible and plan.verification:
            sections.append(rp.verified_plan_section(plan))
        spec: sc.ReplaySpec | None = None
        heading = f"{model} plan" if title is None else title
    else:
        spec = sc.ReplaySpec(
            model=model,
            gpu=gpu,
            tp=tp,
            replicas=replicas,
            router=router.value,
            ttft_s=ttft_s,
            tpot_s=tpot_s,
            seed=seed,
            engine=engine,
            precision=precision,
            kv_tiers=tuple(kv_tier or ()),
            faults=faults,
            slow_per_replica_hour=slow_per_replica_hour,
            detect=detect.value,
            closed_loop=closed_loop,
            spec_decode=spec_decode,
        )
        heading = f"{model} on {gpu} TP{tp} x{replicas}" if title is None else title
    if kind is ReportKind.SPARES:
        assert spec is not None
        with console.status("replaying each spare count under 3 fault histories..."):
            spares = sc.run_spares_study(tr, spec, availability=availability, rate_scale=fault_rate_scale,
                                         seeds=(seed, seed + 1, seed + 2))
        name = f"{spec.model} on {spec.gpu} TP{spec.tp} x{spec.replicas}"
        sections.append(rp.spares_section(spares, title=name, engine=sc.engine_line(spec.engine, spec.gpu)))
        spec = None
    if kind is ReportKind.KV_TIERS:
        assert spec is not None
        with console.status("sizing each set of KV tiers by replay..."):
            study = sc.run_kv_tier_study(tr, spec, tiers=tuple(kv_tier or ("dram", "ssd", "remote")))
        sections.append(rp.kv_tier_section(study, title=f"{spec.model} on {spec.gpu} TP{spec.tp}",
                                           engine=sc.engine_line(spec.engine, spec.gpu)))
        spec = None
    if spec is not None:
        with console.status(f"replaying {tr.num_requests:,} requests..."):
            result = sc.run_replay(tr, spec)
        name = f"{spec.gpu} TP{spec.tp} x{spec.replicas}"
        line = sc.engine_line(spec.engine, spec.gpu)
        spec_line = sc.spec_decode_line(spec)
        sections.append(rp.replay_section(result, title=name, ttft_s=ttft_s, tpot_s=tpot_s,
                                          engine=line if spec_line is None else f"{line} {spec_line}"))
    html = rp.render_report(f"fleetwise report: {heading}", sections, generated=datetime.now(UTC))
    write_text_atomic(out, html)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    for sec in sections:
        if sec.headline:
            console.print(sec.headline, highlight=False)
    return 0

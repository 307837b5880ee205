"""``fleetwise plan``: which GPU, which layout, how many replicas per window, at what cost, and why."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.console import Col, fitted_table, table_console
from planner.cli.engine_option import EngineOpt
from planner.cli.scenario_config import ConfigOpt
from planner.cli.slo_option import E2EOpt, SLOClassOpt, StatisticOpt
from planner.cli.switching_option import DwellOpt, ReplicaStartOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.perf.engine_profile import DEFAULT_ENGINE
from planner.ray_runtime import RayMode
from solvers.capacity.problem import Disaggregation, PowerBasis, SolveParams
from traces.errors import InputError
from traces.json_safe import json_safe

if TYPE_CHECKING:  # the planner is imported when a plan is asked for, not for --help
    from planner.plan import PlanReport

EXAMPLE = """
Example:

  fleetwise plan                                   # bundled default trace, Llama-3.1-8B, every GPU type
  fleetwise plan --trace conv.csv --model Llama-3.1-70B --gpus H100-SXM,H200-SXM --slo-tpot-ms 50 --json
  fleetwise plan --inventory H100-SXM=16 --power-budget-kw 12 --disaggregate on --window-s 900
"""


def report_json(report: PlanReport, model: str) -> dict[str, object]:
    """The report as plain data (what ``--json`` prints)."""
    plan = report.plan
    wins = report.problem.windows

    return {
        "model": model,
        "trace": report.trace_source,
        "requests": report.requests,
        "duration_s": report.duration_s,
        "window_s": report.window_s,
        "notes": list(report.notes),
        "status": plan.status.value,
        "solver": plan.solver,
        "objective_usd": plan.objective_usd,
        "bound_usd": plan.bound_usd,
        "gap": plan.gap,
        "greedy_usd": plan.greedy_usd,
        "solve_wall_s": plan.wall_s,
        "timing_s": {"score": report.score_s, "solve": report.solve_s, "verify": report.verify_s},
        "why": report.why,
        "disaggregated": plan.disaggregated,
        "configs": [{**asdict(c), "role": c.role.value} for c in plan.configs],
        "cost_breakdown": [asdict(c) for c in report.cost_breakdown()],
        "windows": [{"start_s": w.start_s, "duration_s": w.duration_s,
                     "demand_rps": report.demand_rps[i] if report.demand_rps else w.demand_rps,
                     "sized_for_rps": w.demand_rps, "replicas": plan.replicas(i)}
                    for i, w in enumerate(wins)],
        "bindings": [asdict(b) for b in plan.bindings],
        "verification": [json_safe({**asdict(v), "by_window": [{**asdict(c), "replicas": dict(c.replicas)}
                                                                for c in v.by_window]})
                         for v in report.verification],
        "candidates": {"total": report.scored.height,
                       "feasible": int(report.scored["feasible"].sum()) if report.scored.height else 0,
                       "to_solver": len(report.problem.configs)},
        "note": plan.note,
        "recommended": None if report.recommended is None else report.recommended.label,
        "slo": {"ttft_s": report.slo.ttft_s, "tpot_s": report.slo.tpot_s, "e2e_s": report.slo.e2e_s,
                "statistic": report.slo.statistic,
                "statistics": {k: report.slo.stat(k) for k in report.slo.kinds},
                "classes": _classes_json(report)},
        "layouts": None if report.classes is None else {
            "presented": report.classes.layout, "options": [asdict(o) for o in report.classes.options]},
        "verified": report.verified,
        "rounds": report.rounds,
        "corrections": list(report.corrections),
        "output_tokens_per_gpu_s": report.output_tokens_per_gpu_s,
        "gpu_numbers": {c.gpu: "measured" if c.gpu in report.measured_gpus else "derived"
                        for c in plan.configs},
    }


def _classes_json(report: PlanReport) -> list[dict[str, object]]:
    """Each SLO class's targets and requests (requests of no listed class: ``other``, at the plan's)."""
    from planner.plan.slo_classes import slo_of

    if report.classes is None:
        return []
    out: list[dict[str, object]] = []
    for name, n in report.classes.requests:
        slo = slo_of(name, report.slo, report.classes.classes)
        out.append({"name": name, "requests": n, "ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s,
                    "e2e_s": slo.e2e_s})
    return out


def _render(report: PlanReport, model: str, console: Console) -> None:
    plan = report.plan
    mix = report.mix
    wins = report.problem.windows
    console.print(
        f"[bold]trace[/]: {report.requests:,} requests over {report.duration_s / 60:.1f} min; "
        f"{len(wins)} windows of {report.window_s:.0f} s, demand {min(w.demand_rps for w in wins):.2f}-"
        f"{max(w.demand_rps for w in wins):.2f} req/s (peak minute); length mix {mix.weight.size} buckets, "
        f"mean input {mix.mean_input:.0f} / output {mix.mean_output:.0f} tokens")
    for n in report.notes:
        console.print(f"[yellow]note[/]: {n}")
    sc = report.scored
    n_ok = int(sc["feasible"].sum()) if sc.height else 0
    console.print(f"[bold]candidates[/]: {sc.height:,} scored, {n_ok:,} meet the SLO, "
                  f"{len(report.problem.configs)} to the solver (scored in {report.score_s:.1f} s)")
    if not plan.feasible:
        console.print(f"[bold red]no plan[/]: {plan.note} (status {plan.status.value})")
        return
    gap = plan.gap
    console.print(
        f"[bold]solver[/]: {plan.solver} {plan.status.value} in {plan.wall_s:.2f} s; "
        f"cost ${plan.objective_usd:,.2f}, bound ${plan.bound_usd or 0:,.2f} "
        f"(gap {0 if gap is None else gap * 100:.1f} %), greedy "
        + (f"${plan.greedy_usd:,.2f}" if plan.greedy_usd is not None else "found nothing"))
    cols = (Col("configuration", left=True, keep=9, wrap=True), Col("role", left=True, keep=5),
            Col("GPUs/replica", keep=3), Col("peak replicas", keep=7), Col("mean replicas", keep=4),
            Col("GPU-hours", keep=6), Col("starts", keep=3), Col("$/GPU-hour", keep=2), Col("cost $", keep=8))
    rows = [(line.config, line.role, str(line.gpus_per_replica), str(line.peak_replicas),
             f"{line.mean_replicas:.2f}", f"{line.gpu_hours:.2f}", str(line.starts),
             f"{line.price_per_gpu_hour:.2f}", f"{line.cost_usd:.2f}") for line in report.cost_breakdown()]
    kind = "disaggregated" if plan.disaggregated else "aggregated"
    unverified = bool(report.verification) and not report.verified
    title = (f"NOT A PLAN: the best candidate for {model} ({kind}), which missed its replay" if unverified
             else f"plan for {model} ({kind})")
    table = fitted_table(console, title, cols, rows)
    console.print(table)
    per_window = ", ".join(
        "+".join(str(n) for n in plan.replicas(i).values()) or "0" for i in range(len(wins)))
    console.print(f"[bold]replicas per window[/]: {per_window}")
    tok = report.output_tokens_per_gpu_s
    if tok is not None:
        console.print(f"[bold]output tokens/s per GPU[/]: {tok:,.0f} "
                      "(the trace's output over the plan's mean GPUs)")
    console.print(f"[bold]why[/]: {report.why}")
    for b in plan.bindings[:4]:
        console.print(f"  {b.name}: {b.used:,.0f} / {b.limit:,.0f}{' (tight)' if b.tight else ''}")
    if report.verification:
        slo = report.slo
        e2e = slo.e2e_s is not None
        vcols = (Col("variant", left=True, keep=9), Col("configurations", left=True, keep=8, wrap=True),
                 Col("cost $", keep=7), Col("windows", keep=1), Col("requests", keep=2),
                 Col("predicted", keep=4), Col("replayed", keep=6), Col("goodput req/s", keep=3),
                 Col(f"TTFT {slo.stat('ttft')} s", keep=5), Col(f"TPOT {slo.stat('tpot')} s", keep=5),
                 *((Col(f"E2E {slo.stat('e2e')} s", keep=5),) if e2e else ()), Col("SLO met", keep=9))
        vrows = [(v.label + (" ~" if v.approximate else ""), "\n".join(v.configs), f"{v.cost_usd:.2f}",
                  str(v.windows), f"{v.requests:,}", f"{v.predicted_attainment:.4f}",
                  f"{v.replayed_attainment:.4f}", f"{v.goodput_rps:,.2f}", f"{v.replayed_ttft_at_slo_s:.3f}",
                  f"{v.replayed_tpot_at_slo_s:.4f}",
                  *((f"{v.replayed_e2e_at_slo_s:.2f}" if v.replayed_e2e_at_slo_s is not None else "",)
                    if e2e else ()),
                  "yes" if v.meets_slo else "[red]no[/]")
                 for v in report.verification]
        rounds = "" if report.rounds <= 1 else f", {report.rounds} rounds"
        vt = fitted_table(console, f"verification by replay ({report.verify_s:.1f} s{rounds})", vcols, vrows)
        console.print(vt)
        for line in report.corrections:
            console.print(f"[yellow]corrected[/]: {line}")
        if report.classes is not None:
            from dashboards.tables import class_layouts_table, layouts_table

            for title, df in (("SLO classes in the presented plan's replay", class_layouts_table(report)),
                              ("fleet layouts weighed", layouts_table(report))):
                ccols = tuple(Col(str(c), left=i == 0, keep=5) for i, c in enumerate(df.columns))
                crows = [tuple("" if v is None else str(v) for v in r) for r in df.iter_rows()]
                console.print(fitted_table(console, title, ccols, crows))
        rec = report.recommended
        if not report.verified:
            console.print("[bold red]no verified plan[/]: neither the solver's plan nor an alternative met "
                          "the SLO in replay, so none is presented (exit code 1); loosen the SLO, allow more "
                          "GPU types or rounds, or plan a shorter span")
        elif rec is not None:
            swapped = f" ({rec.label}, presented instead of the solver's)" if rec.label != "plan" else ""
            console.print("[bold green]the plan meets the SLO in replay[/]" + swapped)


def main_aggregated_config(report: PlanReport) -> tuple[str, int, str]:
    """``(gpu, tp, precision label)`` of the aggregated configuration carrying most of the plan's GPU-hours.

    Raises:
        InputError: the plan has no aggregated configuration (a pure P/D plan).
    """
    lines = [line for line in report.cost_breakdown() if line.role == "aggregated"]
    if not lines:
        raise InputError("--autoscale and --kv-tiers run on an aggregated configuration, and this plan has "
                         "none", field="--autoscale/--kv-tiers", expected="--disaggregate off")
    key = max(lines, key=lambda line: line.gpu_hours).config
    cfg = next(c for c in report.plan.configs if c.key == key)
    from planner.perf.precision import Precision

    return cfg.gpu, cfg.tp, Precision(cfg.weight_dtype, cfg.kv_dtype).label


def _compare_autoscalers(report: PlanReport, trace: str, model: str, slo_ttft_ms: float, slo_tpot_ms: float,
                         seed: int, as_json: bool, span: tuple[float | None, float | None]) -> None:
    """The issue's ``fleetwise plan --autoscale``: the autoscaler comparison on the planned configuration."""
    from planner.cli.autoscale_cmd import autoscale_compare_cmd

    gpu, tp, precision = main_aggregated_config(report)
    autoscale_compare_cmd(trace=trace, model=model, gpu=gpu, tp=tp, precision=precision,
                          slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, seed=seed, as_json=as_json,
                          start_s=span[0], duration_s=span[1])


def _compare_kv_tiers(report: PlanReport, trace: str, model: str, slo_ttft_ms: float, slo_tpot_ms: float,
                      engine: str, as_json: bool, span: tuple[float | None, float | None]) -> None:
    """``fleetwise plan --kv-tiers``: does a KV tier pay for itself on the planned configuration?"""
    from planner.cli.kv_tiers_cmd import kv_tiers_cmd

    gpu, tp, precision = main_aggregated_config(report)
    kv_tiers_cmd(trace=trace, model=model, gpu=gpu, tp=tp, precision=precision, slo_ttft_ms=slo_ttft_ms,
                 slo_tpot_ms=slo_tpot_ms, engine=engine, as_json=as_json, start_s=span[0], duration_s=span[1])


def _spares(report: PlanReport, trace: str, model: str, slo_ttft_ms: float, slo_tpot_ms: float, engine: str,
            as_json: bool, span: tuple[float | None, float | None], availability: float, rate_scale: float,
            seed: int) -> None:
    """``fleetwise plan --availability``: the spare replicas the plan's main aggregated configuration needs
    under faults at the published rate (times ``rate_scale``), verified by replay under three fault seeds."""
    from dashboards import scenario as sc
    from dashboards.tables import spares_table
    from traces.default import load_trace_arg

    gpu, tp, precision = main_aggregated_config(report)
    lines = [line for line in report.cost_breakdown() if line.role == "aggregated"]
    peak = max(lines, key=lambda line: line.gpu_hours).peak_replicas
    spec = sc.ReplaySpec(model=model, gpu=gpu, tp=tp, replicas=peak, ttft_s=slo_ttft_ms / 1e3,
                         tpot_s=slo_tpot_ms / 1e3, seed=seed, engine=engine, precision=precision)
    tr = load_trace_arg(trace, start_s=span[0], duration_s=span[1])
    study = sc.run_spares_study(tr, spec, availability=availability, rate_scale=rate_scale,
                                seeds=(seed, seed + 1, seed + 2))
    if as_json:
        typer.echo(json.dumps(study.as_dict(), indent=2, default=float))
        return
    console = table_console()
    df = spares_table(study)
    table = Table(title=f"Spare replicas for {model} on {gpu} TP{tp} x{peak} under faults at {rate_scale:g}x "
                        f"Llama 3's rate ({study.rates.fail_per_gpu_hour:.2e} per GPU-hour), "
                        f"{len(study.seeds)} fault seeds")
    for col in df.columns:
        table.add_column(col)
    for row in df.iter_rows():
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(study.verdict() + f" (availability: share of {study.window_s:g} s windows in which "
                  f"{study.window_target:.0%} of requests met the SLO)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise plan``."""

    @app.command("plan", help=summary("plan") + EXAMPLE)
    def plan(
        scenario: ConfigOpt = None,
        trace: TraceOpt = "default",
        fmt: Annotated[str | None, typer.Option("--format", help="trace format (auto-detected)")] = None,
        model: Annotated[str, typer.Option(help="catalog model name")] = "Llama-3.1-8B",
        gpus: Annotated[str, typer.Option(help="comma-separated catalog GPU names, or 'all'")] = "all",
        slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms (at --slo-statistic)")] = 2000.0,
        slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms (at --slo-statistic)")] = 100.0,
        slo_statistic: StatisticOpt = "p99",
        slo_e2e_ms: E2EOpt = None,
        slo_class: SLOClassOpt = None,
        inventory: Annotated[list[str] | None, typer.Option(
            help="GPUs available, GPU=COUNT (repeatable), e.g. H100-SXM=16; unlisted: unlimited")] = None,
        power_budget_kw: Annotated[float | None, typer.Option(help="fleet power cap, kW")] = None,
        power_basis: Annotated[PowerBasis, typer.Option(
            help="replica power: perf-model power at the operating point, or TDP")] = PowerBasis.PERF,
        disaggregate: Annotated[Disaggregation, typer.Option(
            help="prefill/decode disaggregation: auto (solver decides), on, off")] = Disaggregation.AUTO,
        window_s: Annotated[float, typer.Option(
            help="planning window, s (replicas may change per window)")] = 300.0,
        max_configs: Annotated[int, typer.Option(help="distinct configurations per role")] = 2,
        replica_start_s: ReplicaStartOpt = None,
        min_dwell_windows: DwellOpt = 1,
        time_limit_s: Annotated[float, typer.Option(
            help="CP-SAT time limit, s")] = SolveParams.max_time_in_seconds,
        seed: Annotated[int, typer.Option(help="CP-SAT and replay seed")] = 0,
        verify: Annotated[bool, typer.Option(
            "--verify/--no-verify", help="replay the plan and alternatives")] = True,
        catalog: Annotated[list[Path] | None, typer.Option(help="extra catalog YAML (repeatable)")] = None,
        ray_address: Annotated[
            str | None, typer.Option(help="Ray cluster: host:port (GCS), ray://host:10001 (Ray Client), auto "
                                     "(RAY_ADDRESS or the cluster started on this machine), local; default: "
                                     "RAY_ADDRESS if set, else a local Ray")
        ] = None,
        ray: Annotated[RayMode, typer.Option(
            help="run the scoring and replay sweeps on Ray: auto (when a cluster is named, or when the "
                 "plan's estimated work saves more than a local Ray's start of about 8 s; small plans run "
                 "in-process), on, off")] = RayMode.AUTO,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
        out: Annotated[Path | None, typer.Option(
            help="also write the result as JSON to this new file (written even when no plan is feasible)")]
        = None,
        expert_imbalance: Annotated[float, typer.Option(
            help="MoE busiest-GPU expert load over the mean (>= 1): a plan's step imbalance from "
                 "'fleetwise experts --json'; dense models ignore it")] = 1.0,
        autoscale: Annotated[bool, typer.Option(
            "--autoscale", help="then replay the trace with HPA, KEDA, Ray Serve, Dynamo, WVA and our MPC "
            "scaling the plan's main aggregated configuration, side by side")] = False,
        kv_tiers: Annotated[bool, typer.Option(
            "--kv-tiers", help="then size the plan's main aggregated configuration by replay with HBM only, "
            "+DRAM, +NVMe and +a shared pool of KV tiers (precise-prefix routing) and price each: does a "
            "tier pay for itself?")] = False,
        availability: Annotated[float | None, typer.Option(
            "--availability", help="then choose the spare replicas the plan's main configuration needs so "
            "that this share of 5-minute windows meets the SLO under fail-stop faults (replayed under 3 "
            "fault seeds), e.g. 0.999")] = None,
        fault_rate_scale: Annotated[float, typer.Option(
            help="with --availability: fail-stop rate as a multiple of Llama 3's published 2.0e-5 per "
                 "GPU-hour")] = 1.0,
        start_s: StartOpt = None,
        duration_s: DurationOpt = None,
        engine: EngineOpt = DEFAULT_ENGINE,
        measured_only: Annotated[bool, typer.Option(
            "--measured-only", help="plan only on GPUs with a measured profile (others' numbers are "
            "derived from the H100's by datasheet ratios)")] = False,
        precision: Annotated[str, typer.Option(
            help="weight and KV dtypes to consider: native (the model's published weights, bf16 KV), all "
                 "(native and each narrower choice), or labels such as bf16,fp8,fp8+kv8; quantized "
                 "choices are flagged in the plan's notes")] = "native",
    ) -> None:
        if autoscale and as_json:
            raise InputError("--autoscale prints tables; for JSON run the plan and then "
                             "'fleetwise autoscale-compare --json'", field="--autoscale/--json")
        from planner.catalog import load_catalog
        from planner.perf.precision import parse_precisions
        from planner.plan import PlanRequest
        from planner.plan.inventory import parse_inventory
        from planner.plan.slo_classes import classes_of, slo_at
        from planner.sim.writer import refuse_existing_file
        from traces.atomic import write_text_atomic

        refuse_existing_file(out)
        cat = load_catalog(catalog or [])
        spec = cat.model(model)
        names = list(cat.gpus) if gpus == "all" else [g.strip() for g in gpus.split(",") if g.strip()]
        if not names:
            raise InputError("no GPU names given", field="--gpus", expected="'all' or a comma-separated list")
        gpu_specs = tuple(cat.gpu(n) for n in names)
        if measured_only:
            from planner.perf.calibration import is_measured

            gpu_specs = tuple(g for g in gpu_specs if is_measured(g))
            if not gpu_specs:
                raise InputError(f"none of {', '.join(names)} has a measured profile",
                                 field="--measured-only",
                                 expected="a GPU measured with fleetwise profile (H100-SXM, H200-SXM ship)")
        if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
            raise InputError("SLO targets must be positive", field="--slo-ttft-ms/--slo-tpot-ms")
        if power_budget_kw is not None and not power_budget_kw > 0:
            raise InputError("power budget must be positive", field="--power-budget-kw", expected="kW > 0")
        if not time_limit_s > 0:
            raise InputError("time limit must be positive", field="--time-limit-s", expected="seconds > 0")
        slo = slo_at(slo_ttft_ms, slo_tpot_ms, slo_statistic, slo_e2e_ms)
        request = PlanRequest(
            model=spec, gpus=gpu_specs, slo=slo, classes=classes_of(slo_class, slo),
            window_s=window_s, inventory=parse_inventory(inventory or [], {g.name for g in gpu_specs}),
            power_budget_w=None if power_budget_kw is None else power_budget_kw * 1000.0,
            disaggregation=disaggregate, max_configs_per_role=max_configs, power_basis=power_basis,
            params=SolveParams(max_time_in_seconds=time_limit_s, random_seed=seed), verify=verify, seed=seed,
            expert_imbalance=expert_imbalance, engine=engine, precisions=parse_precisions(precision, spec),
            start_s=replica_start_s, min_dwell_windows=min_dwell_windows)
        from traces.default import load_trace_arg

        tr = load_trace_arg(trace, format=fmt, start_s=start_s, duration_s=duration_s)
        from planner.plan.run import plan_work, run_plan, use_ray

        console = table_console(stderr=as_json)
        where = "on Ray" if use_ray(plan_work(tr, request), mode=ray, address=ray_address) else "in-process"
        with console.status(f"scoring candidates, solving, replaying {where}..."):
            report = run_plan(tr, request, mode=ray, address=ray_address)
        if out is not None:
            write_text_atomic(out, json.dumps(report_json(report, spec.name), indent=2) + "\n")
        if as_json:
            typer.echo(json.dumps(report_json(report, spec.name), indent=2))
        else:
            _render(report, spec.name, console)
        if not report.plan.feasible or (report.verification and not report.verified):
            raise typer.Exit(1)  # no plan, or none that passed its own replay: nothing to act on
        if autoscale:
            _compare_autoscalers(report, trace, spec.name, slo_ttft_ms, slo_tpot_ms, seed, as_json,
                                 (start_s, duration_s))
        if kv_tiers:
            _compare_kv_tiers(report, trace, spec.name, slo_ttft_ms, slo_tpot_ms, engine, as_json,
                              (start_s, duration_s))
        if availability is not None:
            _spares(report, trace, spec.name, slo_ttft_ms, slo_tpot_ms, engine, as_json,
                    (start_s, duration_s), availability, fault_rate_scale, seed)

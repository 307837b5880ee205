"""``fleetwise autoscale-compare``: every autoscaler on the same trace, cluster and cold starts.

Flags are validated here (the edge); the work is :func:`planner.autoscale.compare.compare_autoscalers`.
Results: a printed table, and with ``--out`` ``summary.parquet`` (one row per policy) and
``timelines.parquet`` (replicas per tick per policy).

The benchmark's commands and its measured results: ``docs/results/autoscale-benchmark.md`` in the
repository.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.autoscale.names import DEFAULT_POLICIES, LEGACY, PolicyName, Workload
from planner.cli.engine_option import EngineOpt
from planner.cli.precision_option import PrecisionOpt
from planner.cli.scenario_config import ConfigOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.perf.engine_profile import DEFAULT_ENGINE
from planner.sim.coldstart import ColdStartShape
from solvers.scaling.risk import Risk
from traces.errors import InputError

if TYPE_CHECKING:  # the comparison (simulator, policies, OR-Tools) is imported when one runs, not for --help
    from planner.autoscale.closed_loop import LoopResult
    from traces.schema import RequestTrace

EXAMPLE = (
    "Examples:\n\n"
    "  fleetwise autoscale-compare --workload azure-code --out runs/code\n\n"
    "  fleetwise autoscale-compare --trace AzureLLMInferenceTrace_conv.csv "
    "--rate-factor 8 --model Llama-3.1-70B --tp 4 --cold-start-median-s 360 --out runs/autoscale"
)


DEFAULT_POLICY_LIST = ",".join(p.value for p in DEFAULT_POLICIES)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise autoscale-compare``."""
    app.command("autoscale-compare",
                help=summary("autoscale-compare") + "\n\n" + EXAMPLE)(autoscale_compare_cmd)


def _load(trace: str, rate_factor: float, seed: int, start_s: float | None,
          duration_s: float | None) -> RequestTrace:
    from traces.default import load_trace_arg

    t = load_trace_arg(trace, start_s=start_s, duration_s=duration_s)
    if rate_factor != 1.0:
        from traces.transforms import scale_rate

        t = scale_rate(t, rate_factor, seed=seed)
    return t


def _policies(names: str) -> tuple[PolicyName, ...]:
    out = []
    for raw in names.split(","):
        key = raw.strip()
        try:
            out.append(PolicyName(key))
        except ValueError:
            raise InputError(f"unknown policy {key!r}", field="--policies",
                             expected="a comma-separated list of "
                             + ", ".join(p.value for p in DEFAULT_POLICIES)
                             ) from None
    return tuple(out)


def _factors(text: str) -> tuple[float, ...]:
    """``--bounds``: positive headroom factors."""
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            f = float(part)
        except ValueError:
            f = math.nan
        if not (f > 0 and math.isfinite(f)):
            raise InputError(f"bad factor {part!r}", field="--bounds", expected="comma-separated numbers > 0")
        out.append(f)
    return tuple(out)


def autoscale_compare_cmd(
    scenario: ConfigOpt = None,
    trace: TraceOpt = "default",
    rate_factor: Annotated[float, typer.Option(help="scale the request rate by this factor")] = 1.0,
    model: Annotated[str, typer.Option(help="catalog model key")] = "Llama-3.1-8B",
    gpu: Annotated[str, typer.Option(help="catalog GPU key")] = "H100-SXM",
    tp: Annotated[int, typer.Option(help="tensor-parallel degree per replica")] = 1,
    policies: Annotated[str, typer.Option(help="comma-separated policies")] = DEFAULT_POLICY_LIST,
    policy_from: Annotated[list[Path] | None, typer.Option(
        "--policy-from", help="also replay your own controller: a KEDA ScaledObject (vLLM or llm-d EPP "
        "queries) or autoscaling/v2 HPA manifest (its thresholds, windows and rate limits exactly), or a "
        "Dynamo planner config (PlannerConfig YAML/JSON: interval, TTFT/ITL, predictor, GPU budget); "
        "repeatable; rows keda:NAME / hpa:NAME / dynamo:NAME")] = None,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms")] = 100.0,
    cold_start: Annotated[ColdStartShape, typer.Option(
        help="cold-start distribution: the simulator's fitted Alibaba GenAI mixture (median 22.8 s) or "
             "the older single lognormal")] = ColdStartShape.MIXTURE,
    cold_start_median_s: Annotated[float | None, typer.Option(
        help="move the cold start's median here, s, keeping its shape (default: the workload's, else the "
             "fitted 22.8 s)")] = None,
    cold_start_sigma: Annotated[float | None, typer.Option(
        help="--cold-start lognormal only: its log-spread (default: the fitted 1.17)")] = None,
    min_replicas: Annotated[int, typer.Option(help="lower bound for every policy")] = 1,
    max_replicas: Annotated[int, typer.Option(help="upper bound for every policy")] = 64,
    tick_s: Annotated[float, typer.Option(help="control tick, s")] = 5.0,
    seed: Annotated[int, typer.Option(help="seed of cold-start draws and rate scaling")] = 0,
    workload: Annotated[Workload | None, typer.Option(
        help="a benchmark workload (sets trace, rate scale, model, GPU, TP, tick and bounds)")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="folder of the shared traces, for --workload (default: $FLEETWISE_SHARED_TRACES, else "
             "shared/data/traces beside the repository)")] = None,
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    mpc_step_s: Annotated[float | None, typer.Option(
        help="MPC step, s (default: the workload's, else 30)")] = None,
    mpc_hold_s: Annotated[float | None, typer.Option(
        help="MPC: each step's peak is forecast over at least this long, s (default: the workload's, "
             "else 120)")] = None,
    mpc_interval_s: Annotated[float | None, typer.Option(
        help="MPC re-plans this often, s (default: the workload's, else 15)")] = None,
    mpc_season_s: Annotated[float | None, typer.Option(
        help="MPC seasonal period, s (86400: same time yesterday; 0: none; default: the workload's, "
             "else 0)")] = None,
    mpc_risk: Annotated[Risk, typer.Option(
        help="MPC risk setting: load-following (buys for the bursts its history has shown, and in the "
             "steps busier than the typical level also for larger ones: a 0.999 level with an "
             "exponential tail), plain (never past what the history has shown) or burst-averse (that "
             "0.999 level all day)")] = Risk.LOAD_FOLLOWING,
    keep_gaps: Annotated[bool, typer.Option(
        "--keep-gaps", help="ServeGen workload: replay the published statistics' collection gaps "
                            "(windows where every client reports nothing) as no traffic instead of "
                            "filling them")] = False,
    match: Annotated[bool, typer.Option(
        "--match-attainment", help="also re-run HPA, KEDA, llm-d's KEDA and Ray Serve (those in "
        "--policies) with more generous targets until they reach the MPC's attainment (rows named "
        "policy@scale)")] = False,
    match_refine: Annotated[int, typer.Option(
        "--match-refine", min=0, max=8, help="bisection steps between the last target that fell short of the "
        "MPC's attainment and the first that reached it (the cheapest matching target; 0: the grid's)")] = 2,
    bounds: Annotated[str, typer.Option(
        help="also replay the clairvoyant reference (knows the trace's future need) at these headroom "
             "factors, comma-separated, as rows hindsight@factor; '' for none")] = "",
    out: Annotated[Path | None, typer.Option(
        help="folder for summary.parquet, timelines.parquet and verdict.json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the per-policy summary as JSON")] = False,
    precision: PrecisionOpt = "native",
    engine: EngineOpt = DEFAULT_ENGINE,
) -> int:
    """Run the comparison and print the table."""
    import polars as pl

    from planner.autoscale.checkpoint import PolicyCheckpoint, comparison_key
    from planner.autoscale.compare import (
        CompareConfig,
        compare_autoscalers,
        dynamo_profile,
        match_attainment,
        verdict,
    )
    from planner.autoscale.dynamo import DynamoParams
    from planner.autoscale.workloads import WORKLOADS, load_workload
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf
    from planner.perf.engine_profile import engine_perf_inputs
    from planner.perf.precision import resolve_precision
    from planner.sim.coldstart import cold_start_for
    from planner.sim.config import EngineConfig, SLOTarget
    from solvers.scaling.policy import MPCParams, with_risk
    from traces.atomic import write_folder_atomic

    if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
        raise InputError("SLO targets must be positive", field="--slo-ttft-ms/--slo-tpot-ms",
                         expected="milliseconds > 0")
    if rate_factor <= 0 or not math.isfinite(rate_factor):
        raise InputError(f"bad rate factor {rate_factor}", field="--rate-factor", expected="a number > 0")
    if not 1 <= min_replicas <= max_replicas:
        raise InputError(f"bounds {min_replicas}..{max_replicas}", field="--min-replicas/--max-replicas",
                         expected="1 <= min <= max")
    if cold_start_median_s is not None and not cold_start_median_s > 0:
        raise InputError("cold start must be positive", field="--cold-start-median-s", expected="seconds > 0")
    for flag, v in (("--mpc-step-s", mpc_step_s), ("--mpc-hold-s", mpc_hold_s),
                    ("--mpc-interval-s", mpc_interval_s)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise InputError(f"bad value {v}", field=flag, expected="seconds > 0")
    if mpc_season_s is not None and not (mpc_season_s >= 0 and math.isfinite(mpc_season_s)):
        raise InputError(f"bad value {mpc_season_s}", field="--mpc-season-s", expected="seconds >= 0")
    names = _policies(policies)
    factors = _factors(bounds)
    from planner.autoscale.manifests import load_policy

    own = [load_policy(p) for p in policy_from or []]
    mpc_params = MPCParams()
    if workload is not None:
        spec = WORKLOADS[workload]
        model, gpu, tp, tick_s, max_replicas = spec.model, spec.gpu, spec.tp, spec.tick_s, spec.max_replicas
        if cold_start_median_s is None:
            cold_start_median_s = spec.cold_start_median_s
        mpc_params = spec.mpc
        if keep_gaps:
            spec = dataclasses.replace(spec, fill_gaps=False)
        tr = load_workload(spec, data_root=data_root, seed=seed)
    else:
        tr = _load(trace, rate_factor, seed, start_s, duration_s)
    mpc_params = dataclasses.replace(
        mpc_params,
        step_s=mpc_step_s if mpc_step_s is not None else mpc_params.step_s,
        hold_s=mpc_hold_s if mpc_hold_s is not None else mpc_params.hold_s,
        interval_s=mpc_interval_s if mpc_interval_s is not None else mpc_params.interval_s,
        season_s=mpc_season_s if mpc_season_s is not None else mpc_params.season_s)
    mpc_params = with_risk(mpc_params, mpc_risk)
    if workload is not None and (start_s is not None or duration_s is not None):
        from traces.transforms import slice_time

        start = start_s or 0.0
        tr = slice_time(tr, start, None if duration_s is None else start + duration_s)
    cat = load_catalog()
    prof, cal, gpu_spec = engine_perf_inputs(engine, cat.gpu(gpu))
    prec = resolve_precision(precision, cat.model(model))
    perf = build_replica_perf(cat.model(model), gpu_spec, Parallelism(tp=tp), calibration=cal,
                              weight_dtype=prec.weights, kv_dtype=prec.kv)
    price = float(cat.gpu(gpu).price_per_hour)
    cold = cold_start_for(cold_start, median_s=cold_start_median_s, sigma=cold_start_sigma)
    cfg = CompareConfig(slo=SLOTarget(ttft_s=slo_ttft_ms / 1000.0, tpot_s=slo_tpot_ms / 1000.0),
                        engine=EngineConfig().with_profile(prof), cold_start=cold, min_replicas=min_replicas,
                        max_replicas=max_replicas, tick_s=tick_s, seed=seed,
                        mpc=mpc_params, keep_requests=False, hindsight_factors=factors)
    console = Console(stderr=True)
    ckpt = None
    done: dict[str, LoopResult] = {}
    if out is not None:  # an interrupted run resumes from the policies it finished
        key = comparison_key(cfg, names, [(m.name, m.params) for m in own], model, gpu, tp, engine,
                             tr.num_requests,
                             float(tr.df["arrival_s"].sum()), int(tr.df["input_tokens"].sum()),
                             int(tr.df["output_tokens"].sum()))
        ckpt = PolicyCheckpoint.beside(out, key)
        done = ckpt.load()
        if done:
            console.print(f"resuming: {len(done)} policies finished earlier ({', '.join(done)}), "
                          f"from {ckpt.folder}", highlight=False)
    profile = None
    if any(isinstance(m.params, DynamoParams) for m in own):  # a Dynamo planner interpolates a profile
        profile = dynamo_profile(perf, cfg.engine)
    with console.status("replaying...") as status:
        cmp = compare_autoscalers(tr, perf, policies=names, config=cfg, done=done,
                                  on_policy=lambda n: status.update(f"replaying with {n}..."),
                                  on_result=None if ckpt is None else ckpt.save,
                                  extra={m.name: m.policy(profile) for m in own})
    if match and PolicyName.MPC in names:
        with console.status("re-running baselines with generous targets..."):
            extra = match_attainment(tr, perf, cmp, config=cfg, policies=[
                p for p in (PolicyName.HPA, PolicyName.KEDA, PolicyName.LLM_D_KEDA, PolicyName.RAY_SERVE)
                if p in names],
                refine=match_refine)
        cmp = dataclasses.replace(cmp, results={**cmp.results, **extra})
    table = cmp.table().with_columns(cost_usd=pl.col("gpu_hours") * price)
    judged = verdict(cmp) if PolicyName.MPC.value in cmp.results else None
    if out is not None:  # one run's files, replaced whole (with a manifest)
        files: dict[str, Callable[[Path], object]] = {"summary.parquet": table.write_parquet,
                                                      "timelines.parquet": cmp.timelines().write_parquet}
        if judged is not None:
            doc = json.dumps(dataclasses.asdict(judged), indent=2) + "\n"
            files["verdict.json"] = lambda p: p.write_text(doc)
        write_folder_atomic(out, files, tool="fleetwise autoscale-compare")
        if ckpt is not None:
            ckpt.clear()
    if as_json:
        typer.echo(json.dumps({"engine": prof.engine, "engine_source": prof.describe(),
                               "legacy": {n.value: why for n, why in LEGACY.items()
                                          if n.value in cmp.results},
                               "policy_notes": {m.name: m.notes for m in own if m.notes},
                               "capacity_rps_per_replica": cmp.capacity.rps,
                               "initial_replicas": cmp.initial_replicas, "policies": table.to_dicts(),
                               "verdict": dataclasses.asdict(judged) if judged else None},
                              indent=2, default=float))
        return 0
    t = Table(title=f"{tr.meta.source}: {tr.num_requests} requests, {model} TP{tp} on {gpu}, "
              f"capacity {cmp.capacity.rps:.2f} req/s per replica")
    for col in ("policy", "GPU-h", "cost $", "attain", "TTFT p99 s", "TPOT p99 s", "viol min", "burst viol",
                "actions", "oscill", "peak"):
        t.add_column(col, justify="right" if col != "policy" else "left")
    for r in table.iter_rows(named=True):
        t.add_row(r["policy"], f"{r['gpu_hours']:.1f}", f"{r['cost_usd']:.0f}", f"{r['attainment']:.4f}",
                  f"{r['ttft_p99_s']:.2f}",
                  f"{r['tpot_p99_s']:.3f}", str(r["violation_minutes"]),
                  f"{r['burst_violation_minutes']}/{r['burst_minutes']}", str(r["scale_actions"]),
                  str(r["oscillations"]), str(r["peak_replicas"]))
    console_out = Console(width=None if sys.stdout.isatty() else 140)
    console_out.print(t)
    console_out.print(prof.describe(), highlight=False)
    for name, why in LEGACY.items():
        if name.value in cmp.results:
            console_out.print(f"{name.value}: {why}", highlight=False)
    for m in own:
        if m.notes:
            console_out.print(f"{m.name}: {m.notes}", highlight=False)
    for line in judged.lines() if judged else ():
        console_out.print(line, highlight=False)
    return 0

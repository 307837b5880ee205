"""``fleetwise replay``: replay a request trace through a cluster of replicas and print the summary.

Flags are validated here (the edge); the work is :func:`planner.sim.replay` and the files are written by
:func:`planner.sim.writer.write_result`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.engine_option import EngineOpt
from planner.cli.fault_option import (
    DetectMode,
    DetectOpt,
    FailRateOpt,
    FaultsOpt,
    RetryOpt,
    SlowdownOpt,
    SlowRateOpt,
    faults_of,
)
from planner.cli.kv_tier_option import (
    KVLoad,
    KVLoadOpt,
    KVPolicy,
    KVPolicyOpt,
    KVSwapOpt,
    KVTierOpt,
    kv_tiers_of,
)
from planner.cli.layout_option import DPAttentionOpt
from planner.cli.precision_option import PrecisionOpt
from planner.cli.scenario_config import ConfigOpt
from planner.cli.session_option import ClosedLoopOpt
from planner.cli.spec_option import SpecDecodeOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.perf.engine_profile import DEFAULT_ENGINE
from planner.sim.config import AutoscaleConfig, EngineConfig, PowerConfig, RouterName, SimConfig, SLOTarget
from traces.errors import InputError

if TYPE_CHECKING:  # the perf model and the replay engine are imported when one runs, not for --help
    from planner.sim.result import SimResult

EXAMPLE = (
    "Example:\n\n"
    "  fleetwise replay --trace default --model Llama-3.1-8B --gpu H100-SXM --replicas 4\n\n"
    "  fleetwise replay --trace conv.csv --model Llama-3.1-70B --gpu H100-SXM --tp 4 --replicas 8 "
    "--router prefix-affinity --slo-ttft-ms 1000 --slo-tpot-ms 60 --out runs/r1 --json\n\n"
    "  fleetwise replay --trace chat.parquet --model Llama-3.1-70B --tp 4 --replicas 8 --router "
    "precise-prefix --kv-tier dram --kv-tier remote\n\n"
    "  fleetwise replay --trace default --replicas 2 --autoscale target-tracking --max-replicas 16 "
    "--row-budget-w 20000 --capping polca\n\n"
    "  fleetwise replay --trace agents.parquet --replicas 2 --closed-loop\n\n"
    "  fleetwise replay --trace default --model DeepSeek-V3 --gpu H200-SXM --tp 8 --ep 8 --precision fp8 "
    "--spec-decode mtp:k=1:accept=0.85"
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise replay``."""
    app.command("replay", help=summary("replay") + "\n\n" + EXAMPLE)(replay_cmd)


def replay_cmd(
    scenario: ConfigOpt = None,
    trace: TraceOpt = "default",
    model: Annotated[str, typer.Option(help="catalog model key, e.g. Llama-3.1-8B")] = "Llama-3.1-8B",
    gpu: Annotated[str, typer.Option(help="catalog GPU key, e.g. H100-SXM")] = "H100-SXM",
    replicas: Annotated[int, typer.Option(help="replicas of the model")] = 1,
    tp: Annotated[int, typer.Option(help="tensor-parallel degree per replica")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree per replica")] = 1,
    ep: Annotated[int, typer.Option(help="expert-parallel degree per replica (MoE; divides tp)")] = 1,
    dp_attention: DPAttentionOpt = False,
    expert_imbalance: Annotated[float, typer.Option(
        help="MoE busiest-GPU expert load over the mean (>= 1), e.g. the aggregate of fleetwise experts "
             "--json; ignored for dense models")] = 1.0,
    router: Annotated[RouterName, typer.Option(help="request router")] = RouterName.LEAST_OUTSTANDING,
    max_batched_tokens: Annotated[int, typer.Option(help="token budget per engine step")] = 8192,
    max_num_seqs: Annotated[int, typer.Option(help="running sequences per replica at most")] = 256,
    block_size: Annotated[int, typer.Option(help="tokens per KV block")] = 16,
    prefix_caching: Annotated[bool, typer.Option(help="reuse cached prompt blocks (prefix_hashes)")] = True,
    kv_tier: KVTierOpt = None,
    kv_load: KVLoadOpt = KVLoad.OVERLAP,
    kv_policy: KVPolicyOpt = KVPolicy.LRU,
    swap_space_gb: KVSwapOpt = 0.0,
    faults: FaultsOpt = None,
    fail_per_gpu_hour: FailRateOpt = None,
    slow_per_replica_hour: SlowRateOpt = 0.0,
    slowdown: SlowdownOpt = 2.0,
    retry_budget: RetryOpt = 2,
    detect: DetectOpt = DetectMode.NONE,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms (every SLO class)")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms (every SLO class)")] = 100.0,
    interval_s: Annotated[float, typer.Option(help="time-series resolution, seconds")] = 10.0,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    shards: Annotated[int, typer.Option(help="replica groups, each behind its own router")] = 1,
    ray_address: Annotated[str | None, typer.Option(
        help="run shards on Ray: host:port (GCS), ray://host:10001 (Ray Client), auto (RAY_ADDRESS or the "
             "cluster started on this machine), local (start one here); default: no Ray")] = None,
    autoscale: Annotated[str | None, typer.Option(
        help="autoscaling policy in the loop (a name from planner.autoscale POLICIES, e.g. target-tracking)",
    )] = None,
    autoscale_interval_s: Annotated[float, typer.Option(help="autoscaler control interval, s")] = 15.0,
    min_replicas: Annotated[int, typer.Option(help="autoscaler lower bound")] = 1,
    max_replicas: Annotated[int, typer.Option(help="autoscaler upper bound")] = 64,
    row_budget_w: Annotated[float | None, typer.Option(help="row power budget, W: turns on power in the "
                                                        "loop (per-step GPU power, telemetry)")] = None,
    capping: Annotated[str, typer.Option(help="capping policy with --row-budget-w (none, polca)")] = "none",
    telemetry_period_s: Annotated[float, typer.Option(help="power telemetry and capping period, s")] = 1.0,
    actuation_latency_s: Annotated[float, typer.Option(help="clock-lock actuation latency, s")] = 0.1,
    server_base_w: Annotated[float | None, typer.Option(help="non-GPU power per server, W (default: the "
                                                         "node's max minus its GPUs' TDP)")] = None,
    precision: PrecisionOpt = "native",
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    closed_loop: ClosedLoopOpt = False,
    spec_decode: SpecDecodeOpt = None,
    load_factor: Annotated[float, typer.Option(
        help="request-rate multiplier on the trace (as the report's and the dashboard's)")] = 1.0,
    engine: EngineOpt = DEFAULT_ENGINE,
    engine_profile: Annotated[Path | None, typer.Option(
        help="your own engine profile (JSON from fleetwise profile --engine vllm); overrides --engine"),
    ] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="folder written by fleetwise profile --engine vllm --out DIR: its engines/<engine>/<GPU>.json "
             "replaces the shipped profile of --engine")] = None,
    correction: Annotated[Path | None, typer.Option(
        help="a cluster's corrections (bandwidth, compute, time per step) fitted on its own metrics by "
             "'fleetwise calibrate --prometheus-url ... --out FILE'")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for Parquet tables and summary.json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> int:
    """Replay the trace and print the summary."""
    from planner.catalog import load_catalog
    from planner.perf import Parallelism, build_replica_perf
    from planner.perf.engine_profile import engine_perf_inputs
    from planner.perf.precision import resolve_precision
    from planner.perf.spec_decode import parse_spec_decode
    from planner.sim.replay import replay
    from planner.sim.writer import summary_json, write_result

    if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
        raise InputError("SLO targets must be positive", field="--slo-ttft-ms/--slo-tpot-ms",
                         expected="milliseconds > 0")
    if out is not None and out.exists() and not out.is_dir():  # refuse before replaying, not after
        raise InputError("--out names an existing file", path=str(out),
                         expected="a folder (new or existing)")
    spec = parse_spec_decode(spec_decode) if spec_decode is not None else None
    if not (load_factor > 0 and load_factor < float("inf")):
        raise InputError(f"--load-factor {load_factor} must be positive", field="--load-factor",
                         expected="a multiplier > 0")
    cat = load_catalog()
    from planner.perf.cluster_correction import read_correction

    fix = read_correction(correction) if correction is not None else None
    prof, cal, gpu_spec = engine_perf_inputs(engine, cat.gpu(gpu), profile_file=engine_profile,
                                               calibration_dir=calibration, correction=fix)
    prec = resolve_precision(precision, cat.model(model))
    layout = Parallelism(tp=tp, pp=pp, ep=ep, dp_attention=dp_attention)
    perf = build_replica_perf(cat.model(model), gpu_spec, layout, calibration=cal,
                              expert_imbalance=expert_imbalance,  # dense models have no expert term
                              weight_dtype=prec.weights, kv_dtype=prec.kv, spec_decode=spec)
    config = SimConfig(
        autoscale=_autoscale(autoscale, autoscale_interval_s, min_replicas, max_replicas, seed),
        power=_power(row_budget_w, capping, telemetry_period_s, actuation_latency_s, server_base_w),
        replicas=replicas, router=router, seed=seed, shards=shards, interval_s=interval_s,
        engine=EngineConfig(max_batched_tokens=max_batched_tokens, max_num_seqs=max_num_seqs,
                            block_size=block_size, enable_prefix_caching=prefix_caching).with_profile(prof),
        default_slo=SLOTarget(ttft_s=slo_ttft_ms / 1000.0, tpot_s=slo_tpot_ms / 1000.0),
        kv_tiers=kv_tiers_of(kv_tier, kv_load, kv_policy, swap_space_gb), closed_loop=closed_loop,
    )
    from traces.default import load_trace_arg

    tr = load_trace_arg(trace, start_s=start_s, duration_s=duration_s)
    if load_factor != 1.0:
        from traces.transforms import scale_rate

        tr = scale_rate(tr, load_factor, seed=seed)
    fault_cfg = faults_of(faults, replicas=replicas, gpus_per_replica=perf.gpus,  # as ReplaySpec.faults
                          horizon_s=float(tr.df["arrival_s"].to_numpy().max(initial=0.0)), seed=seed,
                          fail_per_gpu_hour=fail_per_gpu_hour, slow_per_replica_hour=slow_per_replica_hour,
                          slowdown=slowdown, retry_budget=retry_budget, detect=detect)
    if fault_cfg is not None:
        import dataclasses

        config = dataclasses.replace(config, faults=fault_cfg)
    console = Console(stderr=True)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json) as bar:
        job = bar.add_task("replay", total=tr.num_requests if ray_address is None else shards)
        if ray_address is None:
            result = replay(tr, perf, config=config, gpu=gpu_spec,
                            progress=lambda done, _n: bar.update(job, completed=done))
        else:
            from planner.sim.ray_runner import ray_map_shards

            mapper = ray_map_shards(address=ray_address,
                                    on_done=lambda done, _n: bar.update(job, completed=done))
            result = replay(tr, perf, config=config, gpu=gpu_spec, map_shards=mapper)
    from planner.sim.prefix_bound import fleet_kv_tokens, with_prefix_bound

    result = with_prefix_bound(result, tr, capacity_tokens=fleet_kv_tokens(perf, replicas, config.kv_tiers))
    if out is not None:
        write_result(result, out)
    if as_json:
        text = summary_json(result)
        if fix is not None or spec is not None:  # say what the numbers rest on
            import dataclasses
            import json

            doc = json.loads(text)
            if fix is not None:
                doc["cluster_correction"] = {"file": str(correction), **dataclasses.asdict(fix)}
            if spec is not None:
                doc["spec_decode"] = spec.to_json()
            text = json.dumps(doc, indent=2)
        typer.echo(text)
    else:
        print_summary(result, Console(), title=f"{model} on {gpu} x{replicas} ({router.value})", out=out)
        Console().print(prof.describe())
        if spec is not None:
            Console().print(spec.describe(), highlight=False)
        if fix is not None:
            Console().print(f"cluster correction from {correction}: bandwidth x{fix.bandwidth:.3f}, compute "
                            f"x{fix.compute:.3f}, +{fix.step_add_s * 1e3:.2f} ms per step (fitted on that "
                            "cluster's metrics; its back-test is in the file)", highlight=False)
    return 0


def _autoscale(name: str | None, interval_s: float, lo: int, hi: int, seed: int) -> AutoscaleConfig | None:
    if name is None:
        return None
    from planner.autoscale.context import POLICIES, PolicyName

    try:
        policy = POLICIES[PolicyName(name)]
    except ValueError:
        raise InputError(f"unknown autoscaling policy {name!r}", field="--autoscale",
                         expected=", ".join(p.value for p in PolicyName)) from None
    return AutoscaleConfig(policy=policy, interval_s=interval_s, min_replicas=lo, max_replicas=hi, seed=seed)


def _power(budget: float | None, capping: str, period: float, latency: float,
           base: float | None) -> PowerConfig | None:
    if budget is None:
        if capping != "none":
            raise InputError("a capping policy needs a row budget", field="--row-budget-w",
                             expected="watts, with --capping")
        return None
    from planner.contracts.power import PolcaParams
    from planner.power.policy import POLICIES, PolicyName

    try:
        factory = POLICIES[PolicyName(capping)]
    except ValueError:
        raise InputError(f"unknown capping policy {capping!r}", field="--capping",
                         expected=", ".join(p.value for p in PolicyName)) from None
    return PowerConfig(row_budget_w=budget, policy=factory(PolcaParams()), telemetry_period_s=period,
                       actuation_latency_s=latency, server_base_w=base)


def print_summary(result: SimResult, console: Console, *, title: str, out: Path | None) -> None:
    """The summary as rich tables; the rows are :func:`planner.sim.summary_rows.summary_rows` (nothing
    computed or worded here, so the dashboard and the report show the same lines)."""
    from planner.sim.summary_rows import VIOLATIONS_ROW, summary_rows

    t = Table(title=title, show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for name, value in summary_rows(result):
        t.add_row(name, value, style="bold red" if name == VIOLATIONS_ROW else None)
    console.print(t)
    s = result.summary
    c = Table(title="SLO classes")
    for col in ("class", "requests", "met SLO", "TTFT p50/p99 ms", "TPOT p50/p99 ms", "target ms",
                "p99 met"):
        c.add_column(col, overflow="fold")  # wrap, never truncate (80-column terminals)
    for k in s.classes:
        c.add_row(k.slo_class, f"{k.requests:,}", f"{k.attainment:.1%}",
                  f"{k.ttft_p50_s * 1e3:,.0f} / {k.ttft_p99_s * 1e3:,.0f}",
                  f"{k.tpot_p50_s * 1e3:,.1f} / {k.tpot_p99_s * 1e3:,.1f}",
                  f"{k.ttft_target_s * 1e3:,.0f} / {k.tpot_target_s * 1e3:,.0f}",
                  "yes" if k.p99_met else "no")
    console.print(c)
    if out is not None:
        console.print(f"wrote {out}/requests.parquet, timeseries.parquet, summary.json"
                      + (", power.parquet" if result.power is not None else "")
                      + (", replicas.parquet" if result.replicas is not None else ""))

"""``fleetwise bench replay``: simulated requests per second of the replay engine, measured side by side.

Workload (the issue's): Azure-conversation-like lengths (lognormal, input median 1,020 / mean 1,155,
output median 129 / mean 211), Poisson arrivals at the rate that loads 16 replicas of Llama-3.1-8B on an
H100 to ``--load`` of their saturated throughput (measured first on one saturated replica),
least-outstanding routing, one process. Printed: requests/s, simulated time over wall time, peak RSS, a
profile of where the time goes, the pure-Python reference loop on a subset (same requests through both,
ratio in the same run), and the Ray speed-up with 2 workers. Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf
from planner.perf.api import ReplicaPerf
from planner.sim import RouterName, SimConfig, replay
from planner.sim import engine as E  # noqa: N812 (the engine's field constants read as E.R_*)
from planner.sim.reference import reference_shard
from planner.sim.replay import engine_setup, make_shard_tasks, simulate_shard
from planner.sim.result import build_result
from planner.sim.synth import azure_conv_like
from traces.errors import InputError
from traces.schema import RequestTrace

EXAMPLE = (
    "Example:\n\n  fleetwise bench replay --requests 1000000\n\n"
    "  fleetwise bench replay --requests 200000 --json"
)


def register(bench_app: typer.Typer) -> None:
    """Add ``fleetwise bench replay``."""
    bench_app.command("replay", help="Replay engine speed: simulated requests/s on 1M requests, 16 "
                      "replicas, vs the pure-Python reference loop and with 2 Ray workers.\n\n"
                      + EXAMPLE)(bench)


@dataclass(frozen=True)
class _Timed:
    wall_s: float
    requests: int
    sim_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else float("inf")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _saturated_rps(perf: ReplicaPerf, n: int) -> float:
    """Throughput of one replica under an arrival burst (everything queued at t ~ 0)."""
    tr = azure_conv_like(n, rate_rps=1e6, seed=99)
    return replay(tr, perf, config=SimConfig(replicas=1)).summary.throughput_rps


def _prefix(trace: RequestTrace, n: int) -> RequestTrace:
    return RequestTrace(trace.df.head(n), trace.meta)


def bench(
    requests: Annotated[int, typer.Option(help="requests in the timed replay")] = 1_000_000,
    replicas: Annotated[int, typer.Option(help="replicas")] = 16,
    load: Annotated[float, typer.Option(help="offered load as a fraction of saturated throughput")] = 0.75,
    reference_requests: Annotated[int, typer.Option(help="requests for the pure-Python reference")] = 3000,
    ray: Annotated[bool, typer.Option(help="also time 2 shards on 2 local Ray workers")] = True,
    seed: Annotated[int, typer.Option(help="workload seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    validate: Annotated[bool, typer.Option(help="instead: replay the real-GPU validation data "
                                           "(planner/perf/data/validation) and compare")] = False,
    engine: Annotated[str, typer.Option(help="with --validate: the measured engine, vllm (fit an "
                                        "engine profile, check held-out levels and traces) or "
                                        "transformers")] = "vllm",
) -> int:
    """Run the benchmark and print what was measured."""
    console = Console(stderr=as_json)
    if validate:
        if engine == "transformers":
            return _validate(console, as_json)
        if engine != "vllm":
            raise InputError(f"unknown engine {engine!r}", field="--engine", expected="vllm or transformers")
        return _validate_engine(console, as_json, engine)
    cat = load_catalog()
    gpu = cat.gpu("H100-SXM")
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), gpu, Parallelism(tp=1))
    config = SimConfig(replicas=replicas, router=RouterName.LEAST_OUTSTANDING, seed=seed)

    t = time.perf_counter()
    sat = _saturated_rps(perf, 3000)  # also compiles the numba loop for this perf kernel
    compile_and_sat_s = time.perf_counter() - t
    rate = load * sat * replicas
    console.print(f"saturated replica: {sat:.2f} req/s -> offered {rate:.1f} req/s to {replicas} replicas "
                  f"({load:.0%} load); first call incl. numba compile {compile_and_sat_s:.1f} s")

    # --- the timed run, phase by phase (the profile) ---------------------------------------------------
    t0 = time.perf_counter()
    trace = azure_conv_like(requests, rate_rps=rate, seed=seed)
    t1 = time.perf_counter()
    setup = engine_setup(perf, trace, config)
    tasks = make_shard_tasks(trace, config)
    t2 = time.perf_counter()
    outputs = [simulate_shard(task, setup, config) for task in tasks]
    t3 = time.perf_counter()
    result = build_result(trace, outputs, perf=perf, config=config, gpu=gpu)
    t4 = time.perf_counter()
    rss = _peak_rss_mb()
    s = result.summary
    main = _Timed(wall_s=t4 - t1, requests=requests, sim_s=s.makespan_s)
    steps = int(sum(int(o.steps.sum()) for o in outputs))
    kernel_steps = int(sum(int(o.kernel_steps.sum()) for o in outputs))
    # the perf kernel's share: the same number of kernel calls, timed alone
    fn, prm = perf.kernel()
    kernel_s = _kernel_cost(fn, prm, kernel_steps)
    profile = {
        "synthesize_trace_s": t1 - t0,
        "split_into_shards_s": t2 - t1,
        "numba_event_loop_s": t3 - t2,
        "build_result_tables_s": t4 - t3,
        "engine_steps": steps,
        "steps_per_request": steps / requests,
        "kernel_steps": kernel_steps,
        "closed_form_steps": steps - kernel_steps,
        "kernel_upper_bound_s": kernel_s,
    }

    # --- pure-Python reference vs the fast loop on the same subset -------------------------------------
    sub = _prefix(trace, reference_requests)
    sub_task = make_shard_tasks(sub, config)[0]
    sub_setup = engine_setup(perf, sub, config)
    t = time.perf_counter()
    ref_out = reference_shard(sub_task, sub_setup, config)
    ref = _Timed(wall_s=time.perf_counter() - t, requests=reference_requests,
                 sim_s=float(np.nanmax(ref_out.rf[:, E.F_FINISH])))
    t = time.perf_counter()
    fast_out = simulate_shard(sub_task, sub_setup, config)
    fast_sub = _Timed(wall_s=time.perf_counter() - t, requests=reference_requests,
                      sim_s=float(np.nanmax(fast_out.rf[:, E.F_FINISH])))
    agree = float(np.nanmax(np.abs(ref_out.rf[:, :2] - fast_out.rf[:, :2])))

    # --- Ray: 2 shards, sequential in this process vs 2 local workers ----------------------------------
    ray_res: dict[str, float] | None = None
    if ray:
        ray_res = _ray_speedup(trace, perf, config)

    report = {
        "requests": requests,
        "replicas": replicas,
        "offered_rps": rate,
        "saturated_replica_rps": sat,
        "requests_per_s": main.rps,
        "sim_time_over_wall": main.sim_s / main.wall_s,
        "wall_s": main.wall_s,
        "sim_makespan_s": main.sim_s,
        "peak_rss_mb": rss,
        "slo_attainment": s.classes[0].attainment if s.classes else float("nan"),
        "ttft_p99_s": s.classes[0].ttft_p99_s if s.classes else float("nan"),
        "tpot_p99_s": s.classes[0].tpot_p99_s if s.classes else float("nan"),
        "violations": s.violations,
        "profile": profile,
        "reference": {"requests": reference_requests, "python_rps": ref.rps, "fast_rps": fast_sub.rps,
                      "speedup": fast_sub.rps / ref.rps, "max_abs_diff_s": agree},
        "ray": ray_res,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return 0
    tab = Table(title=f"replay speed: {requests:,} requests, {replicas} x Llama-3.1-8B on H100, "
                "least-outstanding")
    tab.add_column("measure")
    tab.add_column("value", justify="right")
    for k, v in (
        ("simulated requests / s (one process)", f"{main.rps:,.0f}"),
        ("simulated time / wall time",
         f"{main.sim_s / main.wall_s:,.0f} x ({main.sim_s:,.0f} s in {main.wall_s:.2f} s)"),
        ("peak RSS", f"{rss:,.0f} MB"),
        ("engine steps (per request)", f"{steps:,} ({steps / requests:.2f})"),
        ("SLO attainment / TTFT p99 / TPOT p99",
         f"{report['slo_attainment']:.1%} / {s.classes[0].ttft_p99_s * 1e3:.0f} ms / "
         f"{s.classes[0].tpot_p99_s * 1e3:.1f} ms"),
        (f"pure-Python reference ({reference_requests:,} req)", f"{ref.rps:,.0f} req/s"),
        (f"fast loop, same {reference_requests:,} req", f"{fast_sub.rps:,.0f} req/s"),
        ("ratio fast / reference", f"{fast_sub.rps / ref.rps:,.0f} x (max |diff| {agree:.1e} s)"),
    ):
        tab.add_row(k, v)
    if ray_res is not None:
        tab.add_row("2 shards, one process", f"{ray_res['sequential_s']:.2f} s")
        tab.add_row("2 shards, 2 Ray workers",
                    f"{ray_res['ray_s']:.2f} s (speed-up {ray_res['speedup']:.2f} x)")
    console.print(tab)
    prof = Table(title="where the time goes (timed run)")
    prof.add_column("phase")
    prof.add_column("seconds", justify="right")
    for k in ("synthesize_trace_s", "split_into_shards_s", "numba_event_loop_s", "build_result_tables_s"):
        prof.add_row(k, f"{profile[k]:.2f}")
    prof.add_row(f"  of which perf kernel ({kernel_steps:,} calls; {steps - kernel_steps:,} decode steps "
                 "summed in closed form)", f"{kernel_s:.2f}")
    console.print(prof)
    return 0


def _validate(console: Console, as_json: bool) -> int:
    from pathlib import Path

    from planner.sim.validate import METRICS, THRESHOLDS, report_json, validate_replay

    cat = load_catalog()
    folder = Path(__file__).resolve().parents[1] / "perf" / "data" / "validation" / "H100-SXM"
    rep = validate_replay(folder, model=cat.model("Llama-3.1-8B"), gpu=cat.gpu("H100-SXM"))
    if as_json:
        typer.echo(report_json(rep))
        return 0
    tab = Table(title=f"replay vs {rep.engine} (H100): predicted / measured - 1")
    for col in ("load", "split", "requests", *METRICS):
        tab.add_column(col, justify="right")
    for lv in rep.levels:
        tab.add_row(f"{lv.level:g}", lv.split, str(lv.requests),
                    *(f"{lv.errors[m]:+.1%} ({lv.measured[m] * 1e3:,.0f} ms)" for m in METRICS))
    console.print(tab)
    e = rep.terms
    console.print(f"engine terms fitted on the 'fit' levels: {e[0] * 1e3:.1f} ms/step + {e[1] * 1e3:.2f} "
                  f"ms/seq + {e[2] * 1e6:.1f} us/prefill token + {e[3] * 1e9:.2f} ns/KV token + "
                  f"{e[4] * 1e12:.1f} ps/(prefill token x KV token)")
    limits = ", ".join(f"{m} {v:.0%}" for m, v in THRESHOLDS.items())
    console.print(f"held-out levels within ({limits}): {'yes' if rep.passed else 'no'}")
    return 0


def _validate_engine(console: Console, as_json: bool, engine: str) -> int:
    from planner.sim.engine_validate import LATENCY, TARGETS, validate_engine

    cat = load_catalog()
    val = validate_engine(engine, models=cat.models, gpus=cat.gpus)
    if as_json:
        typer.echo(json.dumps(val.as_dict(), indent=1))
        return 0
    for p in val.profiles:
        console.print(f"[bold]{p.engine} {p.version} on {p.gpu}[/]: {(p.step_s or 0.0) * 1e3:.3f} ms/step + "
                      f"{(p.per_seq_s or 0.0) * 1e3:.4f} ms/seq, hand-over {p.output_delay_s * 1e3:.1f} ms + "
                      f"{p.output_delay_steps:g} steps, GEMMs "
                      f"{'at full clock' if p.gemm_bf16 else 'as calibrated'}, "
                      f"attention {'FA3 curves' if p.attention else 'calibration'}; {p.source}")
    cols = (*LATENCY, "throughput", "energy_per_token")
    heads = ("TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "tok/s", "J/tok")
    where = ", ".join(sorted({f"{r.model} on {r.gpu}" for r in val.rows}))
    tab = Table(title=f"replay vs {engine} ({where}): predicted / measured - 1; H held out, F fitted")
    for col in ("trace", "load", "", "n", *heads):
        tab.add_column(col, justify="right")
    for r in val.rows:
        e = r.errors
        tab.add_row(r.trace, "burst" if r.level == 0 else f"{r.level:g}", "H" if r.held_out else "F",
                    str(r.requests), *(f"{e[k]:+.0%}" if e.get(k) == e.get(k) else "-" for k in cols))
    console.print(tab)
    doc = val.as_dict()
    b = doc["bare_summary"]
    console.print("bare model on the same held-out levels: " + "; ".join(
        f"{k} median |err| {v['median_abs_err']:.1%} (max {v['max_abs_err']:.1%})"
        for k, v in b.items() if v["median_abs_err"] is not None))
    s = doc["summary"]
    console.print("held-out load levels: " + "; ".join(
        f"{k} median |err| {v['median_abs_err']:.1%} (max {v['max_abs_err']:.1%}, target {TARGETS[k]:.0%}: "
        f"{'met' if v['met'] else 'not met'})" for k, v in s.items() if v["median_abs_err"] is not None))
    return 0


def _kernel_cost(fn: object, prm: np.ndarray, n: int) -> float:
    import numba as nb

    @nb.njit
    def loop(f, p, m):  # type: ignore[no-untyped-def]
        acc = 0.0
        for i in range(m):
            acc += f(p, 1000.0 + (i % 7), 5e5 + i, 50.0, 6e4 + i)
        return acc

    loop(fn, prm, 10)
    t = time.perf_counter()
    loop(fn, prm, n)
    return time.perf_counter() - t


def _ray_speedup(trace: RequestTrace, perf: ReplicaPerf, config: SimConfig) -> dict[str, float]:
    from dataclasses import replace

    from planner.sim.ray_runner import ensure_ray, ray_map_shards

    cfg2 = replace(config, shards=2)
    t = time.perf_counter()
    seq = replay(trace, perf, config=cfg2)
    seq_s = time.perf_counter() - t
    ensure_ray(num_cpus=2)
    mapper = ray_map_shards(num_cpus=2)
    warm = azure_conv_like(2000, rate_rps=50.0, seed=5)
    replay(warm, perf, config=replace(cfg2, replicas=4), map_shards=mapper)  # start + compile workers
    replay(warm, perf, config=replace(cfg2, replicas=4), map_shards=mapper)
    t = time.perf_counter()
    par = replay(trace, perf, config=cfg2, map_shards=mapper)
    ray_s = time.perf_counter() - t
    same = seq.requests.equals(par.requests)
    return {"sequential_s": seq_s, "ray_s": ray_s, "speedup": seq_s / ray_s, "identical": float(same)}

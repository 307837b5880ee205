"""``fleetwise bench replay``: the replay engine's speed (:mod:`planner.bench.replay_speed` measures it,
this verb prints it), or with ``--validate`` the replay against the real-GPU validation data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from traces.errors import InputError

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
class _Row:
    rps: float
    sim_s: float
    wall_s: float


@dataclass(frozen=True)
class _Rate:
    rps: float


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
    from planner.bench.replay_speed import measure_replay_speed

    report = measure_replay_speed(requests=requests, replicas=replicas, load=load,
                                  reference_requests=reference_requests, ray=ray, seed=seed,
                                  note=lambda m: console.print(m, highlight=False))
    main = _Row(report["requests_per_s"], report["sim_makespan_s"], report["wall_s"])
    rss = report["peak_rss_mb"]
    profile = report["profile"]
    steps, kernel_steps = profile["engine_steps"], profile["kernel_steps"]
    kernel_s = profile["kernel_upper_bound_s"]
    refd = report["reference"]
    ref, fast_sub, agree = _Rate(refd["python_rps"]), _Rate(refd["fast_rps"]), refd["max_abs_diff_s"]
    ray_res = report["ray"]
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
         f"{report['slo_attainment']:.1%} / {report['ttft_p99_s'] * 1e3:.0f} ms / "
         f"{report['tpot_p99_s'] * 1e3:.1f} ms"),
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

    from planner.catalog import load_catalog
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
    from planner.catalog import load_catalog
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
    runs = sorted({(r.gpu, r.variant) for r in val.rows})
    for gpu, variant in runs:
        tab = Table(title=f"replay vs {engine}: {variant} on {gpu}, predicted / measured - 1; "
                          "H held out, F fitted")
        tab.add_column("trace", min_width=10, no_wrap=True)
        for col in ("load", "", "n", *heads):
            tab.add_column(col, justify="right")
        for r in val.rows:
            if (r.gpu, r.variant) != (gpu, variant):
                continue
            e = r.errors
            tab.add_row(r.trace, "burst" if r.level == 0 else f"{r.level:g}", "H" if r.held_out else "F",
                        str(r.requests), *(f"{e[k]:+.0%}" if e.get(k) == e.get(k) else "-" for k in cols))
        console.print(tab)
    for m in val.memory:
        err = m["kv_tokens_err"]
        console.print(f"KV cache, {m['variant']} on {m['gpu']} at {m['mem_fraction']:g} of memory: model "
                      f"{m['kv_tokens_model']:,} tokens, engine {m['kv_tokens_engine']:,}"
                      + (f" ({err:+.1%})" if err is not None else ""))
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

"""``fleetwise power``: row power oversubscription (POLCA-style capping) beside nameplate and Dynamo.

Flags are validated here (the edge); the work is :func:`planner.power_study.study.run_study` (replay, CP-SAT
plan, verification, baselines, Pareto curve) or, with ``--power-trace``, a policy run over a recorded
power trace (:func:`planner.power.simulate.run_policy`). Nothing is computed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from planner.cli.engine_option import EngineOpt
from planner.cli.precision_option import PrecisionOpt
from planner.cli.scenario_config import ConfigOpt
from planner.cli.trace_span import DurationOpt, StartOpt, TraceOpt
from planner.cli.verbs import summary
from planner.contracts.power import DEFAULT_BASE_W, HP, LP, ClockModel, PolcaParams
from planner.perf.engine_profile import DEFAULT_ENGINE
from traces.errors import InputError

if TYPE_CHECKING:  # the study and the policy are imported when one is run, not for --help
    from planner.power_study.study import PowerStudy
    from traces.schema import RequestTrace

EXAMPLE = (
    "\n\nExample:\n\n"
    "  fleetwise power --trace AzureLLMInferenceTrace_conv.csv --model Llama-3.1-70B --gpu H100-SXM --tp 8 "
    "--nameplate-servers 40 --pool-servers 72 --rps-per-server 4 --window-s 1200 --out pareto.parquet\n\n"
    "  fleetwise power --power-trace row_power.csv --budget-kw 340 --server-base-w 2880"
)


def register(app: typer.Typer) -> None:
    """Add ``fleetwise power``."""
    app.command(
        "power",
        help=summary("power") + EXAMPLE,
    )(power_cmd)


def power_cmd(
    scenario: ConfigOpt = None,
    trace: TraceOpt = "default",
    model: Annotated[str, typer.Option(help="catalog model key")] = "Llama-3.1-70B",
    gpu: Annotated[str, typer.Option(help="catalog GPU key")] = "H100-SXM",
    tp: Annotated[int, typer.Option(help="tensor-parallel degree of a replica")] = 8,
    nameplate_servers: Annotated[
        int, typer.Option(help="servers the row budget is sized for at nameplate")
    ] = 40,
    pool_servers: Annotated[int, typer.Option(help="servers replayed (the most a plan may deploy)")] = 64,
    rps_per_server: Annotated[float, typer.Option(help="requests/s each server carries")] = 4.0,
    server_base_w: Annotated[
        float,
        typer.Option(help="non-GPU watts per server (default: 8.48 kW measured 8xH100 node max - 8 x 700 W)"),
    ] = DEFAULT_BASE_W,
    window_s: Annotated[
        float | None, typer.Option(help="replay only the first this many seconds of the trace (all: 0)")
    ] = 1200.0,
    sm_clock_mhz: Annotated[float | None, typer.Option(help="static clock lock for every GPU")] = None,
    hp_share: Annotated[float, typer.Option(help="least share of high-priority servers")] = 0.5,
    max_capped: Annotated[float, typer.Option(help="fraction of time capped allowed (epsilon)")] = 0.01,
    hp_inflation: Annotated[float, typer.Option(help="HP p99 TTFT/TPOT inflation allowed")] = 0.05,
    lp_inflation: Annotated[float, typer.Option(help="LP p99 TTFT/TPOT inflation allowed")] = 0.10,
    t1: Annotated[float, typer.Option(help="first threshold (only with --power-trace)")] = 0.85,
    t2: Annotated[float, typer.Option(help="second threshold (only with --power-trace)")] = 0.93,
    t_brake: Annotated[float, typer.Option(help="brake level, fraction of the budget")] = 1.0,
    hysteresis: Annotated[float, typer.Option(help="release below threshold minus this")] = 0.03,
    dwell_s: Annotated[float, typer.Option(help="release after this long below")] = 5.0,
    telemetry_period_s: Annotated[float, typer.Option(help="policy period")] = 1.0,
    actuation_latency_s: Annotated[float, typer.Option(help="clock lock latency")] = 0.1,
    brake_latency_s: Annotated[float, typer.Option(help="out-of-band cap latency")] = 2.0,
    lp_clock_mhz: Annotated[float, typer.Option(help="LP clock at the first level")] = 1400.0,
    lp_min_clock_mhz: Annotated[float, typer.Option(help="LP clock at the second level")] = 1200.0,
    hp_clock_mhz: Annotated[float, typer.Option(help="HP clock at the second level")] = 1600.0,
    dynamo_headroom: Annotated[float, typer.Option(help="share of the budget Dynamo hands out")] = 0.9,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT target, ms")] = 2000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="TPOT target, ms")] = 100.0,
    seeds: Annotated[int, typer.Option(help="trace scenarios (seeded shifts)")] = 1,
    pareto_step: Annotated[int, typer.Option(help="server step of the Pareto curve")] = 2,
    pareto_verify: Annotated[
        int, typer.Option(help="Pareto sizes verified by in-loop replay besides the plan's")
    ] = 3,
    time_limit_s: Annotated[float, typer.Option(help="CP-SAT time limit")] = 20.0,
    seed: Annotated[int, typer.Option(help="CP-SAT seed")] = 0,
    power_trace: Annotated[
        Path | None, typer.Option(help="run the policy over this power trace instead")
    ] = None,
    budget_kw: Annotated[float | None, typer.Option(help="row budget for --power-trace, kW")] = None,
    out: Annotated[Path | None, typer.Option(help="Parquet file for the Pareto curve")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    engine: EngineOpt = DEFAULT_ENGINE,
    precision: PrecisionOpt = "native",
) -> int:
    """Run the study (or the policy over a power trace) and print it."""
    from planner.catalog import load_catalog
    from planner.power_study.plan import Targets
    from planner.power_study.row import RowSpec
    from planner.power_study.study import run_study
    from planner.sim import SLOTarget
    from solvers.power.problem import SolveParams
    from traces.atomic import write_atomic

    for name, v in (
        ("--slo-ttft-ms", slo_ttft_ms),
        ("--slo-tpot-ms", slo_tpot_ms),
        ("--time-limit-s", time_limit_s),
    ):
        if not v > 0:
            raise InputError(f"{name} must be positive", field=name, expected="a number > 0")
    if seeds < 1 or pareto_step < 1:
        raise InputError(
            "--seeds and --pareto-step must be >= 1",
            field="--seeds/--pareto-step",
            expected="an integer >= 1",
        )
    policy = PolcaParams(
        t1=t1,
        t2=t2,
        t_brake=t_brake,
        hysteresis=hysteresis,
        dwell_s=dwell_s,
        telemetry_period_s=telemetry_period_s,
        actuation_latency_s=actuation_latency_s,
        brake_latency_s=brake_latency_s,
        lp_clock_mhz=lp_clock_mhz,
        lp_min_clock_mhz=lp_min_clock_mhz,
        hp_clock_mhz=hp_clock_mhz,
    )
    cat = load_catalog()
    gpu_spec = cat.gpu(gpu)
    if power_trace is not None:
        return _trace_mode(
            power_trace,
            budget_kw,
            policy,
            server_base_w,
            hp_share,
            gpu_spec.idle_w,
            gpu_spec.gpus_per_node,
            gpu_spec.max_sm_clock_mhz,
            as_json,
        )
    spec = RowSpec(
        gpus_per_server=gpu_spec.gpus_per_node,
        tp=tp,
        nameplate_servers=nameplate_servers,
        pool_servers=pool_servers,
        rps_per_server=rps_per_server,
        base_w=server_base_w,
        slo=SLOTarget(ttft_s=slo_ttft_ms / 1000.0, tpot_s=slo_tpot_ms / 1000.0),
        seeds=tuple(range(seeds)),
        sm_clock_mhz=sm_clock_mhz,
        engine=engine,
        precision=precision,
    )
    from traces.default import load_trace_arg

    console = Console(stderr=True)
    with (
        console.status("replaying the row, solving and verifying", spinner="dots") if not as_json else _Null()
    ):
        study = run_study(
            _window(load_trace_arg(trace, start_s=start_s, duration_s=duration_s), window_s),
            model=cat.model(model),
            gpu=gpu_spec,
            spec=spec,
            policy=policy,
            targets=Targets(
                max_capped_fraction=max_capped, hp_inflation=hp_inflation, lp_inflation=lp_inflation
            ),
            params=SolveParams(time_limit_s=time_limit_s, seed=seed),
            min_hp_share=hp_share,
            dynamo_headroom=dynamo_headroom,
            pareto_step=pareto_step,
            pareto_verify=pareto_verify,
        )
    if out is not None:
        write_atomic(out, study.pareto.write_parquet)
    if as_json:
        typer.echo(json.dumps(study.as_dict(), indent=2, default=str))
    else:
        _print_study(study, Console(), out)
    return 0


def _window(trace: RequestTrace, window_s: float | None) -> RequestTrace:
    if window_s is None or window_s <= 0 or window_s >= trace.duration_s:
        return trace
    from traces.transforms import slice_time

    return slice_time(trace, 0.0, window_s)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _print_study(study: PowerStudy, console: Console, out: Path | None) -> None:
    plan = study.verified.plan
    ver = study.verified.verification
    dy = study.dynamo
    t = Table(
        title=f"row budget {study.row.budget_w / 1e3:,.1f} kW ({study.row.spec.base_w:,.0f} W base/server); "
        f"all rows replayed ({ver.requests:,} requests at {study.row.spec.rps_per_server:g} req/s/server, "
        f"engine {study.row.spec.engine})",
        box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    # short names in the table, what each rule is in the notes under it (80-column terminals)
    for col in ("rule", "servers", "extra", "capped", "brakes", "HP infl", "LP infl", "SLO met"):
        t.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)
    t.add_row("nameplate", str(study.nameplate), "+0.0%", "0", "0", "0", "0", "")
    t.add_row("Dynamo [1]", str(dy.servers), f"{dy.servers / study.nameplate - 1:+.1%}",
              "always", "0", "", "", f"{dy.attainment:.2%}")
    t.add_row("fleetwise [2]", str(plan.servers), f"{study.extra_vs_nameplate:+.1%}",
              f"{ver.capped_fraction:.2%}", str(ver.brake_events),
              _pct(ver.hp.inflation if ver.hp else None), _pct(ver.lp.inflation if ver.lp else None),
              f"{study.plan_attainment:.2%}")
    console.print(t)
    console.print(
        "extra: servers over nameplate; capped: share of time the row held clocks down; HP/LP infl: p99 "
        "latency inflation of the high/low-priority tier; nameplate: TDP x GPUs + base per server.\n"
        f"[1] Dynamo's rule: cap ceil({dy.aic_power_w:.0f} W x max(1, {dy.c_power:.2f})) = {dy.cap_w:.0f} W "
        f"per replica, {dy.headroom:.0%} of budget (batch {dy.batch}); capped always at "
        f"{dy.cap_clock_mhz:.0f} MHz.\n"
        f"[2] fleetwise POLCA t1={plan.t1:.2f} t2={plan.t2:.2f} "
        f"({plan.hp_servers} HP / {plan.lp_servers} LP).",
        highlight=False,
    )
    console.print(
        f"vs Dynamo: {study.extra_vs_dynamo:+.1%} servers at "
        f"{'equal or better' if study.attainment_at_least_dynamo else 'LOWER'} SLO attainment "
        f"({study.plan_attainment:.2%} vs {dy.attainment:.2%}); HP locked {ver.hp_locked_fraction:.2%}, "
        f"LP locked {ver.lp_locked_fraction:.2%}, peak row {ver.peak_row_fraction:.1%} of budget; "
        f"CP-SAT {plan.status.value} objective {plan.objective:g} bound {plan.bound:g} "
        f"in {plan.wall_s:.1f} s, "
        f"{study.verified.rounds} round(s); targets {'met' if study.verified.meets_targets else 'NOT met'} "
        f"by replay; study {study.wall_s:.0f} s",
        highlight=False,
    )
    rows = list(study.pareto.iter_rows(named=True))
    braked = any(int(r["brake_events"]) for r in rows)
    c = Table(title="Pareto curve", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = ["servers", "extra", "t1/t2", "capped", "HP lock", "peak", "HP infl", "LP infl",
            *(["brakes"] if braked else []), "*"]
    for col in cols:
        c.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        c.add_row(
            f"{r['servers']} {'r' if r['verified'] else 'm'}",
            f"{r['extra_servers_pct']:+.0f}%",
            f"{r['t1']:.2f}/{r['t2']:.2f}",
            f"{r['capped_fraction']:.1%}",
            f"{r['hp_locked_fraction']:.1%}",
            f"{r['peak_row_fraction']:.0%}",
            f"{r['hp_p99_inflation']:.1%}",
            f"{r['lp_p99_inflation']:.1%}",
            *([str(r["brake_events"])] if braked else []),
            "*" if r["pareto"] else "",
        )
    console.print(c)
    console.print("r: replayed with capping in the simulator loop, m: the model's estimate; peak: peak row "
                  "power over budget; *: on the Pareto front" + ("" if braked else "; no brake events"),
                  highlight=False)
    if out is not None:
        console.print(f"Pareto curve written to {out}")


def _trace_mode(
    path: Path,
    budget_kw: float | None,
    policy: PolcaParams,
    base_w: float,
    hp_share: float,
    idle_w: float,
    gpus: int,
    max_clock: float,
    as_json: bool,
) -> int:
    if budget_kw is None or not budget_kw > 0:
        raise InputError("--power-trace needs a row budget", field="--budget-kw", expected="kilowatts > 0")
    from planner.power.simulate import run_policy
    from planner.power.timeline import timeline_from_power_trace

    tl = timeline_from_power_trace(path, gpu_only_w=base_w)
    n_hp = round(hp_share * tl.servers)
    prio = tuple([HP] * n_hp + [LP] * (tl.servers - n_hp))
    # without a perf model for the recorded servers: the POLCA-anchored rule that locking cuts dynamic
    # power by about 20 % at the LP clock and more below it (design notes A1), idle untouched
    cm = ClockModel(
        max_clock_mhz=max_clock,
        idle_w=idle_w,
        gpus_per_server=gpus,
        clocks_mhz=(
            policy.brake_clock_mhz,
            policy.lp_min_clock_mhz,
            policy.lp_clock_mhz,
            policy.hp_clock_mhz,
        ),
        power_ratio=(0.45, 0.65, 0.75, 0.85),
        slowdown=(1.3, 1.1, 1.06, 1.03),
    )
    run = run_policy(
        tl, priorities=prio, budget_w=budget_kw * 1e3, base_w=base_w, params=policy, clock_model=cm
    )
    res = {
        "servers": tl.servers,
        "samples": tl.samples,
        "dt_s": tl.dt_s,
        "capped_fraction": run.capped_fraction,
        "hp_locked_fraction": run.hp_locked_fraction,
        "lp_locked_fraction": run.lp_locked_fraction,
        "brake_events": run.brake_events,
        "peak_row_fraction": run.peak_row_w / run.budget_w,
        "peak_row_unlocked_fraction": run.peak_row_unlocked_w / run.budget_w,
    }
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        t = Table(title=f"POLCA over {path} (budget {budget_kw:g} kW)", show_header=False)
        for k, v in res.items():
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        Console().print(t)
    return 0

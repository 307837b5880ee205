"""Power page: how many more servers a row's power budget holds with POLCA-style capping, at what price.

The work is :func:`planner.power_study.study.run_study` (``fleetwise power``): replay a pool of servers,
plan the row with CP-SAT (servers per priority tier and the two capping thresholds), verify the plan by
replay, put nameplate provisioning and Dynamo's cap x replicas rule beside it, and trace the Pareto curve of
extra servers against time capped and p99 inflation. The capping timeline is the policy run of
:func:`planner.power_study.row.run_row` at the chosen size. The page lays them out.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import figures
from dashboards.scenario import PowerOutcome, PowerSpec, power_job
from dashboards.ui import Inputs, select_gpu
from dashboards.views.common import (
    computed,
    current_trace,
    engine_choice,
    precision_choice,
    remember_run,
    show_facts,
    show_figure,
)
from dashboards.views.replay import TP_CHOICES
from planner.contracts.power import DEFAULT_BASE_W


def pareto_table(outcome: PowerOutcome) -> pl.DataFrame:
    """The Pareto table with the columns people read, in percent (no new numbers)."""
    return pl.DataFrame(
        [
            {
                "servers": str(r["servers"]),
                "tiers": f"{r['hp_servers']} HP / {r['servers'] - r['hp_servers']} LP",
                "vs nameplate": f"{r['extra_servers_pct']:+.0f} %",
                "t1 / t2": f"{r['t1']:.2f} / {r['t2']:.2f}",
                "time capped": f"{r['capped_fraction']:.2%}",
                "brakes": str(r["brake_events"]),
                "peak row of budget": f"{r['peak_row_fraction']:.1%}",
                "HP p99 inflation": f"{r['hp_p99_inflation']:.2%}",
                "LP p99 inflation": f"{r['lp_p99_inflation']:.2%}",
                "Pareto-optimal": "yes" if r["pareto"] else "no",
            }
            for r in outcome.pareto.iter_rows(named=True)
        ]
    )


def provisioning_table(outcome: PowerOutcome) -> pl.DataFrame:
    """Nameplate, Dynamo and the verified plan side by side."""
    plan = outcome.verified.plan
    ver = outcome.verified.verification
    dy = outcome.dynamo
    n0 = outcome.nameplate
    return pl.DataFrame(
        {
            "provisioning": [
                "nameplate (TDP x GPUs + base per server)",
                f"Dynamo: {dy.cap_w:,.0f} W cap per GPU x replicas, {dy.headroom:.0%} of the budget",
                f"fleetwise POLCA: {plan.hp_servers} HP / {plan.lp_servers} LP, "
                f"t1 {plan.t1:.2f} / t2 {plan.t2:.2f}",
            ],
            "servers": [n0, dy.servers, plan.servers],
            "vs nameplate": ["+0.0%", f"{dy.servers / n0 - 1:+.1%}", f"{plan.servers / n0 - 1:+.1%}"],
            "time capped": ["never", f"always ({dy.cap_clock_mhz:,.0f} MHz)", f"{ver.capped_fraction:.2%}"],
            "SLO attainment": ["not replayed", f"{dy.attainment:.2%}", f"{outcome.plan_attainment:.2%}"],
        }
    )


def render(inputs: Inputs) -> None:
    """Run the power study for the sidebar's trace and model and draw the Pareto curve and a timeline."""
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    c1, c2, c3, c4 = st.columns(4)
    gpu = select_gpu(c1, "power_gpu")
    tp = c2.selectbox("TP", TP_CHOICES, key="power_tp", help="GPUs per replica; a server holds 8 / TP.")
    nameplate = int(
        c3.number_input(
            "Servers at nameplate",
            min_value=1,
            max_value=256,
            value=4,
            key="power_nameplate",
            help="The row budget is what these servers draw at TDP (plus their base power).",
        )
    )
    pool = int(
        c4.number_input(
            "Servers replayed (most a plan may deploy)",
            min_value=1,
            max_value=512,
            value=6,
            key="power_pool",
        )
    )
    c5, c6, c7, c8 = st.columns(4)
    rps = float(
        c5.number_input(
            "Requests/s per server",
            min_value=0.1,
            value=4.0,
            step=1.0,
            key="power_rps",
            help="The trace is rescaled so that every server carries this rate.",
        )
    )
    base = float(
        c6.number_input("Base power per server, W", min_value=0.0, value=DEFAULT_BASE_W, step=100.0,
                        key="power_base", help="Non-GPU power of a server (CPUs, fans, NICs); default: "
                        "8.48 kW measured on an 8 x H100 node minus 8 x 700 W (Latif et al., 2025)")
    )
    capped = float(
        c7.number_input(
            "Time capped allowed, %", min_value=0.0, max_value=100.0, value=1.0, step=0.5, key="power_eps"
        )
    )
    limit = float(
        c8.number_input("CP-SAT time limit, s", min_value=1.0, value=10.0, step=5.0, key="power_limit")
    )
    if pool < nameplate:
        st.error("Servers replayed must be at least the servers at nameplate.", icon=":material/error:")
        return
    spec = PowerSpec(
        model=inputs.model,
        gpu=str(gpu),
        tp=int(tp),
        nameplate_servers=nameplate,
        pool_servers=pool,
        rps_per_server=rps,
        server_base_w=base,
        max_capped=capped / 100.0,
        ttft_s=inputs.ttft_s,
        tpot_s=inputs.tpot_s,
        time_limit_s=limit,
        seed=inputs.seed,
        engine=engine_choice("power_engine", str(gpu)),
        precision=precision_choice("power_precision"),
    )
    clicked = st.button("Run power study", type="primary", key="power_run", icon=":material/play_arrow:")
    last = remember_run("power_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        st.caption(
            "Press **Run power study** to replay the row, plan it with CP-SAT, verify the plan by replay "
            f"and trace the Pareto curve ({pool} servers at {rps:g} req/s each: "
            f"{pool * rps * 3600:,.0f} requests per trace hour)."
        )
        return
    out = computed("power_request", power_job, last, label="Power study")
    if out is None:
        return
    plan = out.verified.plan
    ver = out.verified.verification
    (st.success if out.verified.meets_targets else st.warning)(
        f"Row budget {out.budget_w / 1e3:,.1f} kW: {plan.servers} servers with POLCA capping against "
        f"{out.nameplate} at nameplate ({plan.servers / out.nameplate - 1:+.0%}) and {out.dynamo.servers} "
        f"with Dynamo's cap; capped {ver.capped_fraction:.2%} of the time, {ver.brake_events} brake events; "
        f"targets {'met' if out.verified.meets_targets else 'not met'} in replay "
        f"(CP-SAT {plan.status.value}, study {out.wall_s:,.0f} s)."
    )
    show_facts(provisioning_table(out))
    if out.pareto.height:
        show_figure(
            figures.pareto_figure(
                out.pareto,
                nameplate=out.nameplate,
                dynamo_servers=out.dynamo.servers,
                plan_servers=plan.servers,
            ),
            key="power_pareto",
        )
        show_facts(pareto_table(out))
    else:
        st.info("No row size above nameplate avoids the brake: the Pareto curve is empty.")
    sizes = sorted(out.timelines)
    size = st.selectbox(
        "Capping timeline for",
        sizes,
        index=sizes.index(plan.servers),
        key="power_size",
        format_func=lambda n: f"{n} servers" + (" (the plan)" if n == plan.servers else ""),
    )
    tl = out.timelines[int(size)]
    show_figure(
        figures.capping_timeline_figure(
            tl.t_s,
            tl.row_w,
            tl.row_unlocked_w,
            tl.hp_locked,
            tl.lp_locked,
            budget_w=out.budget_w,
            t1=tl.t1,
            t2=tl.t2,
            title=f"Capping timeline: {tl.servers} servers ({tl.hp_servers} HP), capped "
            f"{tl.capped_fraction:.2%} of the time, {tl.brake_events} brake events",
        ),
        key="power_timeline",
    )

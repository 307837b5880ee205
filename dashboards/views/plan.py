"""Plan page: which GPUs, which layout, how many replicas per window, at what cost, and why."""

from __future__ import annotations

import streamlit as st

from dashboards import figures, tables
from dashboards.scenario import PlanSpec, plan_job, planned_fleet
from dashboards.ui import Inputs, gpu_names
from dashboards.views.common import (
    computed,
    current_trace,
    engine_choice,
    remember_run,
    show_facts,
    show_figure,
    show_table,
)


def render(inputs: Inputs) -> None:
    """Size the fleet with :mod:`planner.plan` for the sidebar's trace, model and SLOs."""
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    names = list(gpu_names())
    gpus = st.multiselect("GPU types to consider", names, default=names, key="plan_gpus")
    c1, c2, c3, c4 = st.columns(4)
    inventory_text = c1.text_input(
        "Inventory (GPU=COUNT, comma-separated)",
        key="plan_inventory",
        placeholder="H100-SXM=16, H200-SXM=8",
        help="GPU types not listed: unlimited.",
    )
    budget_kw = c2.number_input(
        "Power budget, kW (0: none)", min_value=0.0, value=0.0, step=5.0, key="plan_budget"
    )
    disagg = c3.selectbox("Prefill/decode split", ("auto", "on", "off"), key="plan_disagg")
    window_s = c4.selectbox(
        "Planning window",
        (300.0, 600.0, 900.0, 1800.0, 3600.0),
        key="plan_window",
        format_func=lambda s: f"{s / 60:g} min",
    )
    engine = engine_choice("plan_engine", gpus[0] if gpus else names[0])
    s1, s2 = st.columns(2)
    start_s = s1.number_input(
        "Replica start cost, s (blank: from the model's size)", min_value=0.0, value=None, step=30.0,
        key="plan_start_s",
        help="Seconds of its GPUs' time each replica a window adds costs (its cold start). Blank: from the "
        "model's weight bytes on Ray Serve LLM's from-zero start times; 0: switching is free.")
    dwell = s2.number_input("Minimum dwell, windows", min_value=1, value=1, step=1, key="plan_dwell",
                            help="A started replica runs at least this many windows.")
    stats = ("p99", "p95", "p90", "p50", "mean")
    k1, k2, k3, k4 = st.columns(4)
    ttft_stat = k1.selectbox(
        "TTFT statistic", stats, key="plan_ttft_statistic",
        help="What the sidebar's TTFT target holds at, in scoring and in the replay check (mean: as "
        "AIConfigurator and Dynamo state SLOs).")
    tpot_stat = k2.selectbox("TPOT statistic", stats, key="plan_tpot_statistic",
                             help="What the sidebar's TPOT target holds at.")
    e2e_s = k3.number_input(
        "End-to-end target, s (blank: none)", min_value=0.1, value=None, step=5.0, key="plan_e2e",
        help="Arrival to last token: what batch and agent callers wait for (TTFT plus the whole decode).")
    e2e_stat = k4.selectbox("End-to-end statistic", stats, key="plan_e2e_statistic")
    classes_text = st.text_input(
        "Targets per SLO class (NAME:TTFT_MS:TPOT_MS[:E2E_MS], comma-separated)", key="plan_classes",
        placeholder="batch:20000:250",
        help="For a trace with an slo_class column; other requests keep the sidebar's targets. The plan "
        "weighs one shared fleet held to the strictest targets against a pool per class.")
    precision = st.radio(
        "Precisions", ("native", "all"), horizontal=True, key="plan_precision",
        help="native: the model's published weights with a bf16 KV cache; all: also fp8 weights and an fp8 "
        "KV cache, chosen only where they save at least 1 % and flagged in the plan's notes")
    if not gpus:
        st.warning("Select at least one GPU type.")
        return
    from planner.plan.inventory import parse_inventory

    items = [x.strip() for x in inventory_text.split(",") if x.strip()]
    spec = PlanSpec(
        model=inputs.model,
        gpus=tuple(gpus),
        ttft_p99_s=inputs.ttft_s,
        tpot_p99_s=inputs.tpot_s,
        inventory=parse_inventory(items, set(gpus)),
        power_budget_kw=budget_kw or None,
        disaggregation=str(disagg),
        window_s=float(window_s),
        seed=inputs.seed,
        engine=str(engine),
        precision=str(precision),
        replica_start_s=None if start_s is None else float(start_s),
        min_dwell_windows=int(dwell),
        slo_statistic=f"ttft={ttft_stat},tpot={tpot_stat},e2e={e2e_stat}",
        e2e_s=None if e2e_s is None else float(e2e_s),
        slo_classes=tuple(x.strip() for x in classes_text.split(",") if x.strip()),
    )
    clicked = st.button("Run plan", type="primary", key="plan_run", icon=":material/play_arrow:")
    last = remember_run("plan_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        st.caption(
            "Press **Run plan** to size a fleet for this trace (scoring, CP-SAT, then a replay to verify)."
        )
        return
    report = computed("plan_request", plan_job, last, label="Sizing the fleet")
    if report is None:
        return
    model = last[3].model
    headline = tables.plan_headline(report, model)
    presented = report.plan.feasible and (report.verified or not report.verification)
    (st.success if presented else st.error)(headline)
    st.markdown(tables.plan_why(report))
    fleet = planned_fleet(report)
    if fleet is not None:
        st.session_state["planned_fleet"] = (model, *fleet)
        show_facts(tables.plan_table(report))
        show_figure(figures.plan_windows_figure(report), key="plan_windows")
    if report.verification:
        st.subheader("Verification by replay")
        show_facts(tables.verification_table(report))
        if report.plan.feasible and report.verification[0].by_window:
            show_figure(figures.verification_windows_figure(report), key="plan_verified_windows")
            with st.expander("The presented plan's replay, window by window"):
                show_table(tables.verification_windows_table(report), height=320)
    if report.classes is not None:
        st.subheader("SLO classes")
        show_facts(tables.class_layouts_table(report))
        show_facts(tables.layouts_table(report))
        if report.verification:
            show_figure(figures.class_targets_figure(report), key="plan_classes")
    st.subheader("Candidates")
    if report.scored.height and int(report.scored["feasible"].sum()):
        show_figure(figures.plan_cost_figure(report), key="plan_cost")
    show_table(tables.candidates_table(report), height=360)
    st.caption("The Replay page's defaults follow this plan's main configuration at its peak replica count.")

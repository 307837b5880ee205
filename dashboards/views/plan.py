"""Plan page: which GPU, which tensor-parallel degree and how many replicas, at what cost, and why."""

from __future__ import annotations

import streamlit as st

from dashboards import cache, figures, tables
from dashboards.scenario import PlanSpec
from dashboards.ui import Inputs, gpu_names
from dashboards.views.common import current_trace, remember_run, show_figure, show_table

TP_CHOICES: tuple[int, ...] = (1, 2, 4, 8)


def render(inputs: Inputs) -> None:
    """Size the fleet with :mod:`planner.plan` for the sidebar's trace, model and SLOs."""
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    names = list(gpu_names())
    c1, c2 = st.columns([3, 1])
    gpus = c1.multiselect("GPU types to consider", names, default=names, key="plan_gpus")
    tps = c2.multiselect("TP degrees", TP_CHOICES, default=list(TP_CHOICES), key="plan_tp")
    clicked = st.button("Run plan", type="primary", key="plan_run", icon=":material/play_arrow:")
    spec = (
        PlanSpec(
            model=inputs.model,
            gpus=tuple(gpus),
            ttft_p99_s=inputs.ttft_s,
            tpot_p99_s=inputs.tpot_s,
            tp_options=tuple(sorted(tps)) or TP_CHOICES,
        )
        if gpus
        else None
    )
    if spec is None:
        st.warning("Select at least one GPU type.")
        return
    request = (src, inputs.load_factor, inputs.seed, spec)
    last = remember_run("plan_request", request, clicked)
    if last is None:
        st.caption("Press **Run plan** to size a fleet for this trace.")
        return
    with st.spinner("Evaluating candidates..."):
        result = cache.plan(*last)
    model = last[3].model
    headline = tables.plan_headline(result, model)
    (st.success if result.best is not None else st.error)(headline)
    st.markdown(tables.plan_why(result))
    if result.best is not None:
        st.session_state["planned_fleet"] = (model, result.best.gpu, result.best.tp, result.best.replicas)
        show_figure(figures.plan_cost_figure(result), key="plan_cost")
    show_table(tables.plan_table(result))
    st.caption(
        "The planner sizes from peak demand and the performance model; verify the plan on the "
        "Replay page (its defaults follow this plan)."
    )

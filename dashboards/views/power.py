"""Power page: the replay's power per GPU/server/rack/row against a budget, and how often it would bind."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import cache, figures
from dashboards.ui import Inputs
from dashboards.views.common import current_trace, remember_run, show_figure
from dashboards.views.replay import fleet_inputs
from planner.catalog import load_catalog


def render(inputs: Inputs) -> None:
    """Power timeline and power-duration curve of a replay (``SimResult.power``)."""
    st.info(
        "Pending in the library: power capping policies (planner.power) are not yet in the replay loop, so "
        "the oversubscription Pareto curve and the capping timeline are not available. Shown here: the "
        "uncapped power the replay measured, against a budget you choose.",
        icon=":material/pending:",
    )
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    spec = fleet_inputs(inputs, prefix="power")
    c1, c2 = st.columns(2)
    scope = c1.selectbox("Scope", ("row", "rack", "server", "gpu"), key="power_scope")
    budget_pct = c2.slider(
        "Budget, % of the GPUs' board power (TDP)", min_value=30, max_value=100, value=85, key="power_budget"
    )
    clicked = st.button("Run replay", type="primary", key="power_run", icon=":material/play_arrow:")
    last = remember_run("power_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        st.caption("Press **Run replay** to measure this fleet's power.")
        return
    with st.spinner("Replaying..."):
        result = cache.replay(*last)
    run_spec = last[3]
    if result.power is None:
        st.warning("This replay has no power table.")
        return
    gpu = load_catalog().gpu(run_spec.gpu)
    n_gpus = result.summary.replicas * result.summary.gpus_per_replica
    budget_w = budget_pct / 100.0 * gpu.tdp_w * n_gpus
    total = result.power.filter(pl.col("scope") == "row").group_by("t_s").agg(pl.col("power_w").sum())
    over = float((total["power_w"] > budget_w).mean())  # type: ignore[arg-type]
    peak = float(total["power_w"].max())  # type: ignore[arg-type]
    energy = result.summary.energy_kwh or 0.0
    (st.success if over == 0 else st.warning)(
        f"{n_gpus} x {gpu.name}: peak {peak / 1e3:,.2f} kW of {gpu.tdp_w * n_gpus / 1e3:,.2f} kW "
        "board power; "
        f"a {budget_pct} % budget ({budget_w / 1e3:,.2f} kW) would bind in {over:.1%} of the intervals; "
        f"energy {energy:,.2f} kWh."
    )
    scope_budget = budget_w if scope == "row" else None
    show_figure(figures.power_figure(result, scope=scope, budget_w=scope_budget), key="power_timeline")
    show_figure(figures.power_duration_figure(result, budget_w=budget_w), key="power_duration")

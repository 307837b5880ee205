"""Experts page: MoE expert load per GPU before and after placement (static, EPLB greedy, fleetwise)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import cache, figures
from dashboards.ui import Inputs
from dashboards.views.common import remember_run, show_facts, show_figure
from planner.catalog import load_catalog
from solvers.experts import MoEShape, moe_shape_of


def render(inputs: Inputs) -> None:
    """Balance synthetic expert loads with :func:`solvers.experts.solve` beside EPLB and the static layout."""
    cat = load_catalog()
    moe_models = [name for name, m in cat.models.items() if m.moe is not None]
    default = (
        inputs.model
        if inputs.model in moe_models
        else ("DeepSeek-V3" if "DeepSeek-V3" in moe_models else moe_models[0])
    )
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("MoE model", moe_models, index=moe_models.index(default), key="exp_model")
    full = moe_shape_of(cat.model(model))
    layers = int(
        c2.number_input(
            "Layers to place",
            min_value=1,
            max_value=full.layers,
            value=min(8, full.layers),
            key="exp_layers",
            help=f"{model} has {full.layers} MoE layers; fewer solve faster.",
        )
    )
    gpus = int(
        c3.number_input(
            "GPUs (EP degree)",
            min_value=1,
            max_value=max(full.experts, 1),
            value=min(32, full.experts),
            key="exp_gpus",
        )
    )
    per_node = int(c4.number_input("GPUs per node", min_value=1, value=min(8, gpus), key="exp_node"))
    c5, c6, c7 = st.columns(3)
    redundant = int(c5.number_input("Redundant slots per layer", min_value=0, value=gpus, key="exp_red"))
    sigma = float(c6.slider("Load skew (lognormal sigma)", 0.0, 2.0, 1.0, 0.1, key="exp_sigma"))
    limit = float(
        c7.number_input("Solver time limit, s", min_value=0.5, value=3.0, step=0.5, key="exp_limit")
    )
    shape = MoEShape(layers=layers, experts=full.experts, groups=full.groups)
    clicked = st.button("Place experts", type="primary", key="exp_run", icon=":material/play_arrow:")
    request = (shape, sigma, inputs.seed, gpus, per_node, redundant, limit)
    last = remember_run("exp_request", request, clicked)
    if last is None:
        st.caption("Loads are synthetic (lognormal per layer, seeded). Press **Place experts** to compare.")
        return
    with st.spinner(f"Placing {last[0].experts} experts x {last[0].layers} layers on {last[3]} GPUs..."):
        static, greedy, ours = cache.expert_plans(*last)
        w = cache.expert_loads(last[0], last[1], last[2])
    rows = []
    for name, placement, status, wall in (
        ("static (one copy each, in order)", static, "fixed", None),
        ("EPLB greedy", greedy, "heuristic", None),
        ("fleetwise", ours.placement, str(ours.status).lower(), ours.wall_s),
    ):
        imb = placement.layer_imbalance(w)
        rows.append(
            {
                "plan": name,
                "max/mean (avg)": round(float(imb.mean()), 4),
                "max/mean (worst layer)": round(float(imb.max()), 4),
                "duplicates": placement.duplicates(),
                "status": status,
                "solve s": None if wall is None else round(wall, 2),
            }
        )
    st.success(
        f"Busiest GPU over mean: {rows[0]['max/mean (avg)']:.2f} static, "
        f"{rows[1]['max/mean (avg)']:.3f} EPLB greedy, {rows[2]['max/mean (avg)']:.3f} fleetwise "
        f"(lower bound {ours.bound:.3f})."
        if ours.bound is not None
        else f"Busiest GPU over mean: {rows[2]['max/mean (avg)']:.3f} fleetwise."
    )
    show_facts(pl.DataFrame(rows))
    zmax = float(max(static.gpu_loads(w).max(axis=1) / static.gpu_loads(w).mean(axis=1)))
    left, right = st.columns(2)
    with left:
        show_figure(
            figures.expert_heatmap(static.gpu_loads(w), title="Before: static layout", zmax=zmax),
            key="exp_before",
        )
    with right:
        show_figure(
            figures.expert_heatmap(
                ours.placement.gpu_loads(w), title="After: fleetwise placement", zmax=zmax
            ),
            key="exp_after",
        )
    with st.expander("EPLB greedy heatmap"):
        show_figure(
            figures.expert_heatmap(greedy.gpu_loads(w), title="EPLB greedy", zmax=zmax), key="exp_eplb"
        )

"""Autoscaling page: the policies that exist, side by side with a fixed fleet, over the replay's load."""

from __future__ import annotations

import numpy as np
import polars as pl
import streamlit as st

from dashboards import cache, figures
from dashboards.ui import Inputs
from dashboards.views.common import current_trace, remember_run, show_facts, show_figure
from dashboards.views.replay import fleet_inputs
from planner.autoscale.context import DEFAULT_COLD_START, POLICIES, TargetParams


def render(inputs: Inputs) -> None:
    """Target tracking (``planner.autoscale``) against the fixed fleet of the replay, open loop."""
    st.info(
        "Pending in the library: the replay simulator does not yet run autoscaling policies in the loop "
        "(fixed replica count, no cold starts). This page replays the fixed fleet, then runs each policy "
        "tick by tick over the load that fleet saw: the replica timeline and GPU-hours are what the policy "
        "would ask for; its latency and SLO violations need the closed loop.",
        icon=":material/pending:",
    )
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    spec = fleet_inputs(inputs, prefix="auto")
    st.markdown(f"**Policies available:** {', '.join(p.value for p in POLICIES)}")
    c1, c2, c3, c4 = st.columns(4)
    params = TargetParams(
        target_running_per_replica=float(
            c1.number_input(
                "Target requests per replica", min_value=1.0, value=64.0, step=8.0, key="auto_target"
            )
        ),
        min_replicas=int(c2.number_input("Min replicas", min_value=1, value=1, key="auto_min")),
        max_replicas=int(c3.number_input("Max replicas", min_value=1, value=64, key="auto_max")),
        scale_down_delay_s=float(
            c4.number_input("Scale-down delay, s", min_value=0.0, value=300.0, step=30.0, key="auto_delay")
        ),
    )
    if params.max_replicas < params.min_replicas:
        st.error("Max replicas must be at least min replicas.")
        return
    clicked = st.button("Run policies", type="primary", key="auto_run", icon=":material/play_arrow:")
    last = remember_run("auto_request", (src, inputs.load_factor, inputs.seed, spec, params), clicked)
    if last is None:
        st.caption("Press **Run policies** to replay the fixed fleet and run the policies over its load.")
    else:
        with st.spinner("Replaying the fixed fleet and running the policy..."):
            result = cache.replay(*last[:4])
            preview = cache.policy_preview(*last)
        fixed = result.summary
        t = result.timeseries["t_s"].to_list()
        series = {
            f"fixed x{fixed.replicas}": (t, [fixed.replicas] * len(t)),
            "target-tracking (open loop)": (list(preview.t_s), list(preview.replicas)),
        }
        st.success(
            f"Target tracking asks for {min(preview.replicas)} to {max(preview.replicas)} replicas: "
            f"{preview.gpu_hours:,.2f} GPU-hours against {fixed.gpu_hours:,.2f} for the fixed fleet."
        )
        show_facts(
            pl.DataFrame(
                {
                    "policy": [f"fixed x{fixed.replicas}", "target-tracking"],
                    "GPU-hours": [round(fixed.gpu_hours, 2), round(preview.gpu_hours, 2)],
                    "replicas min / max": [
                        f"{fixed.replicas} / {fixed.replicas}",
                        f"{min(preview.replicas)} / {max(preview.replicas)}",
                    ],
                    "SLO attainment": [
                        f"{min(c.attainment for c in fixed.classes):.1%}",
                        "pending (closed loop)",
                    ],
                }
            )
        )
        show_figure(figures.replicas_figure(series), key="auto_timeline")
    st.subheader("Cold starts")
    cs = DEFAULT_COLD_START
    samples = cs.sample(np.random.default_rng(inputs.seed), 5000)
    show_figure(figures.cold_start_figure(samples, median_s=cs.median_s), key="auto_coldstart")
    st.caption(f"Lognormal(mu={cs.mu:.3f}, sigma={cs.sigma:.3f}); source: {cs.source}.")

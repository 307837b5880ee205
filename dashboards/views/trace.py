"""Trace page: what the chosen trace looks like (statistics, arrival rate, token demand, lengths)."""

from __future__ import annotations

import streamlit as st

from dashboards import cache, figures, tables
from dashboards.ui import Inputs
from dashboards.views.common import current_trace, show_facts, show_figure


def render(inputs: Inputs) -> None:
    """Statistics and plots of the sidebar's trace (``traces.stats.describe``)."""
    got = current_trace(inputs)
    if got is None:
        return
    src, tr = got
    window_s = st.select_slider(
        "Window for rates and peak-to-mean",
        options=(10.0, 30.0, 60.0, 300.0, 900.0),
        value=60.0,
        format_func=lambda s: f"{s:g} s",
        key="trace_window",
    )
    stats = cache.stats(src, inputs.load_factor, inputs.seed, float(window_s))
    factor = f" at {inputs.load_factor:g}x its rate" if inputs.load_factor != 1.0 else ""
    st.success(
        f"{src.label}{factor}: {stats.requests:,} requests over {stats.duration_s / 60:,.1f} min, "
        f"mean {stats.mean_rate_rps:,.2f} req/s, peak-to-mean {stats.peak_to_mean:.2f}",
        icon=":material/check_circle:",
    )
    left, right = st.columns([2, 3])
    with left:
        show_facts(tables.trace_table(tr, stats))
    with right:
        show_figure(figures.arrival_rate_figure(stats), key="trace_rate")
    show_figure(figures.token_demand_figure(stats), key="trace_tokens")
    show_figure(figures.length_figure(tr), key="trace_lengths")

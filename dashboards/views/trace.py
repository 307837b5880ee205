"""Trace page: what the chosen trace looks like (statistics, arrival rate, token demand, lengths)."""

from __future__ import annotations

import json
import time

import streamlit as st

from dashboards import cache, figures, tables
from dashboards.scenario import TraceSource
from dashboards.ui import Inputs, gpu_names
from dashboards.views.common import current_trace, show_facts, show_figure
from traces.errors import InputError


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
    if src.kind == "prometheus":
        _calibrate_section(src, inputs)


def _calibrate_section(src: TraceSource, inputs: Inputs) -> None:
    """For a trace rebuilt from Prometheus: fit the cluster's corrections on that window and back-test them
    on a later one (:func:`planner.live.telemetry_fit.calibrate_from_prometheus`, as ``fleetwise calibrate
    --prometheus-url`` does)."""
    st.subheader("Calibrate the model on this fleet")
    names = list(gpu_names())
    c1, c2, c3 = st.columns(3)
    gpu = c1.selectbox("Fleet's GPU", names, index=names.index("H100-SXM") if "H100-SXM" in names else 0,
                       key="cal_gpu")
    tp = int(c2.number_input("TP", min_value=1, max_value=8, value=1, key="cal_tp"))
    precision = c3.text_input("Precision", value="native", key="cal_precision")
    later = st.text_input("Back-test range (START,END; empty: none)", value="", key="cal_backtest",
                          help="A later window than the sidebar's, to check the corrections on.")
    if not st.button("Fit corrections", key="cal_run"):
        return
    from planner.catalog import load_catalog
    from planner.live.telemetry_fit import calibrate_from_prometheus
    from planner.live.time_range import parse_range
    from planner.perf.precision import resolve_precision

    assert src.range_s is not None
    try:
        cat = load_catalog()
        spec = cat.model(inputs.model)
        prec = resolve_precision(precision, spec)
        with st.spinner("Fitting on the fleet's calm intervals..."):
            result = calibrate_from_prometheus(
                src.path, src.range_s, model=spec, gpu=cat.gpu(gpu),
                backtest_range=parse_range(later, time.time()) if later.strip() else None, tp=tp,
                weight_dtype=prec.weights, kv_dtype=prec.kv, precision=prec.label, selector=src.selector,
                step_s=src.step_s)
    except InputError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    c = result.fit.correction
    st.success(f"{inputs.model} on {gpu}: bandwidth x{c.bandwidth:.3f}, compute x{c.compute:.3f}, "
               f"+{c.step_add_s * 1e3:.2f} ms per step over the engine profile "
               f"({result.fit.calm_share:.0%} of the window calm, {result.fit.replays} replays)",
               icon=":material/tune:")
    show_facts(tables.calibration_table(result))
    st.download_button("cluster.json (for fleetwise replay --correction)",
                       json.dumps(result.to_json(), indent=2), file_name="cluster.json", key="cal_download")

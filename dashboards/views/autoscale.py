"""Autoscaling page: every policy in the replay loop on the same trace, cluster and cold starts.

The work is :func:`planner.autoscale.compare.compare_autoscalers` (``fleetwise autoscale-compare``): the
same replica capacity, measured once at the SLO, tunes HPA, KEDA, Ray Serve, Dynamo's SLA planner, llm-d's
WVA and fleetwise's forecast-driven MPC; each replays the trace with cold starts drawn from the same
distribution. The page lays out its table and timelines.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import streamlit as st

from dashboards import cache, figures
from dashboards.scenario import AutoscaleSpec, autoscale_job
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
from planner.autoscale.names import DEFAULT_POLICIES
from planner.sim.coldstart import FITTED_COLD_START, ColdStartShape, cold_start_for

POLICY_HELP = (
    "hpa: Kubernetes HPA on vLLM's running+waiting; keda: KEDA's Prometheus scaler (30 s polling, 300 s "
    "cooldown); ray-serve: Ray Serve's ongoing-requests target; dynamo-sla: NVIDIA Dynamo's SLA planner "
    "(ARIMA forecast, profile from the perf model); wva: llm-d's saturation-based variant autoscaler; "
    "mpc: fleetwise's forecast-driven model-predictive policy."
)


def policy_table(table: pl.DataFrame) -> pl.DataFrame:
    """``Comparison.table()`` with the columns people read, in their units (no new numbers)."""
    return pl.DataFrame(
        [
            {
                "policy": r["policy"],
                "GPU-hours": f"{r['gpu_hours']:,.2f}",
                "SLO attainment": f"{r['attainment']:.2%}",
                "TTFT p99 ms": f"{r['ttft_p99_s'] * 1e3:,.0f}",
                "TPOT p99 ms": f"{r['tpot_p99_s'] * 1e3:,.1f}",
                "violation min": str(r["violation_minutes"]),
                "burst min violated": f"{r['burst_violation_minutes']} / {r['burst_minutes']}",
                "scale actions": str(r["scale_actions"]),
                "oscillations": str(r["oscillations"]),
                "replicas mean / peak": f"{r['mean_replicas']:.1f} / {r['peak_replicas']}",
            }
            for r in table.iter_rows(named=True)
        ]
    )


def render(inputs: Inputs) -> None:
    """Compare autoscaling policies in the loop and show GPU-hours, violations and replica timelines."""
    got = current_trace(inputs)
    if got is None:
        return
    src, _ = got
    c1, c2, c3, c4 = st.columns(4)
    gpu = select_gpu(c1, "auto_gpu")
    tp = c2.selectbox("TP", TP_CHOICES, key="auto_tp")
    lo = int(c3.number_input("Min replicas", min_value=1, value=1, key="auto_min"))
    hi = int(c4.number_input("Max replicas", min_value=1, value=64, key="auto_max"))
    all_policies = [p.value for p in DEFAULT_POLICIES]
    chosen = st.multiselect(
        "Policies", all_policies, default=all_policies, key="auto_policies", help=POLICY_HELP
    )
    c5, c6, c7 = st.columns(3)
    cold = float(
        c5.number_input(
            "Median cold start, s",
            min_value=1.0,
            value=FITTED_MEDIAN_S,
            step=5.0,
            key="auto_cold",
            help=f"The fitted mixture ({FITTED_COLD_START.source}), the same as fleetwise "
            "autoscale-compare's; another median rescales it.",
        )
    )
    tick = float(c6.selectbox("Control tick", (5.0, 10.0, 15.0, 30.0), key="auto_tick", format_func=_secs))
    static = c7.checkbox("Also replay the static fleet sized for the peak", value=True, key="auto_static")
    if hi < lo:
        st.error("Max replicas must be at least min replicas.", icon=":material/error:")
        return
    if not chosen:
        st.warning("Select at least one policy.")
        return
    spec = AutoscaleSpec(
        model=inputs.model,
        gpu=str(gpu),
        tp=int(tp),
        policies=tuple(str(p) for p in chosen),
        ttft_s=inputs.ttft_s,
        tpot_s=inputs.tpot_s,
        min_replicas=lo,
        max_replicas=hi,
        cold_start_median_s=None if abs(cold - FITTED_MEDIAN_S) < 1e-9 else cold,
        tick_s=tick,
        static_reference=bool(static),
        seed=inputs.seed,
        engine=engine_choice("auto_engine", str(gpu)),
        precision=precision_choice("auto_precision"),
    )
    clicked = st.button("Run policies", type="primary", key="auto_run", icon=":material/play_arrow:")
    last = remember_run("auto_request", (src, inputs.load_factor, inputs.seed, spec), clicked)
    if last is None:
        st.caption(
            "Press **Run policies** to replay the trace once per policy, each in the loop with cold starts "
            "(about 2 s per policy per 20,000 requests, after a one-off capacity calibration)."
        )
        _cold_start_section(inputs.seed, spec.cold_start_median_s)
        return
    cmp = computed("auto_request", autoscale_job, last, label="Comparing autoscalers")
    if cmp is None:
        return
    run_spec: AutoscaleSpec = last[3]
    table = cmp.table()
    best = table.filter(pl.col("attainment") >= 0.99).sort("gpu_hours")
    cheapest = (
        f"cheapest at >= 99 % SLO attainment: **{best['policy'][0]}** ({best['gpu_hours'][0]:,.2f} GPU-hours)"
        if best.height
        else "no policy reaches 99 % SLO attainment: allow more replicas or a looser SLO"
    )
    (st.success if best.height else st.warning)(
        f"{len(cmp.results)} policies replayed on {run_spec.model} TP{run_spec.tp} {run_spec.gpu}; one "
        f"replica holds {cmp.capacity.rps:,.2f} req/s at the SLO, {cmp.initial_replicas} ready at the start; "
        + cheapest
        + "."
    )
    show_facts(policy_table(table))
    show_figure(figures.autoscale_bars_figure(table), key="auto_bars")
    stats = cache.stats(last[0], last[1], last[2], 60.0)
    show_figure(figures.autoscale_timeline_figure(cmp.timelines(), stats), key="auto_timeline")
    st.caption(
        "Violation minutes: minutes whose arrivals met the SLO less often than the floor; burst minutes: "
        "minutes with arrivals well above the median minute. Every policy sees the same cold-start draws."
    )
    _cold_start_section(inputs.seed, spec.cold_start_median_s)


def _secs(s: float) -> str:
    return f"{s:g} s"


FITTED_MEDIAN_S = round(FITTED_COLD_START.quantile(0.5), 1)
"""The median cold start of the fitted mixture, the page's default."""


def _cold_start_section(seed: int, median_s: float | None) -> None:
    with st.expander("Cold-start distribution (shared by every policy)"):
        cs = cold_start_for(ColdStartShape.MIXTURE, median_s=median_s)
        samples = cs.sample(np.random.default_rng(seed), 5000)
        show_figure(figures.cold_start_figure(samples, median_s=cs.quantile(0.5)), key="auto_coldstart")
        st.caption(f"Source: {cs.source}.")

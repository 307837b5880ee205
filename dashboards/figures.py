"""Plotly figures of library results, shared by the Streamlit pages and the HTML report.

Every function takes what the library returned (``TraceStats``, ``RequestTrace``, ``PlanResult``,
``SimResult``, per-GPU expert loads) and only lays it out: binning for a histogram and thinning a CDF
to a few thousand points are presentation, not analysis. No function computes a number that a page
then reports as a result.

>>> import polars as pl
>>> from traces.stats import describe
>>> s = describe(pl.DataFrame({"arrival_s": [0.0, 30.0, 90.0], "input_tokens": [5, 6, 7],
...                            "output_tokens": [1, 2, 3]}))
>>> arrival_rate_figure(s).layout.yaxis.title.text
'requests / s'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from planner.plan import PlanReport
from planner.sim import SimResult
from planner.spares_study import SparesStudy
from planner.tier_study import TierStudy
from traces.schema import RequestTrace
from traces.stats import TraceStats

PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
"""Scenario colours, in order (colour-blind-safe enough for up to four lines)."""

_CDF_POINTS = 2000


def _layout(fig: go.Figure, title: str, *, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 45},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
    )
    return fig


def _legend_under_title(fig: go.Figure) -> go.Figure:
    """Legend on its own line between a long title and the plot (side by side they overlapped)."""
    fig.update_layout(
        margin={"t": 95},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0.0, "xanchor": "left"},
    )
    return fig


def arrival_rate_figure(stats: TraceStats) -> go.Figure:
    """Requests per second in each window of :func:`traces.stats.describe`'s series."""
    s = stats.series
    fig = go.Figure(
        go.Scatter(
            x=(s["start_s"] / 60.0).to_list(),
            y=s["rate_rps"].to_list(),
            mode="lines",
            line={"shape": "hv", "color": PALETTE[0]},
            name="arrival rate",
        )
    )
    fig.add_hline(
        y=stats.mean_rate_rps,
        line_dash="dot",
        line_color="grey",
        annotation_text=f"mean {stats.mean_rate_rps:.2f} req/s",
    )
    fig.update_xaxes(title_text="minutes from first request")
    fig.update_yaxes(title_text="requests / s", rangemode="tozero")
    return _layout(fig, f"Arrival rate ({stats.window_s:g} s windows)")


def token_demand_figure(stats: TraceStats) -> go.Figure:
    """Prefill and decode token demand per second (the trace's per-window series)."""
    s = stats.series
    x = (s["start_s"] / 60.0).to_list()
    fig = go.Figure()
    fig.add_scatter(
        x=x,
        y=s["prefill_tokens_per_s"].to_list(),
        mode="lines",
        name="prompt tokens/s",
        line={"shape": "hv", "color": PALETTE[0]},
    )
    fig.add_scatter(
        x=x,
        y=s["decode_tokens_per_s"].to_list(),
        mode="lines",
        name="output tokens/s",
        line={"shape": "hv", "color": PALETTE[1]},
    )
    fig.update_xaxes(title_text="minutes from first request")
    fig.update_yaxes(title_text="tokens / s", rangemode="tozero")
    return _layout(fig, "Token demand")


def length_figure(trace: RequestTrace, *, bins: int = 60) -> go.Figure:
    """Histograms of prompt and output lengths on log-spaced bins (lengths span 1 to 100k tokens)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("prompt tokens", "output tokens"))
    for col, (name, color) in enumerate((("input_tokens", PALETTE[0]), ("output_tokens", PALETTE[1])), 1):
        values = trace.df[name].to_numpy().astype(np.float64)
        values = values[values > 0]
        if values.size == 0:
            continue
        edges = np.unique(np.geomspace(max(values.min(), 1.0), max(values.max(), 2.0), bins + 1))
        counts, edges = np.histogram(values, bins=edges)
        fig.add_bar(
            x=np.sqrt(edges[:-1] * edges[1:]),
            y=counts,
            width=np.diff(edges),
            marker_color=color,
            name=name,
            showlegend=False,
            row=1,
            col=col,
        )
        fig.update_xaxes(type="log", title_text="tokens (log scale)", row=1, col=col)
    fig.update_yaxes(title_text="requests", row=1, col=1)
    return _layout(fig, "Request lengths", height=340)


def plan_cost_figure(report: PlanReport) -> go.Figure:
    """Cheapest feasible candidate per GPU type and role, in $ per million requests; plan's GPUs in green."""
    fig = go.Figure()
    sc = report.scored
    if sc.height:
        best = (
            sc.filter(pl.col("feasible"))
            .group_by("gpu", "role")
            .agg(pl.col("usd_per_million_requests").min())
            .sort("usd_per_million_requests")
        )
        used = {c.gpu for c in report.plan.configs}
        fig.add_bar(
            x=[f"{g} ({r})" for g, r in zip(best["gpu"], best["role"], strict=True)],
            y=best["usd_per_million_requests"].to_list(),
            marker_color=[PALETTE[2] if g in used else "#9aa5b1" for g in best["gpu"]],
            hovertemplate="%{x}: $%{y:.2f} per million requests<extra></extra>",
        )
    fig.update_yaxes(title_text="$ per million requests", rangemode="tozero")
    return _layout(fig, "Cheapest feasible candidate per GPU type (plan's GPU types in green)")


def plan_windows_figure(report: PlanReport) -> go.Figure:
    """Replicas of each configuration per planning window (stacked), and the window's demand."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    wins = report.problem.windows
    x = [w.start_s / 60.0 for w in wins]
    for i, c in enumerate(report.plan.configs):
        fig.add_bar(
            x=x,
            y=[report.plan.replicas(k).get(c.key, 0) for k in range(len(wins))],
            name=c.key,
            marker_color=PALETTE[i % len(PALETTE)],
            secondary_y=False,
        )
    fig.add_scatter(
        x=x,
        y=[w.demand_rps for w in wins],
        name="demand req/s",
        mode="lines+markers",
        line={"color": "black", "shape": "hv"},
        secondary_y=True,
    )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="window start, minutes")
    fig.update_yaxes(title_text="replicas", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="demand, req/s", rangemode="tozero", secondary_y=True)
    return _layout(fig, "Replicas per window")


def verification_windows_figure(report: PlanReport) -> go.Figure:
    """The presented plan's replay window by window: TTFT and TPOT at the SLO's percentile as a share of
    their targets (at or under 1 meets), and the GPUs each window ran."""
    check = report.verification[0]
    slo = report.slo
    x = [c.start_s / 60.0 for c in check.by_window]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=x, y=[c.gpus for c in check.by_window], name="GPUs", marker_color="#d9d9d9",
                secondary_y=True)
    lines = [(f"TTFT {slo.stat('ttft')} / target", [c.ttft_at_slo_s for c in check.by_window], slo.ttft_s),
             (f"TPOT {slo.stat('tpot')} / target", [c.tpot_at_slo_s for c in check.by_window], slo.tpot_s)]
    if slo.e2e_s is not None:
        lines.append((f"E2E {slo.stat('e2e')} / target",
                      [math.nan if c.e2e_at_slo_s is None else c.e2e_at_slo_s for c in check.by_window],
                      slo.e2e_s))
    for i, (name, vals, target) in enumerate(lines):
        fig.add_scatter(x=x, y=[v / target for v in vals], name=name, mode="lines+markers",
                        line={"color": PALETTE[i % len(PALETTE)]}, secondary_y=False)
    fig.add_hline(y=1.0, line={"color": "black", "dash": "dash"}, annotation_text="target")
    fig.update_xaxes(title_text="window start, minutes")
    fig.update_yaxes(title_text="replayed latency / target", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="GPUs", rangemode="tozero", secondary_y=True, showgrid=False)
    return _layout(fig, f"The presented plan in replay, window by window ({check.label})")


def class_targets_figure(report: PlanReport) -> go.Figure:
    """With SLO classes: each class's replayed TTFT and TPOT (at the SLO's statistic) as a share of its
    own targets, and the cost of each fleet layout weighed (a shared fleet, a pool per class)."""
    check = report.verification[0].by_class if report.verification else ()
    ts, ps = report.slo.stat("ttft"), report.slo.stat("tpot")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("each class against its own targets",
                                                        "fleet layouts weighed"))
    names = [c.name for c in check]
    bars = [(f"TTFT {ts} / target", [c.ttft_at_slo_s / c.ttft_target_s for c in check]),
            (f"TPOT {ps} / target", [c.tpot_at_slo_s / c.tpot_target_s for c in check])]
    if any(c.e2e_target_s is not None for c in check):
        bars.append((f"E2E {report.slo.stat('e2e')} / target",
                     [c.e2e_at_slo_s / c.e2e_target_s if c.e2e_at_slo_s is not None and c.e2e_target_s
                      else math.nan for c in check]))
    for i, (label, vals) in enumerate(bars):
        fig.add_bar(x=names, y=vals, name=label, marker_color=PALETTE[i % len(PALETTE)], row=1, col=1)
    fig.add_hline(y=1.0, line={"color": "black", "dash": "dash"}, row=1, col=1)
    options = report.classes.options if report.classes is not None else ()
    fig.add_bar(x=[o.layout + (" (presented)" if i == 0 else "") for i, o in enumerate(options)],
                y=[o.cost_usd or 0.0 for o in options], name="cost $",
                marker_color=["#2ca02c" if o.verified else "#d62728" for o in options],
                text=["verified" if o.verified else ("no plan" if o.cost_usd is None else "missed")
                      for o in options], row=1, col=2)
    fig.update_yaxes(title_text="replayed latency / target", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="USD over the trace", rangemode="tozero", row=1, col=2)
    return _layout(fig, "SLO classes in the presented plan's replay")


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their cumulative fractions, thinned to about ``_CDF_POINTS`` points."""
    v = np.sort(values[np.isfinite(values) & (values > 0)])  # log axis: zero latencies cannot be drawn
    if v.size == 0:
        return v, v
    q = np.arange(1, v.size + 1) / v.size
    if v.size > _CDF_POINTS:
        idx = np.unique(
            np.concatenate(
                [
                    np.linspace(0, v.size - 1, _CDF_POINTS).astype(np.int64),
                    np.arange(max(v.size - 200, 0), v.size),
                ]
            )
        )  # keep the tail
        return v[idx], q[idx]
    return v, q


def latency_cdf_figure(results: Mapping[str, SimResult], *, metric: str, slo_s: float) -> go.Figure:
    """Empirical CDF of ``ttft_s`` or ``tpot_s`` per scenario, with the SLO and the p99 line.

    The x axis is logarithmic: latencies span milliseconds to minutes when a fleet is overloaded.
    """
    label = {"ttft_s": "time to first token", "tpot_s": "time per output token"}[metric]
    fig = go.Figure()
    slo_ms = slo_s * 1e3
    lo, hi = slo_ms, slo_ms
    for i, (name, res) in enumerate(results.items()):
        x, y = _ecdf(res.requests[metric].drop_nulls().to_numpy().astype(np.float64))
        if x.size:
            lo, hi = min(lo, float(x[0]) * 1e3), max(hi, float(x[-1]) * 1e3)
        fig.add_scatter(x=x * 1e3, y=y, mode="lines", name=name, line={"color": PALETTE[i % len(PALETTE)]})
    # On a log axis plotly places annotations in log10 units (shapes in data units): label by hand.
    fig.add_vline(x=slo_ms, line_dash="dash", line_color="black")
    fig.add_annotation(
        x=math.log10(slo_ms), y=0.05, text=f"SLO {slo_ms:g} ms ", showarrow=False, xanchor="right"
    )
    fig.add_hline(y=0.99, line_dash="dot", line_color="grey")
    fig.add_annotation(
        x=1.0, xref="paper", y=0.99, text="p99", showarrow=False, xanchor="right", yanchor="top"
    )
    fig.update_xaxes(range=[math.log10(lo / 1.5), math.log10(hi * 1.5)])
    fig.update_xaxes(title_text=f"{label}, ms (log scale)", type="log")
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02])
    return _layout(fig, f"{label.capitalize()}: CDF")


TIMELINE_PANELS: tuple[tuple[str, str, float], ...] = (
    ("waiting", "queued requests", 1.0),
    ("running", "running requests", 1.0),
    ("kv_usage", "KV cache used", 100.0),
    ("replicas", "replicas", 1.0),
    ("power_w", "power, kW", 1e-3),
)
"""Time-series columns of a replay, their axis titles and display scale (fraction -> %, W -> kW)."""


def prompt_sources_figure(result: SimResult) -> go.Figure:
    """Where the replay's prompt tokens came from: computed, HBM prefix cache, or each KV tier below it
    (the summary's counts, stacked in one bar)."""
    s = result.summary
    tiers = [(t.name, t.hit_tokens) for t in s.kv_tiers]
    hbm = s.cached_prefix_tokens - sum(n for _, n in tiers)
    parts = [("computed", s.prompt_tokens - s.cached_prefix_tokens), ("HBM prefix cache", hbm), *tiers]
    fig = go.Figure()
    for i, (name, n) in enumerate(parts):
        share = n / s.prompt_tokens if s.prompt_tokens else 0.0
        fig.add_trace(go.Bar(x=[share], y=["prompt tokens"], orientation="h", name=name,
                             marker_color=PALETTE[i % len(PALETTE)], text=[f"{share:.1%}"],
                             hovertemplate=f"{name}: {n:,} tokens (%{{x:.1%}})<extra></extra>"))
    fig.update_layout(barmode="stack", xaxis={"tickformat": ".0%", "range": [0, 1]})
    return _legend_under_title(_layout(fig, "Where prompt tokens came from", height=220))


def kv_tier_figure(study: TierStudy) -> go.Figure:
    """Cost per hour of each tier case's smallest fleet meeting the SLO: GPUs and tiers stacked, the GPU
    count on the bar (cases that met nothing are left out)."""
    met = [r for r in study.rows if r.met]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[r.case for r in met], y=[r.gpu_cost_per_hour for r in met], name="GPUs",
                         marker_color=PALETTE[0], text=[f"{r.gpus} GPUs" for r in met]))
    fig.add_trace(go.Bar(x=[r.case for r in met], y=[r.tier_cost_per_hour for r in met], name="KV tiers",
                         marker_color=PALETTE[2]))
    fig.update_layout(barmode="stack", yaxis_title="USD per hour")
    return _legend_under_title(_layout(fig, "Smallest fleet meeting the SLO, per set of KV tiers"))


def spares_figure(study: SparesStudy) -> go.Figure:
    """Availability under faults per spare count (bars), the target as a line, the cost on hover."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[str(r.spares) for r in study.rows], y=[r.availability for r in study.rows],
                         name="availability", marker_color=PALETTE[0],
                         customdata=[r.cost_per_hour for r in study.rows],
                         hovertemplate="%{x} spares: %{y:.2%} of windows, $%{customdata:,.2f}/h"
                                       "<extra></extra>"))
    fig.add_hline(y=study.target, line_dash="dash", line_color=PALETTE[1],
                  annotation_text=f"target {study.target:.1%}")
    fig.update_layout(xaxis_title="spare replicas", yaxis={"tickformat": ".0%", "range": [0, 1.02]})
    return _layout(fig, "Windows meeting the SLO under faults, per spare count")


def timeline_figure(results: Mapping[str, SimResult], *, panels: Sequence[str] | None = None) -> go.Figure:
    """Stacked timelines (queue, running, KV use, replicas, power) of one or more replays."""
    chosen = [p for p in TIMELINE_PANELS if panels is None or p[0] in panels]
    titles = [t if col != "kv_usage" else "KV cache used, %" for col, t, _ in chosen]
    fig = make_subplots(
        rows=len(chosen), cols=1, shared_xaxes=True, vertical_spacing=0.04, subplot_titles=titles
    )
    for i, (name, res) in enumerate(results.items()):
        ts = res.timeseries
        x = (ts["t_s"] / 60.0).to_list()
        for row, (col, _title, scale) in enumerate(chosen, 1):
            if col not in ts.columns:
                continue
            fig.add_scatter(
                x=x,
                y=(ts[col] * scale).to_list(),
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=row == 1,
                line={"color": PALETTE[i % len(PALETTE)], "width": 1.5},
                row=row,
                col=1,
            )
    for row in range(1, len(chosen) + 1):
        fig.update_yaxes(rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="minutes", row=len(chosen), col=1)
    return _layout(fig, "Timelines", height=170 * len(chosen) + 90)


def power_figure(result: SimResult, *, scope: str = "row", budget_w: float | None = None) -> go.Figure:
    """Power per ``scope`` (gpu/server/rack/row) over time from the replay's power table."""
    fig = go.Figure()
    if result.power is not None:
        p = result.power.filter(pl.col("scope") == scope)
        for i, ident in enumerate(p["id"].unique(maintain_order=True).to_list()[:16]):
            one = p.filter(pl.col("id") == ident)
            fig.add_scatter(
                x=(one["t_s"] / 60.0).to_list(),
                y=(one["power_w"] / 1e3).to_list(),
                mode="lines",
                name=ident,
                line={"color": PALETTE[i % len(PALETTE)], "width": 1.5},
            )
    if budget_w is not None:
        fig.add_hline(
            y=budget_w / 1e3,
            line_dash="dash",
            line_color="black",
            annotation_text=f"budget {budget_w / 1e3:,.1f} kW",
        )
    fig.update_xaxes(title_text="minutes")
    fig.update_yaxes(title_text="kW", rangemode="tozero")
    return _layout(fig, f"Power per {scope} (GPUs, from the perf model)")


def power_duration_figure(
    result: SimResult, *, scope: str = "row", budget_w: float | None = None
) -> go.Figure:
    """Power-duration curve: the share of time each power level is exceeded (sorted interval powers).

    Why this plot: it shows directly how much of the time a given budget would bind, the question
    behind power oversubscription.
    """
    fig = go.Figure()
    if result.power is not None:
        p = result.power.filter(pl.col("scope") == scope).group_by("t_s").agg(pl.col("power_w").sum())
        w = np.sort(p["power_w"].to_numpy())[::-1]
        share = np.arange(1, w.size + 1) / max(w.size, 1) * 100.0
        fig.add_scatter(x=share, y=w / 1e3, mode="lines", name=f"{scope} total", line={"color": PALETTE[0]})
    if budget_w is not None:
        fig.add_hline(
            y=budget_w / 1e3,
            line_dash="dash",
            line_color="black",
            annotation_text=f"budget {budget_w / 1e3:,.1f} kW",
        )
    fig.update_xaxes(title_text="% of time at or above", range=[0, 100])
    fig.update_yaxes(title_text="kW", rangemode="tozero")
    return _layout(fig, "Power-duration curve")


def replicas_figure(series: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> go.Figure:
    """Replica count over time, one step line per named series ``(t_s, replicas)``."""
    fig = go.Figure()
    for i, (name, (t, n)) in enumerate(series.items()):
        fig.add_scatter(
            x=np.asarray(t) / 60.0,
            y=list(n),
            mode="lines",
            name=name,
            line={"shape": "hv", "color": PALETTE[i % len(PALETTE)]},
        )
    fig.update_xaxes(title_text="minutes")
    fig.update_yaxes(title_text="replicas", rangemode="tozero")
    return _layout(fig, "Replicas")


def cold_start_figure(samples_s: np.ndarray, *, median_s: float) -> go.Figure:
    """Histogram of cold-start times drawn from the library's distribution."""
    fig = go.Figure(go.Histogram(x=samples_s, nbinsx=80, marker_color=PALETTE[3], name="cold start"))
    fig.add_vline(x=median_s, line_dash="dash", annotation_text=f"median {median_s:.1f} s")
    fig.update_xaxes(
        title_text="seconds from scale-up to serving", range=[0, float(np.quantile(samples_s, 0.98))]
    )
    fig.update_yaxes(title_text="draws")
    return _layout(fig, "Cold-start distribution", height=300)


def expert_heatmap(gpu_loads: np.ndarray, *, title: str, zmax: float | None = None) -> go.Figure:
    """``[layers, gpus]`` load relative to each layer's mean GPU load (1.0 = perfectly balanced)."""
    rel = gpu_loads / gpu_loads.mean(axis=1, keepdims=True)
    fig = go.Figure(
        go.Heatmap(
            z=rel,
            x=[f"GPU {g}" for g in range(rel.shape[1])],
            y=[f"layer {i}" for i in range(rel.shape[0])],
            colorscale="RdBu_r",
            zmid=1.0,
            zmin=0.0,
            zmax=zmax if zmax is not None else float(max(rel.max(), 2.0)),
            colorbar={"title": "load / mean"},
            hovertemplate="%{y}, %{x}: %{z:.2f} x mean<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=max(300, 18 * rel.shape[0] + 120))


POLICY_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
)
"""Autoscaling policies' colours (the static reference is drawn grey and dashed)."""


def _policy_style(i: int, name: str) -> dict[str, object]:
    if name.startswith("static"):
        return {"color": "#7f7f7f", "dash": "dash", "width": 1.5}
    return {"color": POLICY_COLORS[i % len(POLICY_COLORS)], "width": 1.5}


def autoscale_timeline_figure(timelines: pl.DataFrame, stats: TraceStats) -> go.Figure:
    """The trace's arrival rate above one panel of serving replicas per policy (``Comparison.timelines()``).

    Why one panel per policy on one time axis: replica counts of several policies overlap into an
    unreadable tangle on a shared plot, and a policy's line only means something next to the load it
    followed (a scale-up that lags a burst shows as a step to the right of the burst).
    """
    names = timelines["policy"].unique(maintain_order=True).to_list()
    top = float(timelines["ready"].max() or 1)  # type: ignore[arg-type]
    fig = make_subplots(
        rows=len(names) + 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        row_heights=[1.6] + [1.0] * len(names),
    )
    s = stats.series
    fig.add_scatter(
        x=(s["start_s"] / 60.0).to_list(),
        y=s["rate_rps"].to_list(),
        mode="lines",
        name="arrivals",
        line={"shape": "hv", "color": "black", "width": 1.2},
        showlegend=False,
        hovertemplate="%{y:.1f} req/s at %{x:.1f} min<extra></extra>",
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text=f"req/s ({stats.window_s:g} s)", rangemode="tozero", row=1, col=1)
    for i, name in enumerate(names, start=0):
        one = timelines.filter(pl.col("policy") == name)
        style = _policy_style(i, name)
        fig.add_scatter(
            x=(one["t_s"] / 60.0).to_list(),
            y=one["ready"].to_list(),
            mode="lines",
            name=name,
            showlegend=False,
            line={"shape": "hv", **style},
            fill="tozeroy",
            hovertemplate=f"{name}: %{{y}} replicas at %{{x:.1f}} min<extra></extra>",
            row=i + 2,
            col=1,
        )
        fig.update_yaxes(
            title_text=name,
            title_standoff=4,
            range=[0, top * 1.15],
            nticks=3,
            row=i + 2,
            col=1,
        )
    fig.update_xaxes(title_text="minutes", row=len(names) + 1, col=1)
    return _layout(fig, "Arrival rate and replicas serving, per policy", height=150 + 95 * len(names))


def autoscale_bars_figure(table: pl.DataFrame) -> go.Figure:
    """GPU-hours and SLO-violation minutes per policy (``Comparison.table()``), side by side."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("GPU-hours (less is cheaper)", "minutes below the SLO floor (fewer is better)"),
    )
    names = table["policy"].to_list()
    colors = [str(_policy_style(i, n)["color"]) for i, n in enumerate(names)]
    fig.add_bar(
        x=names,
        y=table["gpu_hours"].to_list(),
        marker_color=colors,
        showlegend=False,
        hovertemplate="%{x}: %{y:.2f} GPU-hours<extra></extra>",
        row=1,
        col=1,
    )
    fig.add_bar(
        x=names,
        y=table["violation_minutes"].to_list(),
        marker_color=colors,
        showlegend=False,
        hovertemplate="%{x}: %{y} violation minutes<extra></extra>",
        row=1,
        col=2,
    )
    if not any(table["violation_minutes"].to_list()):
        fig.add_annotation(
            x=0.5,
            y=0.5,
            xref="x2 domain",
            yref="y2 domain",
            text="no policy had a minute below the SLO floor",
            showarrow=False,
            font={"color": "grey"},
        )
    fig.update_yaxes(title_text="GPU-hours", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="minutes", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(tickangle=-30)
    return _layout(fig, "Cost and SLO violations per policy", height=380)


def pareto_figure(
    pareto: pl.DataFrame, *, nameplate: int, dynamo_servers: int, plan_servers: int
) -> go.Figure:
    """The oversubscription Pareto curve: servers in the row against time capped and p99 inflation.

    Filled markers are Pareto-optimal sizes, open ones dominated; vertical lines mark nameplate
    provisioning, Dynamo's cap x replicas rule and the verified plan (labels merge where they coincide).
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
    )
    n = pareto["servers"].to_list()
    on = pareto["pareto"].to_list()
    symbols = ["circle" if p else "circle-open" for p in on]
    extra = [f"{x:+.0f} % vs nameplate" for x in pareto["extra_servers_pct"].to_list()]
    series = (
        (1, "capped_fraction", "time capped", PALETTE[0]),
        (1, "hp_locked_fraction", "HP servers locked", PALETTE[3]),
        (2, "hp_p99_inflation", "HP p99 inflation", PALETTE[3]),
        (2, "lp_p99_inflation", "LP p99 inflation", PALETTE[1]),
    )
    for row, col, name, color in series:
        fig.add_scatter(
            x=n,
            y=(pareto[col] * 100.0).to_list(),
            mode="lines+markers",
            name=name,
            customdata=extra,
            marker={"symbol": symbols, "size": 10, "color": color, "line": {"width": 2, "color": color}},
            line={"color": color, "width": 1.5},
            hovertemplate=f"{name}: %{{y:.2f}} % at %{{x}} servers (%{{customdata}})<extra></extra>",
            row=row,
            col=1,
        )
    marks: dict[int, list[str]] = {}
    for x, label in ((nameplate, "nameplate"), (dynamo_servers, "Dynamo"), (plan_servers, "plan")):
        marks.setdefault(x, []).append(label)
    for x, labels in marks.items():
        color = PALETTE[2] if "plan" in labels else "grey"
        fig.add_vline(x=x, line_dash="dot", line_color=color, row="all", col=1)  # type: ignore[arg-type]
    # the marks' names go under their tick (annotations on the panels collided with titles and data)
    ticks = sorted(set(n) | set(marks))
    text = [f"{t}<br>{' / '.join(marks[t])}" if t in marks else str(t) for t in ticks]
    fig.update_yaxes(title_text="time capped, %", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="p99 inflation, %", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(tickvals=ticks, ticktext=text, row=2, col=1)
    fig.update_xaxes(title_text="servers in the row (filled markers: Pareto-optimal)", row=2, col=1)
    fig = _layout(fig, "Oversubscription: more servers under the same budget, at what price", height=540)
    return _legend_under_title(fig)


def capping_timeline_figure(
    t_s: Sequence[float],
    row_w: Sequence[float],
    row_unlocked_w: Sequence[float],
    hp_locked: Sequence[float],
    lp_locked: Sequence[float],
    *,
    budget_w: float,
    t1: float,
    t2: float,
    title: str,
) -> go.Figure:
    """Row power with and without the clock locks against the budget and thresholds; servers locked."""
    x = np.asarray(t_s) / 60.0
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[0.65, 0.35],
    )
    fig.add_scatter(
        x=x,
        y=np.asarray(row_unlocked_w) / 1e3,
        mode="lines",
        name="without capping",
        line={"color": "#9aa5b1", "width": 1},
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=x,
        y=np.asarray(row_w) / 1e3,
        mode="lines",
        name="with POLCA capping",
        line={"color": PALETTE[0], "width": 1.2},
        row=1,
        col=1,
    )
    for level, text, dash in (
        (1.0, "budget", "dash"),
        (t2, f"t2 {t2:.2f}", "dot"),
        (t1, f"t1 {t1:.2f}", "dot"),
    ):
        fig.add_hline(
            y=level * budget_w / 1e3,
            line_dash=dash,
            line_color="black" if level == 1.0 else "grey",
            annotation_text=f"{text} ({level * budget_w / 1e3:,.1f} kW)",
            annotation_position="bottom left" if level != 1.0 else "top left",
            row=1,  # type: ignore[arg-type]
            col=1,  # type: ignore[arg-type]
        )
    for name, ys, color in (("HP locked", hp_locked, PALETTE[3]), ("LP locked", lp_locked, PALETTE[1])):
        fig.add_scatter(
            x=x,
            y=list(ys),
            mode="lines",
            name=name,
            stackgroup="locked",
            line={"color": color, "width": 0.5},
            row=2,
            col=1,
        )
    if not (np.any(np.asarray(hp_locked) > 0) or np.any(np.asarray(lp_locked) > 0)):
        fig.add_annotation(
            x=0.5,
            y=0.5,
            xref="x domain",
            yref="y2 domain",
            text="no server was clock-locked at this size",
            showarrow=False,
            font={"color": "grey"},
        )
    fig.update_yaxes(title_text="row power, kW", row=1, col=1)
    fig.update_yaxes(title_text="servers locked", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="minutes", row=2, col=1)
    return _legend_under_title(_layout(fig, title, height=580))

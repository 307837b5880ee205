"""Self-contained HTML reports of a plan or a replay: the dashboard's tables and plots in one file.

Why one file with the plotting library inline: a batch job's report is mailed, attached to a ticket or
opened years later on a machine with no network; it must not fetch scripts from a CDN. plotly.js is
embedded once (about 4.5 MB), every figure after the first reuses it.

The builders take library results and return a string; only the ``report`` verb writes the file.

>>> html = render_report("t", [Section("Intro", text="hello")])
>>> html.startswith("<!DOCTYPE html>") and "hello" in html
True
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import plotly.graph_objects as go
import polars as pl

from dashboards import figures, tables
from planner.plan import PlanReport
from planner.sim import SimResult
from planner.spares_study import SparesStudy
from planner.tier_study import TierStudy
from traces.schema import RequestTrace
from traces.stats import TraceStats

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1f2933; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d9dee3; padding-bottom: 0.3rem; }
p.meta { color: #616e7c; margin-top: 0; }
p.headline { font-size: 1.05rem; font-weight: 600; background: #eef6ee; padding: 0.6rem 0.8rem;
             border-left: 4px solid #2ca02c; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d9dee3; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f5f7fa; }
"""


@dataclass(frozen=True)
class Section:
    """One heading with an optional headline, paragraph, tables and figures, in that order."""

    title: str
    headline: str = ""
    text: str = ""
    tables: tuple[pl.DataFrame, ...] = field(default=(), compare=False)
    figures: tuple[go.Figure, ...] = field(default=(), compare=False)


def _table_html(df: pl.DataFrame) -> str:
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else _html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in df.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(title: str, sections: Sequence[Section], *, generated: datetime | None = None) -> str:
    """The report as one HTML document (plotly.js inline once).

    Args:
        title: page title and heading.
        sections: what to show.
        generated: timestamp printed under the title (injected; omitted when ``None``).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_html.escape(title)}</h1>",
    ]
    if generated is not None:
        parts.append(f'<p class="meta">generated {generated.isoformat(timespec="seconds")} by fleetwise</p>')
    js_done = False
    for sec in sections:
        parts.append(f"<h2>{_html.escape(sec.title)}</h2>")
        if sec.headline:
            parts.append(f'<p class="headline">{_html.escape(sec.headline)}</p>')
        if sec.text:
            parts.append(f"<p>{_html.escape(sec.text)}</p>")
        parts.extend(_table_html(t) for t in sec.tables)
        for fig in sec.figures:
            parts.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=not js_done,
                    config={"displaylogo": False, "responsive": True},
                )
            )
            js_done = True
    parts.append("</body></html>")
    return "\n".join(parts)


def trace_section(trace: RequestTrace, stats: TraceStats, *, label: str) -> Section:
    """The Trace page as a report section."""
    return Section(
        title=f"Trace: {label}",
        tables=(tables.trace_table(trace, stats),),
        figures=(figures.arrival_rate_figure(stats), figures.length_figure(trace)),
    )


def plan_section(report: PlanReport, *, model: str) -> Section:
    """The Plan page as a report section."""
    figs: list[go.Figure] = []
    if report.plan.feasible:
        figs.append(figures.plan_windows_figure(report))
    if report.scored.height and int(report.scored["feasible"].sum()):
        figs.append(figures.plan_cost_figure(report))
    if report.classes is not None and report.verification:
        figs.append(figures.class_targets_figure(report))
    tabs = [tables.plan_table(report)] if report.plan.feasible else []
    if report.verification:
        tabs.append(tables.verification_table(report))
    if report.classes is not None:
        tabs += [tables.class_layouts_table(report), tables.layouts_table(report)]
    tabs.append(tables.candidates_table(report, limit=40))
    return Section(
        title="Plan",
        headline=tables.plan_headline(report, model),
        text=tables.plan_why(report),
        tables=tuple(tabs),
        figures=tuple(figs),
    )


def verified_plan_section(report: PlanReport) -> Section:
    """The presented plan's own replay (the check ``fleetwise plan`` ran), window by window: the report
    shows exactly what was verified, not a re-run of one configuration."""
    check = report.verification[0]
    verdict = "meets" if check.meets_slo else "misses"
    return Section(
        title=f"Replay: the presented plan ({check.label}), window by window",
        headline=(f"The presented plan {verdict} the SLO in replay: {check.replayed_attainment:.1%} of "
                  f"{check.requests:,} requests within both targets over {check.windows} replayed windows"),
        text=("Each replayed window's requests went through that window's replicas (queues empty at its "
              "start); a window running several configurations split its requests by their goodput."
              + (" Disaggregated plans are checked approximately (see the plan's notes)."
                 if check.approximate else "")),
        tables=(tables.verification_windows_table(report),),
        figures=(figures.verification_windows_figure(report),),
    )


def replay_section(result: SimResult, *, title: str, ttft_s: float, tpot_s: float,
                   engine: str = "") -> Section:
    """The Replay page as a report section (summary, SLO classes, CDFs, timelines); ``engine``: the line
    saying which engine model the numbers rest on (:func:`dashboards.scenario.engine_line`)."""
    named = {title: result}
    return Section(
        title=f"Replay: {title}",
        headline=tables.replay_headline(result),
        text=engine,
        tables=(tables.replay_table(result), tables.class_table(result)),
        figures=(
            figures.latency_cdf_figure(named, metric="ttft_s", slo_s=ttft_s),
            figures.latency_cdf_figure(named, metric="tpot_s", slo_s=tpot_s),
            figures.timeline_figure(named),
            *((figures.prompt_sources_figure(result),) if result.summary.cached_prefix_tokens else ()),
        ),
    )


def spares_section(study: SparesStudy, *, title: str, engine: str = "") -> Section:
    """Spare replicas against availability under faults (``plan --availability``) as a report section."""
    return Section(
        title=f"Spares under faults: {title}",
        headline=study.verdict(),
        text=(f"Availability: the share of {study.window_s:g} s windows (over {len(study.seeds)} fault "
              f"seeds) in which {study.window_target:.0%} of requests met the SLO, fail-stop faults at "
              f"{study.rates.fail_per_gpu_hour:.2e} per GPU-hour (Llama 3's published rate times a scale), "
              f"repair {study.rates.repair_s:g} s then a cold start. " + engine),
        tables=(tables.spares_table(study),),
        figures=(figures.spares_figure(study),),
    )


def kv_tier_section(study: TierStudy, *, title: str, engine: str = "") -> Section:
    """The KV-tier ablation (``fleetwise kv-tiers``) as a report section."""
    return Section(
        title=f"KV tiers: {title}",
        headline=study.verdict(),
        text=(f"Each case is the fewest replicas whose replay meets {study.target:.0%} of requests within "
              f"TTFT {study.ttft_s:g} s and TPOT {study.tpot_s:g} s ({study.replays} replays); tier "
              "capacities, bandwidths and prices from the catalog's kv_tiers (estimates marked there). "
              + engine),
        tables=(tables.kv_tier_table(study),),
        figures=(figures.kv_tier_figure(study),),
    )

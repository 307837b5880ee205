"""Tables of library results for people: the same rows on the pages and in the HTML report.

Each function formats what the library computed (no new numbers): it picks fields, orders rows and
turns seconds into milliseconds. ``plan_headline`` and ``replay_headline`` are the one-line answers the
pages print above the details; the browser test looks for them.

>>> _ms(0.0123)
'12.3'
"""

from __future__ import annotations

import math

import polars as pl

from planner.live.telemetry_fit import ERROR_KEYS, TelemetryCalibration, error_rows
from planner.plan import PlanReport
from planner.sim import SimResult
from planner.sim.summary_rows import summary_rows
from planner.spares_study import SparesStudy
from planner.tier_study import TierStudy
from solvers.capacity.problem import SLO
from traces.schema import RequestTrace
from traces.stats import TraceStats


def _ms(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x * 1e3:,.1f}"


def trace_table(trace: RequestTrace, stats: TraceStats) -> pl.DataFrame:
    """The trace's summary statistics and provenance as (statistic, value) rows."""
    rows: list[tuple[str, str]] = [
        ("source", f"{trace.meta.source} ({trace.meta.format})"),
        ("requests", f"{stats.requests:,}"),
        ("duration", f"{stats.duration_s / 60:,.1f} min"),
        ("mean rate", f"{stats.mean_rate_rps:,.2f} req/s"),
        (f"peak-to-mean ({stats.window_s:g} s windows)", f"{stats.peak_to_mean:.2f}"),
        ("inter-arrival CV", f"{stats.interarrival_cv:.2f}"),
    ]
    for name, ls in (("prompt tokens", stats.input_tokens), ("output tokens", stats.output_tokens)):
        rows.append(
            (
                f"{name}: mean / median / p90 / p99 / max",
                f"{ls.mean:,.0f} / {ls.median:,.0f} / {ls.p90:,.0f} / {ls.p99:,.0f} / {ls.max:,}",
            )
        )
    if stats.reasoning_tokens is not None:
        rs = stats.reasoning_tokens
        share = "" if stats.reasoning_share is None else f" ({stats.reasoning_share:.1%} of output)"
        rows.append(("reasoning tokens: mean / median / p99",
                     f"{rs.mean:,.0f} / {rs.median:,.0f} / {rs.p99:,.0f}{share}"))
    if stats.sessions is not None:
        ss = stats.sessions
        rows.append(("sessions (turns per session mean / p99)",
                     f"{ss.sessions:,} ({ss.turns_per_session.mean:.2f} / {ss.turns_per_session.p99:.0f})"))
    if stats.prefix_hit_ratio is not None:
        rows.append(("ideal prefix-cache hit ratio", f"{stats.prefix_hit_ratio:.1%}"))
    if stats.tenants is not None:
        rows.append(("tenants", f"{stats.tenants:,}"))
    if stats.models is not None:
        rows.append(("models", f"{stats.models:,}"))
    if trace.meta.dropped_rows:
        rows.append(("rows dropped by the loader", f"{trace.meta.dropped_rows:,}"))
    for note in trace.meta.repairs:
        rows.append(("repair", note))
    for key, value in trace.meta.extra:
        rows.append((key, value))
    return pl.DataFrame(rows, schema=["statistic", "value"], orient="row")


def plan_headline(report: PlanReport, model: str) -> str:
    """One line: the chosen fleet and its cost, or why there is none (a plan that failed its own replay is
    not presented as one)."""
    plan = report.plan
    if not plan.feasible:
        return f"No plan for {model}: {plan.note or report.why}"
    lines = report.cost_breakdown()
    fleet = " + ".join(f"{line.peak_replicas} x {line.config}" for line in lines)
    gpus = sum(line.peak_replicas * line.gpus_per_replica for line in lines)
    hours = report.duration_s / 3600.0
    text = (
        f"Plan: {fleet} for {model} (peak {gpus} GPUs), ${plan.objective_usd or 0.0:,.2f} for the trace's "
        f"{hours:.2f} h"
    )
    if report.verification and not report.verified:
        return (f"No verified plan for {model}: the best candidate ({fleet}, peak {gpus} GPUs) misses the "
                "SLO in replay, and so did every alternative")
    if report.verification:
        text += "; meets the SLO in replay"
    return text


def plan_why(report: PlanReport) -> str:
    """Why the planner chose what it chose, in its own words, with the solver's status."""
    plan = report.plan
    sc = report.scored
    n_ok = int(sc["feasible"].sum()) if sc.height else 0
    parts = [
        f"{sc.height:,} candidates scored, {n_ok:,} meet the SLO, {len(report.problem.configs)} went to the "
        f"solver; {len(report.problem.windows)} windows of {report.window_s:.0f} s."
    ]
    if plan.feasible:
        gap = plan.gap
        parts.append(
            f"Solver {plan.solver}: {plan.status.value} in {plan.wall_s:.2f} s, bound "
            f"${plan.bound_usd or 0.0:,.2f} (gap {0.0 if gap is None else gap * 100:.1f} %)"
            + (f", greedy baseline ${plan.greedy_usd:,.2f}." if plan.greedy_usd is not None else ".")
        )
    parts.append(f"Why: {report.why}")
    parts.extend(f"Note: {n}" for n in report.notes)
    if report.rounds > 1:
        parts.append(f"Verified in {report.rounds} plan-and-replay rounds.")
    parts.extend(f"Corrected: {c}" for c in report.corrections)
    return " ".join(parts)


def plan_table(report: PlanReport) -> pl.DataFrame:
    """The plan's cost breakdown: one row per configuration it uses (numbers formatted for reading)."""
    return pl.DataFrame(
        [
            {
                "configuration": line.config,
                "role": line.role,
                "GPUs/replica": str(line.gpus_per_replica),
                "peak replicas": str(line.peak_replicas),
                "mean replicas": f"{line.mean_replicas:,.2f}",
                "GPU-hours": f"{line.gpu_hours:,.2f}",
                "starts": str(line.starts),
                "$/GPU-hour": f"{line.price_per_gpu_hour:,.2f}",
                "cost $": f"{line.cost_usd:,.2f}",
            }
            for line in report.cost_breakdown()
        ],
        schema={
            k: pl.String
            for k in (
                "configuration",
                "role",
                "GPUs/replica",
                "peak replicas",
                "mean replicas",
                "GPU-hours",
                "starts",
                "$/GPU-hour",
                "cost $",
            )
        },
    )


def candidates_table(report: PlanReport, *, limit: int = 300) -> pl.DataFrame:
    """The scored candidates, feasible ones first by cost per request, with the reason for the others."""
    sc = report.scored
    if sc.height == 0:
        return pl.DataFrame(
            {"configuration": [], "note": []}, schema={"configuration": pl.String, "note": pl.String}
        )
    chosen = {c.key for c in report.plan.configs}
    return (
        sc.sort(["feasible", "usd_per_million_requests"], descending=[True, False], nulls_last=True)
        .head(limit)
        .select(
            pl.col("key").is_in(list(chosen)).replace_strict({True: "plan", False: ""}).alias("in plan"),
            pl.col("key").alias("configuration"),
            "role",
            "gpus",
            pl.col("goodput_rps").round(2).alias("goodput req/s"),
            pl.col("usd_per_million_requests").round(2).alias("$ per M requests"),
            pl.col("pred_ttft_p99_s").mul(1e3).round(1).alias("TTFT p99 ms (pred.)"),
            pl.col("pred_tpot_p99_s").mul(1e3).round(1).alias("TPOT p99 ms (pred.)"),
            pl.when(pl.col("feasible")).then(pl.lit("ok")).otherwise(pl.col("reason")).alias("note"),
        )
    )


def verification_table(report: PlanReport) -> pl.DataFrame:
    """Predicted vs replayed SLO attainment of the plan and its alternatives, the replayed goodput
    (requests/s meeting both targets) and the latencies at the SLO's statistic."""
    return pl.DataFrame(
        [
            {
                "variant": v.label + (" (approx.)" if v.approximate else ""),
                "configurations": ", ".join(v.configs),
                "cost $": round(v.cost_usd, 2),
                "windows": v.windows,
                "requests": v.requests,
                "predicted": f"{v.predicted_attainment:.2%}",
                "replayed": f"{v.replayed_attainment:.2%}",
                "goodput req/s": f"{v.goodput_rps:,.2f}",
                f"TTFT {report.slo.stat('ttft')} ms": _ms(v.replayed_ttft_at_slo_s),
                f"TPOT {report.slo.stat('tpot')} ms": _ms(v.replayed_tpot_at_slo_s),
                **_e2e_cell(report.slo, v.replayed_e2e_at_slo_s),
                "SLO met": "yes" if v.meets_slo else "no",
            }
            for v in report.verification
        ]
    )


def _e2e_cell(slo: SLO, value: float | None) -> dict[str, str]:
    """The end-to-end column of a verification row, when the SLO sets that target."""
    return {} if slo.e2e_s is None else {f"E2E {slo.stat('e2e')} s": "" if value is None else f"{value:,.2f}"}


def class_layouts_table(report: PlanReport) -> pl.DataFrame:
    """With SLO classes: each class's targets and requests, and how the presented plan's replay held
    each to its own targets (empty without classes)."""
    planning = report.classes
    if planning is None:
        return pl.DataFrame()
    check = {c.name: c for c in report.verification[0].by_class} if report.verification else {}
    ts, ps = report.slo.stat("ttft"), report.slo.stat("tpot")
    e2e = report.slo.e2e_s is not None or any(k.slo.e2e_s is not None for k in planning.classes)
    es = report.slo.stat("e2e")
    rows = []
    for name, n in planning.requests:
        c = check.get(name)
        target = next((k.slo for k in planning.classes if k.name == name), report.slo)
        rows.append({
            "class": name, "requests": n,
            f"TTFT target {ts} ms": _ms(target.ttft_s), f"TPOT target {ps} ms": _ms(target.tpot_s),
            **({f"E2E target {es} s": "" if target.e2e_s is None else f"{target.e2e_s:,.1f}"} if e2e else {}),
            "replayed": "" if c is None else f"{c.attainment:.2%}",
            f"TTFT {ts} ms": "" if c is None else _ms(c.ttft_at_slo_s),
            f"TPOT {ps} ms": "" if c is None else _ms(c.tpot_at_slo_s),
            **({f"E2E {es} s": "" if c is None or c.e2e_at_slo_s is None else f"{c.e2e_at_slo_s:,.2f}"}
               if e2e else {}),
            "met": "" if c is None else ("yes" if c.meets_slo else "no"),
        })
    return pl.DataFrame(rows)


def layouts_table(report: PlanReport) -> pl.DataFrame:
    """With SLO classes: the fleet layouts weighed (one shared fleet held to the strictest targets, a
    pool per class), presented first."""
    planning = report.classes
    if planning is None:
        return pl.DataFrame()
    return pl.DataFrame([
        {"layout": o.layout + (" (presented)" if i == 0 else ""),
         "cost $": None if o.cost_usd is None else round(o.cost_usd, 2),
         "peak GPUs": o.peak_gpus, "verified": "yes" if o.verified else "no", "note": o.note}
        for i, o in enumerate(planning.options)])


def verification_windows_table(report: PlanReport) -> pl.DataFrame:
    """The presented plan's replay window by window (what :func:`figures.verification_windows_figure`
    draws), at the SLO's percentile."""
    slo = report.slo
    return pl.DataFrame(
        [
            {
                "window": c.window,
                "start min": f"{c.start_s / 60:.0f}",
                "replicas": ", ".join(f"{n} x {k}" for k, n in c.replicas),
                "GPUs": c.gpus,
                "requests": c.requests,
                "attainment": f"{c.attainment:.2%}",
                f"TTFT {slo.stat('ttft')} ms": _ms(c.ttft_at_slo_s),
                f"TPOT {slo.stat('tpot')} ms": _ms(c.tpot_at_slo_s),
                **_e2e_cell(slo, c.e2e_at_slo_s),
                "TTFT p50 ms": _ms(c.ttft_p50_s),
                "TPOT p50 ms": _ms(c.tpot_p50_s),
            }
            for c in report.verification[0].by_window
        ]
    )


def replay_headline(result: SimResult) -> str:
    """One line: SLO attainment, p99 latencies and cost of a replay."""
    s = result.summary
    att = ", ".join(f"{c.slo_class} {c.attainment:.1%}" for c in s.classes)
    worst_ttft = max((c.ttft_p99_s for c in s.classes), default=math.nan)
    worst_tpot = max((c.tpot_p99_s for c in s.classes), default=math.nan)
    cost = f", ${s.cost_usd:,.2f}" if s.cost_usd is not None else ""
    return (
        f"Replay: {s.completed:,} of {s.requests:,} requests served on {s.replicas} replicas; "
        f"SLO attainment {att}; p99 TTFT {_ms(worst_ttft)} ms, p99 TPOT {_ms(worst_tpot)} ms; "
        f"{s.gpu_hours:,.2f} GPU-hours{cost}"
    )


def replay_table(result: SimResult) -> pl.DataFrame:
    """The replay summary as (metric, value) rows: :func:`planner.sim.summary_rows.summary_rows`, the same
    rows ``fleetwise replay`` prints."""
    return pl.DataFrame(list(summary_rows(result)), schema=["metric", "value"], orient="row")


def class_table(result: SimResult) -> pl.DataFrame:
    """Latency and attainment per SLO class (milliseconds)."""
    return pl.DataFrame(
        [
            {
                "class": c.slo_class,
                "requests": c.requests,
                "attainment": f"{c.attainment:.1%}",
                "TTFT p50 / p99 ms": f"{_ms(c.ttft_p50_s)} / {_ms(c.ttft_p99_s)}",
                "TPOT p50 / p99 ms": f"{_ms(c.tpot_p50_s)} / {_ms(c.tpot_p99_s)}",
                "target TTFT / TPOT ms": f"{_ms(c.ttft_target_s)} / {_ms(c.tpot_target_s)}",
                "p99 met": "yes" if c.p99_met else "no",
            }
            for c in result.summary.classes
        ]
    )


def compare_table(named: dict[str, SimResult]) -> pl.DataFrame:
    """Scenarios side by side: one column per scenario, one row per headline metric."""
    metrics: list[str] = [
        "replicas",
        "GPUs",
        "SLO attainment",
        "p99 TTFT ms",
        "p99 TPOT ms",
        "goodput req/s",
        "busy fraction",
        "GPU-hours",
        "energy kWh",
        "cost $",
    ]
    cols: dict[str, list[str]] = {"metric": metrics}
    for name, res in named.items():
        s = res.summary
        att = min((c.attainment for c in s.classes), default=math.nan)
        cols[name] = [
            str(s.replicas),
            str(s.replicas * s.gpus_per_replica),
            f"{att:.1%}",
            _ms(max((c.ttft_p99_s for c in s.classes), default=math.nan)),
            _ms(max((c.tpot_p99_s for c in s.classes), default=math.nan)),
            f"{s.goodput_rps:,.2f}",
            f"{s.utilization:.1%}",
            f"{s.gpu_hours:,.2f}",
            "n/a" if s.energy_kwh is None else f"{s.energy_kwh:,.2f}",
            "n/a" if s.cost_usd is None else f"{s.cost_usd:,.2f}",
        ]
    return pl.DataFrame(cols)


def calibration_table(result: TelemetryCalibration) -> pl.DataFrame:
    """A telemetry fit's and back-test's signed errors (predicted / observed - 1), as ``calibrate`` prints."""
    rows = [{"window": w, "calibrated": cal, **{k: f"{errs[k]:+.1%}" for k in ERROR_KEYS}}
            for w, cal, errs in error_rows(result.fit, result.test)]
    return pl.DataFrame(rows)


def kv_tier_table(study: TierStudy) -> pl.DataFrame:
    """The KV-tier ablation, a row per case (what ``fleetwise kv-tiers`` prints)."""
    rows = []
    for r in study.rows:
        rows.append({
            "tiers": r.case,
            "GPUs": str(r.gpus) if r.met else "-",
            "attainment": f"{r.attainment:.2%}" if r.met else f"< {study.target:.0%} (best {r.ceiling:.1%})",
            "TTFT p99": f"{r.ttft_p99_s:.2f} s" if r.met else "",
            "prefix hits": f"{r.prefix_hit_ratio:.1%}" if r.met else "",
            "per tier": ", ".join(f"{n} {h:.1%}" for n, h in r.tier_hits),
            "GPUs $/h": f"{r.gpu_cost_per_hour:,.2f}" if r.met else "",
            "tiers $/h": f"{r.tier_cost_per_hour:,.2f}" if r.met else "",
            "total $/h": f"{r.cost_per_hour:,.2f}" if r.met else "",
            "vs above": r.pays,
        })
    return pl.DataFrame(rows)


def spares_table(study: SparesStudy) -> pl.DataFrame:
    """Spare replicas against availability under faults, a row per spare count (``plan --availability``)."""
    return pl.DataFrame([{
        "spares": str(r.spares), "GPUs": str(r.gpus), "availability": f"{r.availability:.2%}",
        "worst seed": f"{r.worst_seed:.2%}", "attainment": f"{r.attainment:.2%}",
        "faults": str(r.fail_events),
        "failed requests": str(r.failed), "$/h": f"{r.cost_per_hour:,.2f}",
        "spares $/h": f"{r.spare_cost_per_hour:,.2f}",
        "chosen": "yes" if r.spares == study.chosen else "",
    } for r in study.rows])

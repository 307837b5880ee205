"""Tables of library results for people: the same rows on the pages and in the HTML report.

Each function formats what the library computed (no new numbers): it picks fields, orders rows and
turns seconds into milliseconds. ``plan_headline`` and ``replay_headline`` are the one-line answers the
pages print above the details; the browser test looks for them.

>>> from planner.plan import Candidate, Demand, PlanResult
>>> d = Demand(peak_rate_rps=8.0, mean_rate_rps=5.5, mean_input_tokens=1000, mean_output_tokens=200,
...            duration_s=3600.0, requests=19800)
>>> c = Candidate(gpu="H100-SXM", tp=1, gpus_per_replica=1, feasible=True, reason="ok", replicas=2,
...               cost_per_hour=6.0)
>>> plan_headline(PlanResult(best=c, candidates=(c,), demand=d, hours=1.0), "Llama-3.1-8B")
'Plan: 2 x Llama-3.1-8B on H100-SXM (TP1) = 2 GPUs, $6.00/hour, $6.00 for the trace (1.00 h)'
"""

from __future__ import annotations

import math

import polars as pl

from planner.plan import PlanResult
from planner.sim import SimResult
from traces.schema import RequestTrace
from traces.stats import TraceStats


def _ms(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 1e3:,.1f}"


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


def plan_headline(plan: PlanResult, model: str) -> str:
    """One line: the chosen fleet and its cost, or that nothing meets the SLO."""
    b = plan.best
    if b is None:
        return f"No candidate meets the SLO for {model}: see the reasons in the table."
    return (
        f"Plan: {b.replicas} x {model} on {b.gpu} (TP{b.tp}) = {b.gpus_total} GPUs, "
        f"${b.cost_per_hour:,.2f}/hour, ${plan.total_cost:,.2f} for the trace ({plan.hours:.2f} h)"
    )


def plan_why(plan: PlanResult) -> str:
    """Why the planner chose what it chose, in its own terms (demand, capacity, the rule)."""
    d = plan.demand
    text = (
        f"Demand: peak {d.peak_rate_rps:,.2f} req/s (mean {d.mean_rate_rps:,.2f}) over 1-minute windows, "
        f"mean prompt {d.mean_input_tokens:,.0f} and output {d.mean_output_tokens:,.0f} tokens. "
    )
    feasible = sum(c.feasible for c in plan.candidates)
    text += f"{feasible} of {len(plan.candidates)} candidates meet the SLO; the cheapest feasible one wins"
    if plan.best is not None:
        b = plan.best
        text += (
            f": one {b.gpu} TP{b.tp} replica serves {b.replica_rps:,.2f} req/s at the target utilisation "
            f"(decode batch {b.decode_batch}, KV {b.kv_capacity_tokens:,} tokens), so "
            f"{b.replicas} replicas cover the peak."
        )
    else:
        text += "."
    return text


def plan_table(plan: PlanResult) -> pl.DataFrame:
    """Every candidate, feasible ones first by cost, with the planner's reason for the others."""
    rows = []
    for c in sorted(plan.candidates, key=lambda c: (not c.feasible, c.cost_per_hour, c.gpu, c.tp)):
        rows.append(
            {
                "chosen": "best" if c is plan.best else "",
                "GPU": c.gpu,
                "TP": c.tp,
                "replicas": c.replicas if c.feasible else None,
                "GPUs": c.gpus_total if c.feasible else None,
                "$/hour": round(c.cost_per_hour, 2) if c.feasible else None,
                "req/s per replica": round(c.replica_rps, 2) if c.feasible else None,
                "decode batch": c.decode_batch or None,
                "KV tokens": c.kv_capacity_tokens or None,
                "note": "ok" if c.feasible else c.reason,
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


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
    """The replay summary as (metric, value) rows."""
    s = result.summary
    rows: list[tuple[str, str]] = [
        ("requests (completed / rejected)", f"{s.requests:,} ({s.completed:,} / {s.rejected:,})"),
        ("replicas x GPUs per replica", f"{s.replicas} x {s.gpus_per_replica}"),
        ("makespan", f"{s.makespan_s:,.1f} s"),
        ("throughput", f"{s.throughput_rps:,.2f} req/s, {s.output_tokens_per_s:,.0f} output tok/s"),
        ("goodput (met SLO)", f"{s.goodput_rps:,.2f} req/s"),
        ("busy fraction", f"{s.utilization:.1%}"),
        ("preemptions", f"{s.preemptions:,}"),
        ("cached prefix tokens", f"{s.cached_prefix_tokens:,} of {s.prompt_tokens:,}"),
        ("GPU-hours", f"{s.gpu_hours:,.2f}"),
    ]
    if s.energy_kwh is not None:
        rows.append(("energy", f"{s.energy_kwh:,.2f} kWh"))
    if s.cost_usd is not None:
        rows.append(("cost", f"${s.cost_usd:,.2f}"))
    if s.violations:
        rows.append(("engine invariant violations", f"{s.violations:,}"))
    return pl.DataFrame(rows, schema=["metric", "value"], orient="row")


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
            "-" if s.energy_kwh is None else f"{s.energy_kwh:,.2f}",
            "-" if s.cost_usd is None else f"{s.cost_usd:,.2f}",
        ]
    return pl.DataFrame(cols)

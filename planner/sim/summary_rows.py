"""A replay's summary as (metric, value) rows: the one wording the CLI, the dashboard and reports share.

Why a module of its own: ``fleetwise replay`` prints the summary as a rich table, the dashboard and the
HTML report show it as a table too; when each surface chose its own rows they drifted apart (one showed
the fleet size, the other did not). The rows are formatted here once, from
:class:`~planner.sim.result.SimResult` fields only: nothing is computed that the result does not hold.

>>> from planner.sim import SimConfig, replay
>>> from planner.sim.testing import LinearPerf, poisson_trace
>>> res = replay(poisson_trace(50, 2.0, 0), LinearPerf(), config=SimConfig(replicas=2))
>>> rows = dict(summary_rows(res))
>>> rows["replicas x GPUs per replica"], rows["requests (completed / rejected)"]
('2 x 1', '50 (50 / 0)')
"""

from __future__ import annotations

from planner.sim.result import SimResult

VIOLATIONS_ROW = "engine invariant violations"
"""Name of the row that only appears when the engine broke an invariant (surfaces may highlight it)."""


def summary_rows(result: SimResult) -> tuple[tuple[str, str], ...]:
    """The replay's headline numbers as ``(metric, value)`` pairs, in reading order.

    Rows that do not apply are left out rather than shown empty: energy and cost need a GPU spec,
    the autoscaling row appears for pools whose autoscaler acted, the power row when capping was in the
    loop, and :data:`VIOLATIONS_ROW` only when the engine broke an invariant.

    Args:
        result: what :func:`planner.sim.replay` returned.

    Returns:
        Pairs of metric name and formatted value.
    """
    s = result.summary
    rows: list[tuple[str, str]] = [
        ("requests (completed / rejected)", f"{s.requests:,} ({s.completed:,} / {s.rejected:,})"),
        ("replicas x GPUs per replica", f"{s.replicas} x {s.gpus_per_replica}"),
        ("makespan", f"{s.makespan_s:,.1f} s"),
        ("throughput", f"{s.throughput_rps:,.2f} req/s, {s.output_tokens_per_s:,.0f} output tok/s"),
        ("goodput (met SLO)", f"{s.goodput_rps:,.2f} req/s"),
        ("busy fraction", f"{s.utilization:.1%}"),
        ("preemptions", f"{s.preemptions:,}"),
        ("cached prefix tokens",
         f"{s.cached_prefix_tokens:,} of {s.prompt_tokens:,} ({s.prefix_hit_ratio:.1%})"
         + ("" if s.prefix_hit_ratio_bound is None
            else f"; one LRU cache of the fleet's KV would hit {s.prefix_hit_ratio_bound:.1%}")),
        ("GPU-hours", f"{s.gpu_hours:,.2f}"),
    ]
    if s.sessions is not None:
        ss = s.sessions
        rows.append((f"session completion ({'closed' if ss.closed_loop else 'open'} loop)",
                     f"p50 {ss.p50_s:,.1f} s / p99 {ss.p99_s:,.1f} s / max {ss.max_s:,.1f} s over "
                     f"{ss.sessions:,} sessions ({ss.turns_mean:.1f} turns each)"))
    if s.answers is not None:
        a = s.answers
        rows.append(("time to first answer token (after reasoning)",
                     f"p50 {a.p50_s:,.2f} s / p99 {a.p99_s:,.2f} s / max {a.max_s:,.1f} s; reasoning is "
                     f"{a.reasoning_share:.1%} of the output"))
    for t in s.kv_tiers:  # right under the prefix row: what each tier below HBM served
        rows.insert(rows.index(("GPU-hours", f"{s.gpu_hours:,.2f}")), (
            f"KV tier {t.name}",
            f"{t.hit_tokens:,} prompt tokens ({t.hit_ratio:.1%}) loaded at first admission; "
            f"{t.loaded_gb:,.1f} GB read in {t.load_s:,.1f} s of loads, {t.stored_gb:,.1f} GB written; "
            f"about {t.prefill_s_saved:,.0f} s of prefill saved (est.)"))
    if s.rejected and s.kv_capacity_tokens:
        rows.insert(1, ("rejected: fit nowhere",
                        f"{s.rejected:,} request{'s need' if s.rejected > 1 else ' needs'} more KV than a "
                        "replica's HBM holds "
                        f"({s.kv_capacity_tokens:,} tokens; the longest {s.longest_rejected_tokens:,}): a "
                        "larger TP, fp8 KV or a long-context pool would hold them"))
    if s.energy_kwh is not None:
        rows.append(("energy", f"{s.energy_kwh:,.2f} kWh"))
    if s.cost_usd is not None:
        rows.append(("cost", f"${s.cost_usd:,.2f}"))
    for p in result.pools:
        if p.scale_ups or p.scale_downs:
            rows.append(
                (
                    f"autoscaling ({p.name})",
                    f"{p.scale_ups} scale-ups, {p.scale_downs} scale-downs, peak {p.peak_replicas} replicas",
                )
            )
    if result.capping is not None:
        cap = result.capping
        rows.append(
            (
                "row power (capping in the loop)",
                f"peak {cap.peak_row_w:,.0f} W / mean {cap.mean_row_w:,.0f} W of {cap.row_budget_w:,.0f} W; "
                f"over budget {cap.over_budget_s:,.0f} s, capped {cap.capped_s:,.0f} s, "
                f"brake events {cap.brake_events}",
            )
        )
    f = result.faults
    if f is not None:
        rows.append(("faults in the loop",
                     f"{f.fail_events} fail-stop, {f.slow_events} straggler episodes; {f.lost:,} request "
                     f"attempts lost, {f.retried:,} retried, {f.failed:,} failed after the retry budget"))
        if f.flags or f.replaced:
            d = f.detection_delay_s
            delay = f"median detection delay {d[len(d) // 2]:.0f} s" if d else "no episode detected"
            rows.append(("straggler detector",
                         f"{f.flags} flags ({f.true_flags} on slowed replicas, {f.flags - f.true_flags} "
                         f"false); {delay}; {f.replaced} replicas drained and replaced"))
    if s.violations:
        rows.append((VIOLATIONS_ROW, f"{s.violations:,}"))
    return tuple(rows)

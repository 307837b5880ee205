"""Plans for a trace whose requests carry SLO classes: one shared fleet, or a pool per class.

Requests that share a replica share its batches, so a shared fleet must give every request the
strictest class's latencies; a pool per class lets a loose class (batch jobs) run larger, slower batches
on fewer GPUs, but gives up pooling the classes' bursts and rounds each pool up to whole replicas. Which
is cheaper depends on the classes' targets and shares, so both are planned, each through the whole
plan-then-replay loop, and the cheaper one that passed its replay (every class against its own targets)
is presented; the other is kept as an option with its cost.

Pools per class are planned one after the other, strictest first, each within the inventory and power
the earlier pools left at their busiest window (conservative where the classes peak at different times).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import polars as pl

from planner.plan.sizing import (
    ClassPlanning,
    LayoutOption,
    PlanReport,
    PlanRequest,
    ScoreMap,
    plan_pool,
)
from planner.plan.slo_classes import OTHER, labels, slo_of
from planner.plan.verify import MapFn, plan_variant, verify
from solvers.capacity import (
    Allocation,
    Binding,
    CapacityPlan,
    CapacityProblem,
    Config,
    Window,
    demand_windows,
    length_mix,
)
from solvers.status import SolveStatus
from traces.schema import RequestTrace

SHARED = "shared"
PER_CLASS = "per-class"


def _window_use(report: PlanReport, w: int) -> tuple[dict[str, int], float]:
    """GPUs per type and watts that the plan runs in window ``w``."""
    by_key = {c.key: c for c in report.plan.configs}
    gpus: dict[str, int] = {}
    for k, n in report.plan.replicas(w).items():
        gpus[by_key[k].gpu] = gpus.get(by_key[k].gpu, 0) + by_key[k].gpus * n
    return gpus, sum(by_key[k].power_w * n for k, n in report.plan.replicas(w).items())


def peak_gpus(report: PlanReport) -> int:
    """GPUs in the plan's busiest window (0 without a plan)."""
    return max((sum(_window_use(report, w)[0].values()) for w in range(len(report.problem.windows))),
               default=0)


def _peak_use(report: PlanReport) -> tuple[dict[str, int], float]:
    """GPUs per type and watts in the plan's busiest window for each (what a later pool cannot use)."""
    gpus: dict[str, int] = {}
    watts = 0.0
    for w in range(len(report.problem.windows)):
        per, w_watts = _window_use(report, w)
        for g, n in per.items():
            gpus[g] = max(gpus.get(g, 0), n)
        watts = max(watts, w_watts)
    return gpus, watts


def _option(layout: str, report: PlanReport | None, note: str = "") -> LayoutOption:
    if report is None or not report.plan.feasible:
        return LayoutOption(layout=layout, cost_usd=None, verified=False, peak_gpus=0,
                            note=note or (report.plan.note if report is not None else ""))
    cost = report.verification[0].cost_usd if report.verification else report.plan.objective_usd
    return LayoutOption(layout=layout, cost_usd=cost, verified=report.verified, peak_gpus=peak_gpus(report),
                        note=note)


def _rename(c: Config, name: str) -> Config:
    """A class pool's configuration: its key names the class; ``other`` serves what no pool claims."""
    return replace(c, key=f"{c.key} [{name}]", slo_class="" if name == OTHER else name)


def _merge(trace: RequestTrace, request: PlanRequest, parts: list[tuple[str, PlanReport]],
           replay_map: MapFn) -> PlanReport:
    """The class pools as one plan, replayed together (every class against its own targets)."""
    first = parts[0][1]
    n_win = len(first.problem.windows)
    windows = tuple(Window(start_s=w.start_s, duration_s=w.duration_s,
                           demand_rps=sum(p.problem.windows[i].demand_rps for _n, p in parts))
                    for i, w in enumerate(first.problem.windows))
    configs = tuple(_rename(c, n) for n, p in parts for c in p.plan.configs)
    allocations = tuple(Allocation(window=a.window, config=f"{a.config} [{n}]", replicas=a.replicas)
                        for n, p in parts for a in p.plan.allocations)
    statuses = {p.plan.status for _n, p in parts}
    # the merged plan is proven optimal only when every pool's is (each within what it was left)
    weaker = (SolveStatus.UNKNOWN, SolveStatus.GREEDY, SolveStatus.FEASIBLE)
    status = next((s for s in weaker if s in statuses), SolveStatus.OPTIMAL)
    bounds = [p.plan.bound_usd for _n, p in parts]
    greedy = [p.plan.greedy_usd for _n, p in parts]
    plan = CapacityPlan(
        status=status, solver="+".join(sorted({p.plan.solver for _n, p in parts})),
        objective_usd=sum(p.plan.objective_usd or 0.0 for _n, p in parts),
        bound_usd=None if any(b is None for b in bounds) else sum(b or 0.0 for b in bounds),
        greedy_usd=None if any(g is None for g in greedy) else sum(g or 0.0 for g in greedy),
        wall_s=sum(p.plan.wall_s for _n, p in parts), allocations=allocations, configs=configs,
        bindings=tuple(Binding(name=f"[{n}] {b.name}", window=b.window, used=b.used, limit=b.limit,
                               tight=b.tight) for n, p in parts for b in p.plan.bindings),
        note="; ".join(f"[{n}] {p.plan.note}" for n, p in parts if p.plan.note), windows=windows)
    problem = CapacityProblem(
        configs=tuple(_rename(c, n) for n, p in parts for c in p.problem.configs), windows=windows,
        inventory=request.inventory, power_budget_w=request.power_budget_w,
        disaggregation=request.disaggregation, max_configs_per_role=request.max_configs_per_role,
        min_dwell_windows=request.min_dwell_windows)
    t0 = time.perf_counter()
    mix = length_mix(trace)
    check = verify(trace, [plan_variant(plan)], model=request.model, gpus={g.name: g for g in request.gpus},
                   windows=windows, mix=mix, slo=request.slo, max_windows=request.verify_windows,
                   seed=request.seed, map_fn=replay_map, expert_imbalance=request.expert_imbalance,
                   engine=request.engine, classes=request.classes) if request.verify else []
    verify_s = time.perf_counter() - t0
    frames = [p.scored.with_columns(pl.lit(n).alias("slo_class")) for n, p in parts if p.scored.height]
    scored = pl.concat(frames, how="diagonal_relaxed") if frames else first.scored
    notes: list[str] = []
    for n, p in parts:
        for line in p.notes:
            if line not in notes and not any(line in x for x in notes):
                notes.append(line if all(line in q.notes for _m, q in parts) else f"[{n}] {line}")
    trace_demand = demand_windows(trace, window_s=first.window_s, burst_s=request.burst_s,
                                  load_factor=request.load_factor, duration_s=trace.duration_s)
    assert len(trace_demand) == n_win, "class pools planned on one window grid"
    return PlanReport(
        trace_source=trace.meta.source, requests=trace.num_requests, duration_s=trace.duration_s,
        window_s=first.window_s, mix=mix, scored=scored, problem=problem, plan=plan,
        why="; ".join(f"[{n}] {p.why}" for n, p in parts), verification=tuple(check),
        score_s=sum(p.score_s for _n, p in parts), solve_s=sum(p.solve_s for _n, p in parts),
        verify_s=sum(p.verify_s for _n, p in parts) + verify_s, notes=tuple(notes),
        rounds=max(p.rounds for _n, p in parts),
        corrections=tuple(f"[{n}] {c}" for n, p in parts for c in p.corrections),
        measured_gpus=first.measured_gpus, slo=request.slo,
        demand_rps=tuple(w.demand_rps for w in trace_demand))


def _per_class(trace: RequestTrace, lab: np.ndarray, request: PlanRequest, *, score_map: ScoreMap,
               replay_map: MapFn) -> tuple[PlanReport | None, str]:
    """A pool per class, strictest first, each within what the earlier ones left; None (and why) when a
    class has no plan that passed its replay."""
    names = [c.name for c in sorted(request.classes, key=lambda c: (c.slo.tpot_s, c.slo.ttft_s))
             if bool((lab == c.name).any())]
    if bool((lab == OTHER).any()):
        names.append(OTHER)
    inventory = dict(request.inventory)
    power = request.power_budget_w
    parts: list[tuple[str, PlanReport]] = []
    for name in names:
        sub = RequestTrace(df=trace.df.filter(pl.Series(lab == name)), meta=trace.meta)
        part_request = replace(request, slo=slo_of(name, request.slo, request.classes), classes=(),
                               inventory=tuple(inventory.items()), power_budget_w=power)
        report = plan_pool(sub, part_request, score_map=score_map, replay_map=replay_map,
                           span_s=trace.duration_s)
        if not report.plan.feasible:
            return None, f"no pool for {name}: {report.plan.note}"
        if report.verification and not report.verified:
            return None, f"the {name} pool missed its replay"
        parts.append((name, report))
        used, watts = _peak_use(report)
        for g, n in used.items():
            if g in inventory:
                inventory[g] = max(0, inventory[g] - n)
        if power is not None:
            power = max(power - watts, 1e-9)
    return _merge(trace, request, parts, replay_map), ""


def plan_by_class(trace: RequestTrace, request: PlanRequest, *, score_map: ScoreMap,
                  replay_map: MapFn) -> PlanReport:
    """The cheaper verified of one shared fleet and a pool per class (see the module docstring)."""
    lab = labels(trace, request.classes)
    shared = plan_pool(trace, request, score_map=score_map, replay_map=replay_map)
    pools, why_not = _per_class(trace, lab, request, score_map=score_map, replay_map=replay_map)
    options = {SHARED: _option(SHARED, shared), PER_CLASS: _option(PER_CLASS, pools, why_not)}
    # the cheapest that passed its replay (without replays: the cheapest found), the shared fleet on a tie
    # or when none qualifies (it is then presented as the failed candidate it is)
    ok = [k for k, o in options.items() if o.cost_usd is not None and (o.verified or not request.verify)]
    layout = min(ok, key=lambda k: (options[k].cost_usd or 0.0, k != SHARED)) if ok else SHARED
    presented = pools if layout == PER_CLASS and pools is not None else shared
    names, counts = np.unique(lab, return_counts=True)
    planning = ClassPlanning(
        classes=request.classes, requests=tuple((str(n), int(k)) for n, k in zip(names, counts, strict=True)),
        layout=layout, options=(options[layout], *(o for k, o in options.items() if k != layout)))
    return replace(presented, classes=planning, notes=(*presented.notes, layout_line(planning)))


def layout_line(planning: ClassPlanning) -> str:
    """What the layouts cost and which one the plan is (a line for every surface)."""
    def say(o: LayoutOption) -> str:
        if o.cost_usd is None:
            return f"{o.layout}: no plan ({o.note})" if o.note else f"{o.layout}: no plan"
        state = "verified" if o.verified else "missed its replay"
        return f"{o.layout} ${o.cost_usd:,.2f}, {o.peak_gpus} GPUs at peak, {state}"

    head = ("one shared fleet held to the strictest targets" if planning.layout == SHARED
            else "a pool per SLO class")
    return f"SLO classes: {head} is presented ({'; '.join(say(o) for o in planning.options)})"

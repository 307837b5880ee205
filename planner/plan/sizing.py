"""Fleet sizing from a trace: score candidates, solve the CP-SAT plan, verify it by replay.

1. The trace's length mix (quantile buckets of input x output lengths) and its demand per window (the
   peak ``burst_s`` rate inside each window) come from :mod:`solvers.capacity.demand`.
2. Every candidate (GPU type x TP x PP x EP x batch caps x role) is scored by the queueing estimate
   (:mod:`solvers.capacity.scoring`): goodput per replica under the SLO, or the reason it is out.
3. The Pareto-pruned candidates go to the CP-SAT model (:mod:`solvers.capacity.cpsat`), which picks the
   configurations and replicas per window at minimum cost under inventory, power and P/D limits.
4. The plan and the next-best single-configuration plans are replayed through the simulator
   (:mod:`planner.plan.verify`): predicted vs replayed SLO attainment, side by side.

The scoring and replay maps are injected, so the same code runs in-process (tests) or on Ray
(:mod:`planner.plan.run`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import polars as pl

from planner.catalog import GPUSpec, ModelSpec
from planner.perf.calibration import REFERENCE_GPU, is_measured
from planner.perf.engine_profile import DEFAULT_ENGINE, ENGINES, engine_perf_inputs
from planner.perf.model import DTYPE_BYTES
from planner.perf.precision import Precision, native
from planner.plan.latency_floors import latency_floors
from planner.plan.slo_classes import SLOClass, check_classes, strictest
from planner.plan.verify import (
    MapFn,
    Variant,
    Verification,
    WindowCheck,
    map_local,
    plan_variant,
    single_variants,
    verify,
)
from planner.sim.coldstart import replica_start_s
from solvers.capacity import (
    SLO,
    Allocation,
    CapacityPlan,
    CapacityProblem,
    Config,
    Disaggregation,
    LengthMix,
    PowerBasis,
    Role,
    ScoringOptions,
    SolveParams,
    Window,
    demand_windows,
    explain,
    length_mix,
    score_gpu,
    select_configs,
    solve,
    started,
)
from traces.errors import InputError
from traces.schema import RequestTrace

ScoreMap = Callable[[ModelSpec, Sequence[GPUSpec], LengthMix, ScoringOptions], list[pl.DataFrame]]
"""Scores every GPU type: in-process (:func:`score_local`) or one Ray task per GPU type."""


def score_local(model: ModelSpec, gpus: Sequence[GPUSpec], mix: LengthMix,
                options: ScoringOptions) -> list[pl.DataFrame]:
    """Score GPU types one after the other in this process."""
    return [score_gpu(model, g, mix, options) for g in gpus]


@dataclass(frozen=True)
class PlanRequest:
    """What to plan, and how.

    Attributes:
        model: the model served.
        gpus: GPU types to consider.
        slo: TTFT and TPOT targets at p99.
        window_s: planning window (replica counts may change between windows).
        burst_s: a window is sized for its busiest ``burst_s`` (at most the window).
        max_windows: windows at most; a longer trace gets longer windows (noted in the report).
        load_factor: multiplies the trace's demand (what-if).
        inventory: GPUs available per type (types not listed: unlimited).
        power_budget_w: fleet power cap, watts.
        disaggregation: P/D split allowed, required or excluded.
        max_configs_per_role: distinct configurations per role.
        power_basis: replica power at the operating point (perf model) or TDP.
        max_num_seqs: running-sequence caps tried.
        max_batched_tokens: per-step token budgets tried.
        per_group: candidates kept per (GPU type, role) for the solver.
        params: CP-SAT time limit, workers and seed.
        verify: replay the plan and alternatives.
        verify_windows: windows replayed at most.
        alternatives: next-best single-configuration plans replayed next to the plan.
        seed: replay seed.
        max_rounds: plan-then-replay rounds at most (:func:`_correct` between them).
        engine: engine profile for scoring and verification (``bare`` or ``vllm``).
        expert_imbalance: MoE busiest-GPU expert load over the mean (>= 1), from ``fleetwise experts``
            (the plan's step imbalance); 1.0 is a perfect balance.
        precisions: weight and KV dtypes the candidates may use; empty: the model's native precision
            (:func:`planner.perf.precision.native`).
        start_s: seconds of its GPUs' time each replica a window adds costs (its cold start); None: from
            the bytes of weights a replica of the configuration loads (:func:`replica_start_s`); 0: free.
        min_dwell_windows: windows a started replica runs at least (1: no minimum).
        classes: targets per ``slo_class`` of the trace (:mod:`planner.plan.slo_classes`); requests of
            other classes keep ``slo``. With classes the plan weighs one shared fleet held to the
            strictest targets against a pool per class (:mod:`planner.plan.by_class`).
    """

    model: ModelSpec
    gpus: tuple[GPUSpec, ...]
    slo: SLO = field(default_factory=SLO)
    window_s: float = 300.0
    burst_s: float = 60.0
    max_windows: int = 96
    load_factor: float = 1.0
    inventory: tuple[tuple[str, int], ...] = ()
    power_budget_w: float | None = None
    disaggregation: Disaggregation = Disaggregation.AUTO
    max_configs_per_role: int = 2
    power_basis: PowerBasis = PowerBasis.PERF
    max_num_seqs: tuple[int, ...] = (64, 128, 256, 512)
    max_batched_tokens: tuple[int, ...] = (2048, 8192, 16384)
    per_group: int = 8
    params: SolveParams = field(default_factory=SolveParams)
    verify: bool = True
    verify_windows: int = 12
    alternatives: int = 2
    seed: int = 0
    max_rounds: int = 4
    expert_imbalance: float = 1.0
    engine: str = DEFAULT_ENGINE
    precisions: tuple[Precision, ...] = ()
    start_s: float | None = None
    min_dwell_windows: int = 1
    classes: tuple[SLOClass, ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}", field="engine", expected=" or ".join(ENGINES))
        if not (math.isfinite(self.expert_imbalance) and self.expert_imbalance >= 1.0):
            raise InputError(f"expert imbalance {self.expert_imbalance}", field="expert_imbalance",
                             expected="max/mean expert load >= 1")
        if not self.gpus:
            raise InputError("no GPU types to plan on", field="gpus", expected="at least one catalog GPU")
        if self.max_windows < 1:
            raise InputError("max_windows must be >= 1", field="max_windows", expected="an integer >= 1")
        if self.start_s is not None and not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise InputError(f"replica start {self.start_s}", field="start_s", expected="seconds >= 0")
        if self.min_dwell_windows < 1:
            raise InputError(f"minimum dwell {self.min_dwell_windows}", field="min_dwell_windows",
                             expected="an integer >= 1")
        known = {g.name for g in self.gpus}
        for name, _n in self.inventory:
            if name not in known:
                raise InputError(f"inventory names GPU {name!r}, which is not among those planned",
                                 field="inventory", expected=f"one of {', '.join(sorted(known))}")

    def start_of(self, c: Config) -> float:
        """Seconds a new replica of ``c`` is paid for before it serves (see ``start_s``)."""
        if self.start_s is not None:
            return self.start_s
        return replica_start_s(self.model.weight_bytes(DTYPE_BYTES[c.weight_dtype]))

    @property
    def sizing_slo(self) -> SLO:
        """The targets candidates are scored for: ``slo``, or the strictest of every class's when classes
        share the fleet (their requests share batches, so share latencies)."""
        return strictest(self.slo, self.classes)

    @property
    def scoring(self) -> ScoringOptions:
        """The candidate space handed to the scorer."""
        roles = (Role.AGGREGATED,) if self.disaggregation is Disaggregation.OFF else (
            (Role.PREFILL, Role.DECODE) if self.disaggregation is Disaggregation.ON else
            (Role.AGGREGATED, Role.PREFILL, Role.DECODE))
        return ScoringOptions(slo=self.sizing_slo, max_num_seqs=self.max_num_seqs,
                              max_batched_tokens=self.max_batched_tokens, roles=roles,
                              power_basis=self.power_basis, expert_imbalance=self.expert_imbalance,
                              engine=self.engine, precisions=self.precisions or (native(self.model),))


@dataclass(frozen=True)
class CostLine:
    """One configuration's share of the plan's cost."""

    config: str
    role: str
    gpu: str
    gpus_per_replica: int
    peak_replicas: int
    mean_replicas: float
    gpu_hours: float
    price_per_gpu_hour: float
    cost_usd: float
    starts: int = 0
    """Replicas started over the plan's cycle of windows."""
    start_gpu_hours: float = 0.0
    """GPU-hours those starts hold GPUs before serving (in ``cost_usd``, not in ``gpu_hours``)."""


@dataclass(frozen=True, eq=False)
class PlanReport:
    """Everything ``fleetwise plan`` shows: inputs seen, the candidate table, the plan, its verification.

    Attributes:
        trace_source: where the trace came from.
        requests: requests in the trace.
        duration_s: trace length.
        window_s: the window actually used.
        mix: the length mix the candidates were scored on.
        scored: the long candidate table (one row per candidate, infeasible ones with their reason).
        problem: what the solver was given.
        plan: the solver's answer.
        why: the binding constraint or cost reason, in a sentence.
        verification: predicted vs replayed, plan first.
        score_s: candidate scoring wall time.
        solve_s: solver wall time.
        verify_s: replay wall time.
        notes: adjustments the planner made (longer windows...).
        rounds: plan-then-replay rounds run (0: not verified); more than one when the replay of a plan
            missed the SLO and the planner derated its configurations and re-solved.
        corrections: what each extra round changed, in a line each.
        measured_gpus: the planned GPU types whose numbers come from their own measured profile (the
            others' are derived from the reference GPU's).
        slo: the targets and the statistic they hold at (what was scored and checked).
        demand_rps: each window's demand as the trace gives it (``problem.windows`` holds what the plan
            was sized for, higher where the loop found a window's traffic burstier than its estimate).
    """

    trace_source: str
    requests: int
    duration_s: float
    window_s: float
    mix: LengthMix
    scored: pl.DataFrame
    problem: CapacityProblem
    plan: CapacityPlan
    why: str
    verification: tuple[Verification, ...]
    score_s: float
    solve_s: float
    verify_s: float
    notes: tuple[str, ...] = ()
    rounds: int = 0
    corrections: tuple[str, ...] = ()
    measured_gpus: tuple[str, ...] = ()
    slo: SLO = field(default_factory=SLO)
    demand_rps: tuple[float, ...] = ()
    classes: ClassPlanning | None = None
    """With SLO classes: their targets and the fleet layouts weighed (shared vs a pool per class)."""

    @property
    def recommended(self) -> Verification | None:
        """The presented plan's check when it passed (it comes first), else the cheapest variant that
        meets the SLO in replay; None when nothing was replayed or nothing held up."""
        if self.verification and self.verification[0].meets_slo:
            return self.verification[0]
        ok = [v for v in self.verification if v.meets_slo]
        return min(ok, key=lambda v: v.cost_usd) if ok else None

    @property
    def verified(self) -> bool:
        """Whether the presented plan passed its own replay."""
        return bool(self.verification) and self.verification[0].meets_slo

    @property
    def output_tokens_per_gpu_s(self) -> float | None:
        """The trace's output tokens per second over the plan's time-weighted mean GPU count (the figure
        peer planners quote per GPU); None without a plan."""
        hours = sum(w.duration_s for w in self.problem.windows) / 3600.0
        gpu_h = sum(line.gpu_hours for line in self.cost_breakdown())
        if not self.plan.feasible or hours <= 0 or gpu_h <= 0 or self.duration_s <= 0:
            return None
        return self.requests * self.mix.mean_output / self.duration_s / (gpu_h / hours)

    def cost_breakdown(self) -> list[CostLine]:
        """Per configuration: replicas, GPU-hours, the price used and cost."""
        out = []
        wins = self.problem.windows
        for c in self.plan.configs:
            reps = [self.plan.replicas(w).get(c.key, 0) for w in range(len(wins))]
            hours = [w.duration_s / 3600.0 for w in wins]
            gpu_h = sum(n * c.gpus * h for n, h in zip(reps, hours, strict=True))
            total_h = sum(hours)
            n_starts = sum(started(reps))  # a single window starts nothing: it follows itself
            start_h = n_starts * c.gpus * c.start_s / 3600.0
            out.append(CostLine(config=c.key, role=c.role.value, gpu=c.gpu, gpus_per_replica=c.gpus,
                                peak_replicas=max(reps), mean_replicas=sum(
                                    n * h for n, h in zip(reps, hours, strict=True)) / total_h,
                                gpu_hours=gpu_h, price_per_gpu_hour=c.price_per_gpu_hour,
                                cost_usd=(gpu_h + start_h) * c.price_per_gpu_hour, starts=n_starts,
                                start_gpu_hours=start_h))
        return out


def window_length(duration_s: float, window_s: float, max_windows: int) -> float:
    """The window to use: ``window_s``, or longer (whole minutes) so there are at most ``max_windows``.

    >>> window_length(3600.0, 300.0, 96), window_length(7 * 86400.0, 300.0, 96)
    (300.0, 6300.0)
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise InputError(f"window {window_s}", field="window_s", expected="seconds > 0")
    if math.ceil(duration_s / window_s) <= max_windows:
        return window_s
    return math.ceil(duration_s / max_windows / 60.0) * 60.0


def start_note(configs: Sequence[Config], request: PlanRequest) -> str:
    """What a replica added between windows costs in the plan, and where the figure comes from."""
    starts = ", ".join(sorted({f"{c.start_s:.0f} s" + (f" ({c.weight_dtype})" if len(configs) > 1 else "")
                               for c in configs}))
    source = ("--replica-start-s" if request.start_s is not None
              else f"{request.model.name}'s weight bytes on Ray Serve LLM's from-zero start times")
    dwell = (f"; a started replica runs at least {request.min_dwell_windows} windows"
             if request.min_dwell_windows > 1 else "")
    return (f"each replica a window adds costs {starts} of its GPUs' time before it serves (from {source})"
            f"{dwell}; windows repeat as a cycle")


def build_problem(scored: pl.DataFrame, windows: tuple[Window, ...], request: PlanRequest) -> CapacityProblem:
    """The solver's input from the scored table and the demand windows."""
    configs = tuple(replace(c, start_s=request.start_of(c))
                    for c in select_configs(scored, per_group=request.per_group))
    return CapacityProblem(
        configs=configs, windows=windows,
        inventory=request.inventory, power_budget_w=request.power_budget_w,
        disaggregation=request.disaggregation, max_configs_per_role=request.max_configs_per_role,
        min_dwell_windows=request.min_dwell_windows)


def variant_plan(variant: Variant, solved: CapacityPlan) -> CapacityPlan:
    """A verified single-configuration variant as the plan to present (the solver's status and bound kept
    for the record; the note says what was swapped)."""
    allocations = tuple(Allocation(window=w, config=key, replicas=n)
                        for w, reps in enumerate(variant.replicas) for key, n in reps if n > 0)
    return CapacityPlan(status=solved.status, solver=solved.solver, objective_usd=variant.cost_usd,
                        bound_usd=solved.bound_usd, greedy_usd=solved.greedy_usd, wall_s=solved.wall_s,
                        allocations=allocations, configs=variant.configs,
                        note=f"{variant.label} presented: the solver's plan missed its replay",
                        windows=solved.windows)


DERATE_RANGE = (0.6, 0.95)
"""Goodput factor a round may apply to the configurations of a plan that missed (most, least)."""


def derate_for(ratio: float) -> float:
    """The inverse square root of a replayed-latency-over-target ratio, within :data:`DERATE_RANGE`.

    Why the square root: latency rises faster than linearly as a replica nears saturation, so cutting
    load by the full ratio would overshoot; the floor keeps one round from discarding a configuration
    (or inflating a window) whose miss came from a few requests.
    """
    if not math.isfinite(ratio):
        return DERATE_RANGE[0]
    return float(min(DERATE_RANGE[1], max(DERATE_RANGE[0], max(ratio, 1.0) ** -0.5)))


def miss_ratios(ttft_s: float, tpot_s: float, slo: SLO, e2e_s: float | None = None) -> tuple[float, float]:
    """Replayed TTFT and TPOT (each at its statistic) over their targets (> 1: missed). An end-to-end
    miss worse than both counts against the phase that missed more: end-to-end time is TTFT plus the
    decode, so the corrections act on the phase that already lags."""
    ttft, tpot = float(ttft_s / slo.ttft_s), float(tpot_s / slo.tpot_s)
    e2e = math.nan if e2e_s is None else float(e2e_s / slo.limit("e2e"))
    if e2e > max(ttft, tpot):  # nan (no target, or not replayed) never compares greater
        return (e2e, tpot) if ttft >= tpot else (ttft, e2e)
    return ttft, tpot


def window_ratio(check: WindowCheck, slo: SLO) -> float:
    """A replayed window's worst latency at the SLO's statistic over its target (> 1: it missed)."""
    return max(miss_ratios(check.ttft_at_slo_s, check.tpot_at_slo_s, slo, check.e2e_at_slo_s))


def role_reasons(scored: pl.DataFrame) -> list[str]:
    """For each role none of whose candidates met the SLO: how many were scored and their most common
    reason, with the count (what an infeasible plan's output names as the cause)."""
    out: list[str] = []
    if not scored.height:
        return out
    for (role,), grp in scored.group_by("role", maintain_order=True):
        if bool(grp["feasible"].any()):
            continue
        top = grp.group_by("reason").len().sort(["len", "reason"], descending=[True, False]).row(0)
        out.append(f"{role}: none of {grp.height:,} candidates meets the SLO; most often: {top[0]} "
                   f"({top[1]:,} of {grp.height:,})")
    return out


QUANTIZE_MIN_SAVING = 0.01
"""Share of the plan's cost a narrower precision must save before the plan gives up native quality."""


def _prefer_native(
    scored: pl.DataFrame, windows: tuple[Window, ...], request: PlanRequest, problem: CapacityProblem,
    plan: CapacityPlan, notes: list[str],
) -> tuple[CapacityProblem, CapacityPlan]:
    """The plan over every precision, or the native-precision plan when quantizing saves less than
    :data:`QUANTIZE_MIN_SAVING` (cost ties are common once replicas are whole, and the solver would
    otherwise trade quality for nothing); says which in ``notes``."""
    base = native(request.model)
    if all(p == base for p in request.scoring.precisions) or not scored.height:
        return problem, plan
    nat = scored.filter((pl.col("weight_dtype") == base.weights) & (pl.col("kv_dtype") == base.kv))
    nat_problem = build_problem(nat, windows, request)
    nat_plan = solve(nat_problem, params=request.params)
    if not nat_plan.feasible:
        if plan.feasible:
            notes.append(f"no plan in the native precision ({base.label}) meets the limits; "
                         "this one quantizes")
        return problem, plan
    nat_usd = nat_plan.objective_usd or 0.0
    usd = plan.objective_usd if plan.feasible and plan.objective_usd is not None else math.inf
    saving = 1.0 - usd / nat_usd if nat_usd > 0 else 0.0
    if saving < QUANTIZE_MIN_SAVING:
        notes.append(f"native precision ({base.label}) kept: other precisions save "
                     f"{max(saving, 0.0):.1%} (< {QUANTIZE_MIN_SAVING:.0%})")
        return nat_problem, nat_plan
    notes.append(f"other precisions save {saving:.1%} over the native ({base.label}) plan "
                 f"(${usd:,.2f} vs ${nat_usd:,.2f})")
    return problem, plan


def _cut_configs(problem: CapacityProblem, plan: CapacityPlan, check: Verification,
                 slo: SLO) -> tuple[CapacityProblem, str]:
    """The configurations were slower than estimated: cut the goodput of the plan's configurations that
    serve the phase that missed (a split plan's prefill configuration for TTFT, its decode one for TPOT)
    by :func:`derate_for` of the worst miss, at least enough for one more replica where the most ran."""
    most = max((n for w in range(len(problem.windows)) for n in plan.replicas(w).values()), default=1)
    ttft, tpot = miss_ratios(check.replayed_ttft_at_slo_s, check.replayed_tpot_at_slo_s, slo,
                             check.replayed_e2e_at_slo_s)
    factor = min(derate_for(max(ttft, tpot)), most / (most + 1) * 0.999)
    spared = {Role.DECODE} if tpot <= 1.0 else ({Role.PREFILL} if ttft <= 1.0 else set())
    keys = {c.key for c in plan.configs if c.role not in spared}
    return (replace(problem, configs=tuple(replace(c, goodput_rps=c.goodput_rps * factor) if c.key in keys
                                           else c for c in problem.configs)),
            f"{', '.join(sorted(keys))} cut to x{factor:.2f} of {'its' if len(keys) == 1 else 'their'} "
            "estimated goodput")


def _raise_windows(problem: CapacityProblem, plan: CapacityPlan, check: Verification,
                   slo: SLO) -> tuple[CapacityProblem, str]:
    """The traffic was harder than estimated where windows missed (bursts shorter than the sizing minute):
    raise each missed window's demand by :func:`derate_for` of its own miss, and at least past what the
    plan served there in the phase that missed (prefill for TTFT, decode for TPOT), so any configuration
    the re-solve picks brings more capacity exactly there."""
    by_key = {c.key: c for c in problem.configs}
    wins = list(problem.windows)
    missed = [c for c in check.by_window if c.requests and window_ratio(c, slo) > 1.0]
    for c in missed:
        w = wins[c.window]
        ttft, tpot = miss_ratios(c.ttft_at_slo_s, c.tpot_at_slo_s, slo, c.e2e_at_slo_s)
        skip = Role.DECODE if ttft >= tpot else Role.PREFILL
        served = sum(by_key[k].goodput_rps * n for k, n in plan.replicas(c.window).items()
                     if k in by_key and by_key[k].role is not skip)
        wins[c.window] = replace(w, demand_rps=max(w.demand_rps / derate_for(window_ratio(c, slo)),
                                                   served * 1.001))
    replayed = sum(1 for c in check.by_window if c.requests)
    worst = max(missed, key=lambda c: window_ratio(c, slo), default=None)
    where = ("" if worst is None
             else f" (worst: window {worst.window} at x{window_ratio(worst, slo):.2f} its target)")
    return (replace(problem, windows=tuple(wins)),
            f"the demand of the {len(missed)} of {replayed} replayed windows that missed raised{where}")


def _split_phases(problem: CapacityProblem, plan: CapacityPlan, check: Verification,
                  slo: SLO) -> tuple[CapacityProblem, str] | None:
    """An aggregated plan missed TPOT: its decoders waited behind prefill chunks, which only separate
    prefill and decode pools avoid. Re-solve with the split required (when the user left it open)."""
    if (plan.disaggregated or problem.disaggregation is not Disaggregation.AUTO
            or check.replayed_tpot_at_slo_s <= slo.tpot_s
            or not any(c.role is not Role.AGGREGATED for c in problem.configs)):
        return None
    return (replace(problem, disaggregation=Disaggregation.ON),
            "prefill and decode split into their own pools (TPOT missed behind prefill chunks)")


def _replayed_words(check: Verification, slo: SLO) -> str:
    """The replayed latencies a round missed with, each at its own statistic."""
    parts = [f"TTFT {check.replayed_ttft_at_slo_s:.3g} s", f"TPOT {check.replayed_tpot_at_slo_s:.3g} s"]
    if slo.e2e_s is not None:
        parts.append(f"end to end {check.replayed_e2e_at_slo_s:.3g} s")
    stats = {slo.stat(k) for k in slo.kinds}
    where = f"at the SLO's {slo.statistic}" if len(stats) == 1 else f"at {slo.statistic}"
    return ", ".join(parts) + f" {where}"


Correction = Callable[[CapacityProblem, CapacityPlan, Verification, SLO], tuple[CapacityProblem, str] | None]

CORRECTIONS: tuple[Correction, ...] = (_cut_configs, _raise_windows, _split_phases)
"""What a round may conclude from a missed replay. The replay cannot tell whether the configurations were
slower than estimated (then others may serve better), the traffic burstier (then any configuration needs
more capacity where windows missed) or, for a TPOT miss, decoding slowed by prefills sharing its steps
(then separate pools serve better), so each round tries each that applies and replays the re-solved plans
side by side. It goes on with the one that passed at the lower cost; when neither passed, with the lesson that
persists whatever the next solve picks: the raised windows (a cut of the plan's own configurations lets
the solver move to others that may carry the same error unreplayed)."""


def _closed_loop(
    trace: RequestTrace, request: PlanRequest, problem: CapacityProblem, plan: CapacityPlan,
    windows: tuple[Window, ...], mix: LengthMix, replay_map: MapFn,
) -> tuple[CapacityProblem, CapacityPlan, tuple[Verification, ...], int, list[str]]:
    """Replay the plan; where it misses, derate what the estimate got wrong and re-solve, up to
    ``request.max_rounds``; then replay the alternatives and present the cheapest that passed if the
    solver's plan never did. Returns ``(problem, plan, checks (presented plan first), rounds,
    corrections)``."""
    corrections: list[str] = []

    def check(variants: list[Variant]) -> list[Verification]:
        return verify(trace, variants, model=request.model, gpus={g.name: g for g in request.gpus},
                      windows=windows, mix=mix, slo=request.slo, max_windows=request.verify_windows,
                      seed=request.seed, map_fn=replay_map, expert_imbalance=request.expert_imbalance,
                      engine=request.engine, classes=request.classes)

    first = check([plan_variant(plan)])[0]
    rounds = 1
    slo = request.sizing_slo
    # the closed loop: where the replay misses, correct what the estimate got wrong and re-solve
    while not first.meets_slo and rounds < request.max_rounds:
        tried: list[tuple[Correction, CapacityProblem, CapacityPlan, str]] = []
        for fix in CORRECTIONS:
            applies = fix(problem, plan, first, slo)
            if applies is None:
                continue
            fixed, what = applies
            again = solve(fixed, params=request.params)
            if again.feasible:
                tried.append((fix, fixed, again, what))
            else:
                corrections.append(f"round {rounds + 1}: no plan once {what} ({again.note})")
        if not tried:
            break
        checks = check([plan_variant(p) for _fix, _f, p, _w in tried])
        passed = [i for i, v in enumerate(checks) if v.meets_slo]
        pick = (min(passed, key=lambda i: checks[i].cost_usd) if passed
                else next((i for i, t in enumerate(tried) if t[0] is _raise_windows), 0))
        _fix, problem, again, what = tried[pick]
        corrections.append(
            f"round {rounds + 1}: missed in replay ({_replayed_words(first, slo)}): {what}, re-solved at "
            f"${again.objective_usd or 0.0:,.2f}" + (f" (of {len(tried)} corrections tried)" if len(tried) > 1
                                                     else ""))
        plan, first = again, checks[pick]
        rounds += 1
    # the alternatives are sized on the corrected demand; the checks replay the trace's own windows
    alternatives = single_variants(problem.configs, problem.windows, exclude=[c.key for c in plan.configs],
                                   count=request.alternatives)
    alt_checks = check(alternatives) if alternatives else []
    passing = [(v, a) for v, a in zip(alt_checks, alternatives, strict=True) if v.meets_slo]
    if not first.meets_slo and passing:
        # the presented plan is always a verified one: the cheapest alternative that held up
        v, alt = min(passing, key=lambda p: p[0].cost_usd)
        corrections.append(f"the solver's plan still missed after {rounds} round(s); presenting "
                           f"{v.label} ({', '.join(v.configs)}), the cheapest variant that passed")
        failed = first
        plan = variant_plan(alt, plan)
        first = v
        alt_checks = [failed, *(x for x in alt_checks if x is not v)]
    return problem, plan, (first, *alt_checks), rounds, corrections


def plan_fleet(trace: RequestTrace, request: PlanRequest, *, score_map: ScoreMap = score_local,
               replay_map: MapFn = map_local) -> PlanReport:
    """Size a fleet for ``trace`` (see the module docstring); with SLO classes, the cheaper verified of
    a shared fleet and a pool per class (:func:`planner.plan.by_class.plan_by_class`).

    Raises:
        InputError: the trace is empty, the request is inconsistent, or a class the trace lacks.
    """
    check_classes(trace, request.classes)
    if request.classes:
        from planner.plan.by_class import plan_by_class

        return plan_by_class(trace, request, score_map=score_map, replay_map=replay_map)
    return plan_pool(trace, request, score_map=score_map, replay_map=replay_map)


def plan_pool(trace: RequestTrace, request: PlanRequest, *, score_map: ScoreMap = score_local,
              replay_map: MapFn = map_local, span_s: float | None = None) -> PlanReport:
    """Size one fleet for every request of ``trace`` (classes, if any, held to their own targets in the
    check, the fleet scored for the strictest); ``span_s``: the window grid's span when ``trace`` is one
    class of a longer trace."""
    notes: list[str] = []
    span = max(trace.duration_s if span_s is None else span_s, 1e-9)
    window_s = window_length(span, request.window_s, request.max_windows)
    if window_s != request.window_s:
        notes.append(f"window lengthened from {request.window_s:.0f} s to {window_s:.0f} s "
                     f"(at most {request.max_windows} windows)")
    if request.expert_imbalance != 1.0 and request.model.moe is not None:
        notes.append(f"MoE expert imbalance {request.expert_imbalance:g} (from the placement) applied to "
                     "candidate scoring and replay verification")
    notes.append(engine_perf_inputs(request.engine, request.gpus[0])[0].describe())
    derived = [g.name for g in request.gpus if not is_measured(g)]
    if derived:
        notes.append(f"{', '.join(derived)}: numbers derived from the {REFERENCE_GPU} profile by datasheet "
                     "ratios, not measured on that GPU (--measured-only plans on measured GPUs alone)")
    notes.append(f"precisions tried: {', '.join(p.label for p in request.scoring.precisions)} "
                 f"({request.model.name} ships in {request.model.native_dtype})")
    mix = length_mix(trace)
    windows = demand_windows(trace, window_s=window_s, burst_s=request.burst_s,
                             load_factor=request.load_factor, duration_s=span)
    t0 = time.perf_counter()
    frames = score_map(request.model, request.gpus, mix, request.scoring)
    scored = pl.concat(frames) if frames else pl.DataFrame()
    t1 = time.perf_counter()
    problem = build_problem(scored, windows, request)
    plan = solve(problem, params=request.params)
    problem, plan = _prefer_native(scored, windows, request, problem, plan, notes)
    if not plan.feasible:
        notes.extend(role_reasons(scored))
        notes.extend(f.words() for f in latency_floors(trace, request.model, request.gpus, scored,
                                                       request.sizing_slo, engine=request.engine,
                                                       expert_imbalance=request.expert_imbalance))
    t2 = time.perf_counter()
    checks: tuple[Verification, ...] = ()
    rounds = 0
    corrections: list[str] = []
    if request.verify and plan.feasible:
        problem, plan, checks, rounds, corrections = _closed_loop(
            trace, request, problem, plan, windows, mix, replay_map)
    for c in plan.configs:  # what the presented plan's precision does to the model's outputs
        quality = Precision(c.weight_dtype, c.kv_dtype).quality_note(request.model)
        if quality:
            notes.append(f"{c.key}: {quality}")
    if len(windows) > 1 and plan.configs:
        notes.append(start_note(plan.configs, request))
    t3 = time.perf_counter()
    return PlanReport(trace_source=trace.meta.source, requests=trace.num_requests,
                      duration_s=trace.duration_s, window_s=window_s, mix=mix, scored=scored,
                      problem=problem, plan=plan,
                      why=explain(problem, plan), verification=checks, score_s=t1 - t0, solve_s=t2 - t1,
                      verify_s=t3 - t2, notes=tuple(notes), rounds=rounds, corrections=tuple(corrections),
                      measured_gpus=tuple(g.name for g in request.gpus if is_measured(g)), slo=request.slo,
                      demand_rps=tuple(w.demand_rps for w in windows))


@dataclass(frozen=True)
class LayoutOption:
    """One fleet layout weighed for SLO classes.

    Attributes:
        layout: ``shared`` (one fleet, scored for the strictest targets) or ``per-class`` (a pool per
            class, each scored for its own).
        cost_usd: its verified (or best failed) cost; None when no plan was found.
        verified: whether it passed its replay with every class against its own targets.
        peak_gpus: GPUs in its busiest window.
        note: why it has no plan, when it has none.
    """

    layout: str
    cost_usd: float | None
    verified: bool
    peak_gpus: int
    note: str = ""


@dataclass(frozen=True)
class ClassPlanning:
    """SLO classes in a plan: each class's targets and share, and the layouts weighed.

    Attributes:
        classes: the listed classes' targets.
        requests: requests per class (``other``: those no listed class claims, held to the plan's
            targets).
        layout: the presented layout.
        options: every layout weighed, presented first.
    """

    classes: tuple[SLOClass, ...]
    requests: tuple[tuple[str, int], ...]
    layout: str
    options: tuple[LayoutOption, ...]

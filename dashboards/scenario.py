"""What the dashboard and the HTML report ask of the library, as hashable inputs and thin calls.

Why this module: Streamlit's ``st.cache_data`` and the report verb both need the same inputs (a trace
source, a load factor, a replay or plan spec) as *frozen, hashable* values, and the same calls into
the library. Keeping them here, with no Streamlit import, means the report and the tests use exactly
what the pages use, and the pages hold no logic of their own: every number shown comes from
:mod:`traces`, :mod:`planner.plan`, :mod:`planner.sim` or :mod:`solvers.experts`.

A trace source is keyed on its path *and* its modification time and size, so an edited file is read
again while an unchanged one is served from the cache.

>>> src = default_source()
>>> src.kind, src.label
('default', 'bundled default trace')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from planner.autoscale.context import ScalingContext, TargetParams, TargetState, target_tracking
from planner.catalog import load_catalog
from planner.perf import Parallelism, build_replica_perf
from planner.plan import PlanReport, PlanRequest, plan_fleet
from planner.sim import EngineConfig, RouterName, SimConfig, SimResult, SLOTarget, replay
from traces.errors import InputError
from traces.schema import RequestTrace

MAX_UPLOAD_MB = 200
"""Largest trace upload the dashboard accepts (bigger traces: give a file path instead)."""

UPLOAD_SUFFIXES: tuple[str, ...] = ("csv", "parquet", "jsonl", "json", "ndjson")
"""File types the trace readers understand as single files (ServeGen folders need a path)."""

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class TraceSource:
    """Where a trace comes from, as a cache key.

    Attributes:
        kind: ``default`` (the bundled synthetic hour) or ``file`` (a path, maybe a saved upload).
        path: the file or ServeGen folder (empty for the default trace).
        format: reader format, ``None`` to detect it.
        mtime_ns: modification time when the source was resolved (part of the cache key).
        size: size in bytes when resolved (part of the cache key).
        label: what the pages call it.
    """

    kind: str
    path: str = ""
    format: str | None = None
    mtime_ns: int = 0
    size: int = 0
    label: str = "bundled default trace"


def default_source() -> TraceSource:
    """The bundled default trace (works on a fresh install, no files needed)."""
    return TraceSource(kind="default")


def file_source(path: str | Path, *, format: str | None = None, label: str | None = None) -> TraceSource:
    """A trace file or ServeGen folder, stamped with its mtime and size.

    Raises:
        InputError: the path does not exist.

    >>> file_source("/no/such/trace.csv")
    Traceback (most recent call last):
    ...
    traces.errors.InputError: /no/such/trace.csv: no such file or folder (expected a trace file or folder)
    """
    p = Path(path).expanduser()
    if not str(path).strip():
        raise InputError("no path given", field="path", expected="a trace file or ServeGen folder")
    if not p.exists():
        raise InputError("no such file or folder", path=str(p), expected="a trace file or folder")
    st = p.stat()
    return TraceSource(
        kind="file",
        path=str(p.resolve()),
        format=format,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size,
        label=label or p.name,
    )


def save_upload(
    name: str, data: bytes, *, dest_dir: Path, format: str | None = None, max_mb: int = MAX_UPLOAD_MB
) -> TraceSource:
    """Store an uploaded trace under ``dest_dir`` (named by its content hash) and return its source.

    Why a file: every reader takes a path (they sniff headers and scan lazily), so an upload is saved once
    and then read like any other file; the content hash makes the same upload one cache entry.

    Raises:
        InputError: the upload is empty, too large, or of a type no reader takes. Its *content* is
            validated when it is loaded (:func:`load_source`).
    """
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_SUFFIXES:
        raise InputError(
            f"cannot read a .{suffix or '?'} upload",
            path=name,
            expected="a " + "/".join(f".{s}" for s in UPLOAD_SUFFIXES) + " trace file",
        )
    if not data:
        raise InputError("the uploaded file is empty", path=name, expected="a trace with requests")
    if len(data) > max_mb * 1024 * 1024:
        raise InputError(
            f"upload of {len(data) / 2**20:.0f} MB is too large",
            path=name,
            expected=f"at most {max_mb} MB (give a file path for bigger traces)",
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = dest_dir / digest
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(name).name
    if not target.exists():
        target.write_bytes(data)
    return file_source(target, format=format, label=f"upload {Path(name).name}")


def load_source(src: TraceSource) -> RequestTrace:
    """Load the trace a source names, validated by the trace layer.

    Raises:
        InputError: anything the readers or validators reject (file, row, field, expected).
    """
    if src.kind == "default":
        from traces.default import default_trace

        return default_trace()
    from traces.load import load_trace

    return load_trace(src.path, format=src.format)


def with_load(trace: RequestTrace, factor: float, *, seed: int = 0) -> RequestTrace:
    """The trace at ``factor`` times its request rate (``traces.transforms.scale_rate``); 1 is the trace.

    Raises:
        InputError: ``factor`` is not a finite number > 0.
    """
    if factor == 1.0:
        return trace
    from traces.transforms import scale_rate

    return scale_rate(trace, factor, seed=seed)


@dataclass(frozen=True)
class PlanSpec:
    """Inputs of a fleet-sizing run (names are catalog keys).

    Attributes:
        model: catalog model.
        gpus: catalog GPU types to consider.
        ttft_p99_s, tpot_p99_s: SLO targets.
        inventory: ``(gpu, count)`` GPUs available per type (types not listed: unlimited).
        power_budget_kw: fleet power cap, kW (None: no cap).
        disaggregation: ``auto``, ``on`` or ``off`` (prefill/decode split).
        window_s: planning window (replicas may change per window).
        time_limit_s: CP-SAT time limit.
        verify: replay the plan and its alternatives.
        seed: solver and replay seed.
    """

    model: str
    gpus: tuple[str, ...]
    ttft_p99_s: float = 2.0
    tpot_p99_s: float = 0.1
    inventory: tuple[tuple[str, int], ...] = ()
    power_budget_kw: float | None = None
    disaggregation: str = "auto"
    window_s: float = 300.0
    time_limit_s: float = 5.0
    verify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.gpus:
            raise InputError("no GPU type selected", field="gpus", expected="at least one catalog GPU")
        _check_slo(self.ttft_p99_s, self.tpot_p99_s)
        if self.power_budget_kw is not None and not self.power_budget_kw > 0:
            raise InputError("power budget must be positive", field="power_budget_kw", expected="kW > 0")


@dataclass(frozen=True)
class ReplaySpec:
    """Inputs of one replay besides the trace.

    Attributes:
        model, gpu: catalog keys.
        tp: tensor-parallel degree per replica.
        replicas: replicas in the cluster.
        router: :class:`planner.sim.RouterName` value.
        ttft_s, tpot_s: SLO targets for every class.
        seed: seeds routing choices.
        interval_s: time-series resolution.
        max_num_seqs, max_batched_tokens: the engine's caps (the planner picks them per configuration).
    """

    model: str
    gpu: str
    tp: int = 1
    replicas: int = 1
    router: str = RouterName.LEAST_OUTSTANDING.value
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    seed: int = 0
    interval_s: float = 10.0
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192

    def __post_init__(self) -> None:
        _check_slo(self.ttft_s, self.tpot_s)
        if self.replicas < 1 or self.tp < 1:
            raise InputError("replicas and TP must be >= 1", field="replicas/tp", expected="integers >= 1")


def _check_slo(ttft_s: float, tpot_s: float) -> None:
    if not (math.isfinite(ttft_s) and math.isfinite(tpot_s) and ttft_s > 0 and tpot_s > 0):
        raise InputError("SLO targets must be positive", field="slo", expected="TTFT and TPOT > 0")


def run_plan(trace: RequestTrace, spec: PlanSpec) -> PlanReport:
    """Size the fleet with :func:`planner.plan.plan_fleet` (CP-SAT over scored candidates, replay-verified).

    Raises:
        InputError: unknown model or GPU names, or a request the planner rejects.
    """
    from solvers.capacity import SLO, Disaggregation, SolveParams

    cat = load_catalog()
    request = PlanRequest(
        model=cat.model(spec.model),
        gpus=tuple(cat.gpu(g) for g in spec.gpus),
        slo=SLO(ttft_s=spec.ttft_p99_s, tpot_s=spec.tpot_p99_s),
        window_s=spec.window_s,
        inventory=spec.inventory,
        power_budget_w=None if spec.power_budget_kw is None else spec.power_budget_kw * 1e3,
        disaggregation=Disaggregation(spec.disaggregation),
        params=SolveParams(max_time_in_seconds=spec.time_limit_s, random_seed=spec.seed),
        verify=spec.verify,
        seed=spec.seed,
    )
    return plan_fleet(trace, request)


def planned_fleet(report: PlanReport) -> tuple[str, int, int, int, int] | None:
    """The plan's main configuration as ``(gpu, tp, peak replicas, max_num_seqs, max_batched_tokens)``.

    Why only one: the Replay page replays one configuration; for a plan that mixes configurations (or
    splits prefill and decode) it starts from the one with the most GPU-hours.
    """
    lines = report.cost_breakdown()
    if not report.plan.feasible or not lines:
        return None
    main = max(lines, key=lambda line: line.gpu_hours)
    cfg = next(c for c in report.plan.configs if c.key == main.config)
    return cfg.gpu, cfg.tp, main.peak_replicas, cfg.max_num_seqs, cfg.max_batched_tokens


def run_replay(trace: RequestTrace, spec: ReplaySpec, *, progress: ProgressFn | None = None) -> SimResult:
    """Replay the trace through ``spec.replicas`` replicas with :func:`planner.sim.replay`.

    Raises:
        InputError: unknown names, a layout that does not fit the GPU, or a trace the engine rejects.
    """
    cat = load_catalog()
    gpu = cat.gpu(spec.gpu)
    perf = build_replica_perf(cat.model(spec.model), gpu, Parallelism(tp=spec.tp))
    config = SimConfig(
        replicas=spec.replicas,
        router=RouterName(spec.router),
        seed=spec.seed,
        interval_s=spec.interval_s,
        engine=EngineConfig(max_num_seqs=spec.max_num_seqs, max_batched_tokens=spec.max_batched_tokens),
        default_slo=SLOTarget(ttft_s=spec.ttft_s, tpot_s=spec.tpot_s),
    )
    return replay(trace, perf, config=config, gpu=gpu, progress=progress)


@dataclass(frozen=True)
class Scenario:
    """One column of the Compare page: a change from the base case.

    Attributes:
        name: what the user called it.
        load_factor: request-rate multiplier applied to the trace.
        gpu: catalog GPU type.
        tp: tensor-parallel degree (ignored when the planner sizes the scenario).
        replicas: replicas; 0 asks the planner for the layout and the peak replica count on this GPU.
    """

    name: str
    load_factor: float = 1.0
    gpu: str = "H100-SXM"
    tp: int = 1
    replicas: int = 0


@dataclass(frozen=True)
class ScenarioOutcome:
    """A scenario's replay, and the replay spec it ran (the planner's when it sized the scenario)."""

    scenario: Scenario
    spec: ReplaySpec
    planned: bool
    result: SimResult


def scenario_spec(
    trace: RequestTrace,
    scenario: Scenario,
    *,
    model: str,
    router: str,
    ttft_s: float,
    tpot_s: float,
    seed: int,
) -> tuple[ReplaySpec, bool]:
    """The replay spec of a scenario: its own fleet, or the planner's (aggregated, on its GPU type).

    Raises:
        InputError: the planner finds no feasible configuration on this GPU type.
    """
    if scenario.replicas > 0:
        return ReplaySpec(
            model=model,
            gpu=scenario.gpu,
            tp=scenario.tp,
            replicas=scenario.replicas,
            router=router,
            ttft_s=ttft_s,
            tpot_s=tpot_s,
            seed=seed,
        ), False
    report = run_plan(
        trace,
        PlanSpec(
            model=model,
            gpus=(scenario.gpu,),
            ttft_p99_s=ttft_s,
            tpot_p99_s=tpot_s,
            disaggregation="off",
            verify=False,
            seed=seed,
        ),
    )
    fleet = planned_fleet(report)
    if fleet is None:
        raise InputError(
            f"scenario {scenario.name!r}: no feasible {model} plan on {scenario.gpu} ({report.why})",
            field="scenario",
            expected="another GPU type, a looser SLO, or a fixed replica count",
        )
    gpu, tp, replicas, seqs, tokens = fleet
    return ReplaySpec(
        model=model,
        gpu=gpu,
        tp=tp,
        replicas=replicas,
        router=router,
        ttft_s=ttft_s,
        tpot_s=tpot_s,
        seed=seed,
        max_num_seqs=seqs,
        max_batched_tokens=tokens,
    ), True


@dataclass(frozen=True)
class PolicyPreview:
    """What an autoscaling policy asks for, tick by tick, over a fixed-size replay's load (open loop).

    Attributes:
        t_s: tick times (the replay's interval starts).
        replicas: the policy's desired replicas at each tick.
        gpu_hours: GPU-hours if the fleet followed the policy exactly (no cold starts).
    """

    t_s: tuple[float, ...]
    replicas: tuple[int, ...]
    gpu_hours: float


def policy_preview(result: SimResult, params: TargetParams) -> PolicyPreview:
    """Run :func:`planner.autoscale.context.target_tracking` over the replay's observed load.

    Why open loop: the replay does not yet run policies in the loop (a fixed replica count serves the
    trace), so this shows what the policy *would ask for* given the load the fixed fleet saw, not the
    latency it would get; cold starts are not applied.
    """
    ts = result.timeseries
    state = TargetState()
    n = result.summary.replicas
    desired: list[int] = []
    rows = zip(
        ts["t_s"].to_list(),
        ts["running"].to_list(),
        ts["waiting"].to_list(),
        ts["kv_usage"].to_list(),
        strict=True,
    )
    for t, running, waiting, kv in rows:
        ctx = ScalingContext(
            now_s=float(t),
            replicas=n,
            running=(round(running),),
            waiting=(round(waiting),),
            kv_cache_usage_perc=(float(kv),),
            state=state,
        )
        decision = target_tracking(ctx, params=params)
        n, state = decision.desired_replicas, decision.state
        desired.append(n)
    t_list = [float(t) for t in ts["t_s"].to_list()]
    ends = [*t_list[1:], result.summary.makespan_s]
    gpu_s = sum(r * max(e - t, 0.0) for r, t, e in zip(desired, t_list, ends, strict=True))
    return PolicyPreview(
        t_s=tuple(t_list), replicas=tuple(desired), gpu_hours=gpu_s * result.summary.gpus_per_replica / 3600.0
    )

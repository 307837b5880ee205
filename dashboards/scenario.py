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
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dashboards.jobs import Report
from planner.catalog import load_catalog
from planner.contracts.kv_tiers import tiers_from_names
from planner.contracts.power import DEFAULT_BASE_W
from planner.perf import Parallelism, build_replica_perf
from planner.perf.engine_profile import DEFAULT_ENGINE, engine_perf_inputs
from planner.perf.precision import Precision, parse_precisions, resolve_precision
from planner.perf.spec_decode import parse_spec_decode
from planner.plan import PlanReport, PlanRequest, plan_fleet
from planner.sim import EngineConfig, RouterName, SimConfig, SimResult, SLOTarget, replay
from solvers.capacity.problem import SolveParams
from traces.errors import InputError
from traces.schema import RequestTrace

if TYPE_CHECKING:
    from planner.autoscale.compare import Comparison
    from planner.catalog.schema import GPUSpec
    from planner.perf.api import ReplicaPerf
    from planner.power_study.plan import VerifiedPlan
    from planner.power_study.study import DynamoBaseline
    from planner.spares_study import SparesStudy
    from planner.tier_study import TierStudy

MAX_UPLOAD_MB = 200
"""Largest trace upload the dashboard accepts (bigger traces: give a file path instead)."""

UPLOAD_SUFFIXES: tuple[str, ...] = ("csv", "parquet", "jsonl", "json", "ndjson")
"""File types the trace readers understand as single files (ServeGen folders need a path)."""

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class TraceSource:
    """Where a trace comes from, as a cache key.

    Attributes:
        kind: ``default`` (a bundled trace: the synthetic hour, or the fleet-scale day) or ``file`` (a path,
            maybe a saved upload).
        path: the file or ServeGen folder (for a bundled trace: its name; empty for the default hour).
        format: reader format, ``None`` to detect it.
        mtime_ns: modification time when the source was resolved (part of the cache key).
        size: size in bytes when resolved (part of the cache key).
        label: what the pages call it.
        start_s: the span read starts here, seconds from the first arrival (None: the start).
        duration_s: the span's length (None: to the end; a ServeGen folder: its first hour).
        selector, range_s, step_s: for ``prometheus`` (``path`` is the server's URL): the fleet's label
            matchers, the Unix-time range and the grid step the trace is rebuilt from
            (:func:`planner.live.reconstruct.trace_from_prometheus`).
    """

    kind: str
    path: str = ""
    format: str | None = None
    mtime_ns: int = 0
    size: int = 0
    label: str = "bundled default trace"
    start_s: float | None = None
    duration_s: float | None = None
    selector: str = ""
    range_s: tuple[float, float] | None = None
    step_s: float = 15.0


def default_source(name: str = "default") -> TraceSource:
    """A bundled trace (works on a fresh install, no files needed): the default hour, or ``fleet-day``.

    Raises:
        InputError: a name that is not bundled.
    """
    from traces.default import BUNDLED_NAMES, DEFAULT_NAME

    if name not in BUNDLED_NAMES:
        raise InputError(f"no bundled trace {name!r}", field="trace", expected=" or ".join(BUNDLED_NAMES))
    if name == DEFAULT_NAME:
        return TraceSource(kind="default")
    return TraceSource(kind="default", path=name, label=f"bundled {name} scenario")


PROMETHEUS_URLS_ENV = "FLEETWISE_PROMETHEUS_URLS"
"""Prometheus servers (comma-separated base URLs) the dashboard may rebuild traces from; none by default:
a dashboard reachable from a browser must not fetch whatever URL a visitor types."""


def prometheus_urls(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The allowed Prometheus base URLs (``$FLEETWISE_PROMETHEUS_URLS``), without trailing slashes."""
    env = os.environ if environ is None else environ
    return tuple(u.strip().rstrip("/") for u in env.get(PROMETHEUS_URLS_ENV, "").split(",") if u.strip())


def prometheus_source(url: str, range_text: str, *, step_s: float = 15.0, selector: str = "",
                      allowed: Sequence[str], now_s: float) -> TraceSource:
    """A trace rebuilt from a vLLM fleet's Prometheus history.

    ``now`` in ``range_text`` is ``now_s`` rounded down to the step, so a page rerun a few seconds later
    hits the cache instead of reading Prometheus again.

    Raises:
        InputError: a URL not in ``allowed``, a bad range or step.

    >>> allowed = ("http://prom:9090",)
    >>> try:
    ...     prometheus_source("http://evil:9090", "now-1h,now", allowed=allowed, now_s=0.0)
    ... except InputError as exc:
    ...     print(str(exc).split(" (")[0])
    http://evil:9090: not one of the dashboard's Prometheus servers
    >>> prometheus_source("http://prom:9090/", "now-1h,now", allowed=allowed, now_s=7265.0).range_s
    (3660.0, 7260.0)
    """
    from planner.live.time_range import parse_range

    base = url.strip().rstrip("/")
    if base not in allowed:
        raise InputError("not one of the dashboard's Prometheus servers", path=base,
                         expected=("one of " + ", ".join(allowed)) if allowed
                         else f"a server listed in {PROMETHEUS_URLS_ENV} (none is)")
    if not (math.isfinite(step_s) and step_s > 0):
        raise InputError(f"step {step_s:g}", field="step", expected="a positive number of seconds")
    start, end = parse_range(range_text, math.floor(now_s / step_s) * step_s)
    return TraceSource(kind="prometheus", path=base, label=f"rebuilt from {base}", selector=selector.strip(),
                       range_s=(start, end), step_s=step_s)


DATA_ROOTS_ENV = "FLEETWISE_DATA_ROOTS"
"""Folders (``os.pathsep``-separated) the dashboard may read traces from, besides its uploads."""


def data_roots(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The folders a path typed into the dashboard may lie under: ``$FLEETWISE_DATA_ROOTS``, else the
    working folder and the shared traces folder (``$FLEETWISE_SHARED_TRACES`` or the repository's)."""
    env = os.environ if environ is None else environ
    raw = env.get(DATA_ROOTS_ENV, "").strip()
    if raw:
        return tuple(Path(r).expanduser().resolve() for r in raw.split(os.pathsep) if r.strip())
    from planner.autoscale.workloads import shared_traces_root

    return (Path.cwd().resolve(), shared_traces_root().resolve())


def file_source(path: str | Path, *, format: str | None = None, label: str | None = None,
                roots: Sequence[Path] | None = None) -> TraceSource:
    """A trace file or ServeGen folder, stamped with its mtime and size.

    Args:
        path: the file or folder.
        format: reader name (None: detect).
        label: what the page calls it.
        roots: when given, the path (symlinks resolved) must lie under one of them: a dashboard reachable
            from a browser must not read whatever the process can (``/etc``, ``/proc``); the message
            never shows anything of the file.

    Raises:
        InputError: the path does not exist or lies outside ``roots``.

    >>> file_source("/no/such/trace.csv")
    Traceback (most recent call last):
    ...
    traces.errors.InputError: /no/such/trace.csv: no such file or folder (expected a trace file or folder)
    >>> try:
    ...     file_source("/etc/hostname", roots=[Path("/srv/traces")])
    ... except InputError as exc:
    ...     print(str(exc).split(" (")[0])
    /etc/hostname: outside the dashboard's data folders
    """
    p = Path(path).expanduser()
    if not str(path).strip():
        raise InputError("no path given", field="path", expected="a trace file or ServeGen folder")
    if roots is not None:
        real = Path(os.path.realpath(p))
        if not any(real == r or r in real.parents for r in roots):
            raise InputError("outside the dashboard's data folders", path=str(p),
                             expected="a trace under " + ", ".join(str(r) for r in roots)
                             + f" (set {DATA_ROOTS_ENV} to allow others)")
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
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / Path(name).name
    if not target.is_file() or target.is_symlink():
        target.unlink(missing_ok=True)
        # O_EXCL | O_NOFOLLOW: never write through a planted link
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return file_source(target, format=format, label=f"upload {Path(name).name}", roots=[dest_dir.resolve()])


def load_source(src: TraceSource) -> RequestTrace:
    """Load the trace a source names, validated by the trace layer.

    Raises:
        InputError: anything the readers or validators reject (file, row, field, expected).
    """
    from traces.default import DEFAULT_NAME, load_trace_arg

    if src.kind == "prometheus" and src.range_s is not None:
        from planner.live.reconstruct import trace_from_prometheus

        return trace_from_prometheus(src.path, *src.range_s, step_s=src.step_s, selector=src.selector)[0]
    name = (src.path or DEFAULT_NAME) if src.kind == "default" else src.path
    return load_trace_arg(name, format=src.format, start_s=src.start_s, duration_s=src.duration_s)


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
        engine: engine profile for scoring and verification (``bare`` or ``vllm``).
        replica_start_s: seconds each replica a window adds costs (None: from the model's size).
        min_dwell_windows: windows a started replica runs at least.
    """

    model: str
    gpus: tuple[str, ...]
    ttft_p99_s: float = 2.0
    tpot_p99_s: float = 0.1
    inventory: tuple[tuple[str, int], ...] = ()
    power_budget_kw: float | None = None
    disaggregation: str = "auto"
    window_s: float = 300.0
    time_limit_s: float = SolveParams.max_time_in_seconds  # the CLI's default too: one home
    verify: bool = True
    seed: int = 0
    engine: str = DEFAULT_ENGINE
    precision: str = "native"
    """``native``, ``all`` or labels (:func:`planner.perf.precision.parse_precisions`)."""
    replica_start_s: float | None = None
    min_dwell_windows: int = 1
    slo_statistic: str = "p99"
    """What the targets hold at: ``mean`` or a percentile such as ``p99``, or one per target as
    ``ttft=p99,tpot=mean`` (the CLI's --slo-statistic)."""
    slo_classes: tuple[str, ...] = ()
    """Per-class targets as ``NAME:TTFT_MS:TPOT_MS[:E2E_MS]`` (the CLI's --slo-class)."""
    e2e_s: float | None = None
    """End-to-end target, seconds (None: none; the CLI's --slo-e2e-ms)."""

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
        engine: the engine profile replayed (``bare`` or ``vllm``: :mod:`planner.perf.engine_profile`).
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
    engine: str = DEFAULT_ENGINE
    precision: str = "native"
    """``native`` or a label (:func:`planner.perf.precision.resolve_precision`)."""
    kv_tiers: tuple[str, ...] = ()
    """KV tiers below HBM, as ``--kv-tier`` takes them (``dram``, ``ssd:1000``; the catalog's kv_tiers)."""
    kv_overlap: bool = True
    """Tier loads overlap the step's compute (else they block before it)."""
    kv_swap_gb: float = 0.0
    """Host memory per GPU for preemption by swap (``--swap-space-gb``; needs a local tier)."""
    faults: str | None = None
    """Faults in the loop, as ``--faults`` takes them: a fault-trace file or ``synthetic``."""
    slow_per_replica_hour: float = 0.0
    """Synthetic faults: straggler episodes per replica-hour (fail-stop at the published rate)."""
    detect: str = "none"
    """The straggler detector: ``none``, ``flag`` or ``drain`` (:class:`planner.sim.faults.DetectMode`)."""
    closed_loop: bool = False
    """Later turns of a session wait for the previous one plus ``think_s`` (:mod:`planner.sim.session_loop`);
    not with faults yet."""
    spec_decode: str | None = None
    """Speculative decoding as ``--spec-decode`` takes it (``mtp``, ``eagle:k=3:accept=0.7``; None: off)."""
    ep: int = 1
    """Expert-parallel degree (MoE; divides ``tp``)."""
    dp_attention: bool = False
    """Attention data-parallel on the ``tp`` GPUs, experts shared by EP (``--dp-attention``)."""

    def __post_init__(self) -> None:
        _check_slo(self.ttft_s, self.tpot_s)
        if self.replicas < 1 or self.tp < 1 or self.ep < 1:
            raise InputError("replicas, TP and EP must be >= 1", field="replicas/tp/ep",
                             expected="integers >= 1")
        if self.spec_decode is not None:
            parse_spec_decode(self.spec_decode)  # refuse a bad setting when it is made

    @property
    def layout(self) -> Parallelism:
        """The replica's parallel layout (as ``replay --tp/--ep/--dp-attention`` builds it)."""
        return Parallelism(tp=self.tp, ep=self.ep, dp_attention=self.dp_attention)


def spec_decode_line(spec: ReplaySpec) -> str | None:
    """What the replay assumed about speculative decoding (the line the CLI prints), None when off.

    >>> spec_decode_line(ReplaySpec(model="Llama-3.1-8B", gpu="H100-SXM", spec_decode="mtp"))[:60]
    'speculative decoding mtp: k=1, acceptance 0.85 (default) -> '
    """
    return None if spec.spec_decode is None else parse_spec_decode(spec.spec_decode).describe()


def _check_slo(ttft_s: float, tpot_s: float) -> None:
    if not (math.isfinite(ttft_s) and math.isfinite(tpot_s) and ttft_s > 0 and tpot_s > 0):
        raise InputError("SLO targets must be positive", field="slo", expected="TTFT and TPOT > 0")


def run_plan(trace: RequestTrace, spec: PlanSpec) -> PlanReport:
    """Size the fleet with :func:`planner.plan.plan_fleet` (CP-SAT over scored candidates, replay-verified).

    Raises:
        InputError: unknown model or GPU names, or a request the planner rejects.
    """
    from planner.plan.slo_classes import classes_of, slo_at
    from solvers.capacity import Disaggregation, SolveParams

    cat = load_catalog()
    slo = slo_at(spec.ttft_p99_s * 1e3, spec.tpot_p99_s * 1e3, spec.slo_statistic,
                 None if spec.e2e_s is None else spec.e2e_s * 1e3)
    request = PlanRequest(
        model=cat.model(spec.model),
        gpus=tuple(cat.gpu(g) for g in spec.gpus),
        slo=slo,
        classes=classes_of(spec.slo_classes, slo),
        window_s=spec.window_s,
        inventory=spec.inventory,
        power_budget_w=None if spec.power_budget_kw is None else spec.power_budget_kw * 1e3,
        disaggregation=Disaggregation(spec.disaggregation),
        params=SolveParams(max_time_in_seconds=spec.time_limit_s, random_seed=spec.seed),
        verify=spec.verify,
        seed=spec.seed,
        engine=spec.engine,
        precisions=parse_precisions(spec.precision, cat.model(spec.model)),
        start_s=spec.replica_start_s,
        min_dwell_windows=spec.min_dwell_windows,
    )
    return plan_fleet(trace, request)


def planned_fleet(report: PlanReport) -> tuple[str, int, int, int, int, str] | None:
    """The plan's main configuration as ``(gpu, tp, peak replicas, max_num_seqs, max_batched_tokens,
    precision label)``.

    Why only one: the Replay page replays one configuration; for a plan that mixes configurations (or
    splits prefill and decode) it starts from the one with the most GPU-hours.
    """
    lines = report.cost_breakdown()
    if not report.plan.feasible or not lines:
        return None
    main = max(lines, key=lambda line: line.gpu_hours)
    cfg = next(c for c in report.plan.configs if c.key == main.config)
    return (cfg.gpu, cfg.tp, main.peak_replicas, cfg.max_num_seqs, cfg.max_batched_tokens,
            Precision(cfg.weight_dtype, cfg.kv_dtype).label)


def engine_line(engine: str, gpu: str) -> str:
    """Where the replay's engine numbers come from (the same line the CLI prints)."""
    return engine_perf_inputs(engine, load_catalog().gpu(gpu))[0].describe()


def replay_inputs(spec: ReplaySpec) -> tuple[ReplicaPerf, SimConfig, GPUSpec]:
    """The perf model, replay config and GPU of ``spec`` (one builder for the replay and the tier study)."""
    cat = load_catalog()
    prof, cal, gpu = engine_perf_inputs(spec.engine, cat.gpu(spec.gpu))
    prec = resolve_precision(spec.precision, cat.model(spec.model))
    perf = build_replica_perf(cat.model(spec.model), gpu, spec.layout, calibration=cal,
                              weight_dtype=prec.weights, kv_dtype=prec.kv,
                              spec_decode=None if spec.spec_decode is None else parse_spec_decode(
                                  spec.spec_decode))
    config = SimConfig(
        replicas=spec.replicas,
        router=RouterName(spec.router),
        seed=spec.seed,
        interval_s=spec.interval_s,
        engine=EngineConfig(max_num_seqs=spec.max_num_seqs,
                            max_batched_tokens=spec.max_batched_tokens).with_profile(prof),
        default_slo=SLOTarget(ttft_s=spec.ttft_s, tpot_s=spec.tpot_s),
        kv_tiers=tiers_from_names(cat.kv_tiers, spec.kv_tiers, overlap=spec.kv_overlap,
                                  swap_gb=spec.kv_swap_gb),
        closed_loop=spec.closed_loop,
    )
    return perf, config, gpu


def _with_faults(trace: RequestTrace, spec: ReplaySpec, perf: ReplicaPerf, config: SimConfig) -> SimConfig:
    from planner.sim.faults import DetectMode, fault_config

    faults = fault_config(spec.faults, replicas=spec.replicas, gpus_per_replica=perf.gpus,
                          horizon_s=float(trace.df["arrival_s"].to_numpy().max(initial=0.0)), seed=spec.seed,
                          slow_per_replica_hour=spec.slow_per_replica_hour, detect=DetectMode(spec.detect))
    return config if faults is None else replace(config, faults=faults)


def run_replay(trace: RequestTrace, spec: ReplaySpec, *, progress: ProgressFn | None = None) -> SimResult:
    """Replay the trace through ``spec.replicas`` replicas with :func:`planner.sim.replay`.

    Raises:
        InputError: unknown names, a layout that does not fit the GPU, or a trace the engine rejects.
    """
    perf, config, gpu = replay_inputs(spec)
    config = _with_faults(trace, spec, perf, config)
    from planner.sim.prefix_bound import fleet_kv_tokens, with_prefix_bound

    result = replay(trace, perf, config=config, gpu=gpu, progress=progress)
    return with_prefix_bound(result, trace,
                             capacity_tokens=fleet_kv_tokens(perf, spec.replicas, config.kv_tiers))


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
    gpu, tp, replicas, seqs, tokens, precision = fleet
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
        precision=precision,
    ), True


# --- jobs: what the pages run in a child process (dashboards.jobs) ---------------------------------------
# Each takes hashable inputs (the page's cache key) and ``report``, loads the trace itself (a path and an
# mtime travel to the child, not a 20,000-row frame) and returns what the page draws.


def source_trace(src: TraceSource, load_factor: float, seed: int) -> RequestTrace:
    """The trace of ``src`` at ``load_factor`` times its rate (what every job starts from)."""
    return with_load(load_source(src), load_factor, seed=seed)


def replay_job(
    src: TraceSource, load_factor: float, seed: int, spec: ReplaySpec, *, report: Report
) -> SimResult:
    """:func:`run_replay` with the simulator's request count as progress."""
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    return run_replay(
        tr, spec, progress=lambda done, n: report(done / max(n, 1), f"replayed {done:,} of {n:,} requests")
    )


def run_kv_tier_study(trace: RequestTrace, spec: ReplaySpec, *,
                      tiers: Sequence[str] = ("dram", "ssd", "remote"), target: float = 0.99,
                      cost_aware: bool = False, max_replicas: int = 256,
                      progress: Callable[[str, int, float], None] | None = None) -> TierStudy:
    """Does a KV tier pay for itself on this fleet's layout? (:func:`planner.tier_study.run_tier_study`;
    ``spec``'s router, engine, SLOs and GPU layout; its replica count starts the search.)"""
    from planner.tier_study import ablation_cases, run_tier_study

    perf, config, gpu = replay_inputs(replace(spec, kv_tiers=()))
    cases = ablation_cases(load_catalog().kv_tiers, tiers, overlap=spec.kv_overlap, cost_aware=cost_aware)
    return run_tier_study(trace, perf, config=config, gpu=gpu, cases=cases, target=target,
                          max_replicas=max_replicas, progress=progress)


def run_spares_study(trace: RequestTrace, spec: ReplaySpec, *, availability: float = 0.999,
                     rate_scale: float = 1.0, seeds: Sequence[int] = (0, 1, 2)) -> SparesStudy:
    """How many spare replicas ``spec``'s fleet needs for ``availability`` under fail-stop faults at the
    published rate times ``rate_scale`` (:func:`planner.spares_study.run_spares_study`); the one path of
    ``plan --availability``, ``report --kind spares`` and the Replay page."""
    from planner.sim.faults import FaultRates
    from planner.spares_study import run_spares_study as study

    perf, config, gpu = replay_inputs(spec)
    base = FaultRates()
    rates = replace(base, fail_per_gpu_hour=base.fail_per_gpu_hour * rate_scale)
    return study(trace, perf, config=config, gpu=gpu, rates=rates, target=availability, seeds=tuple(seeds))


def spares_job(src: TraceSource, load_factor: float, seed: int, spec: ReplaySpec, availability: float,
               rate_scale: float, *, report: Report) -> SparesStudy:
    """:func:`run_spares_study` (3 fault seeds from the page's seed)."""
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    report(None, "replaying each spare count under 3 fault histories")
    return run_spares_study(tr, spec, availability=availability, rate_scale=rate_scale,
                            seeds=(seed, seed + 1, seed + 2))


def kv_tier_job(src: TraceSource, load_factor: float, seed: int, spec: ReplaySpec, *,
                report: Report) -> TierStudy:
    """:func:`run_kv_tier_study` with each replay as progress."""
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    return run_kv_tier_study(tr, spec, progress=lambda case, n, att: report(
        None, f"{case}: {n} replicas -> {att:.1%} within the SLO"))


def plan_job(
    src: TraceSource, load_factor: float, seed: int, spec: PlanSpec, *, report: Report
) -> PlanReport:
    """:func:`run_plan` (the planner reports no progress of its own: scoring, CP-SAT, verification)."""
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    report(None, "scoring candidates, solving, verifying by replay")
    return run_plan(tr, spec)


def scenario_job(
    src: TraceSource,
    seed: int,
    case: Scenario,
    model: str,
    router: str,
    ttft_s: float,
    tpot_s: float,
    *,
    report: Report,
) -> ScenarioOutcome:
    """Size (when asked) and replay one Compare scenario."""
    report(None, f"{case.name}: loading the trace")
    tr = source_trace(src, case.load_factor, seed)
    if case.replicas == 0:
        report(None, f"{case.name}: sizing the fleet with the planner")
    spec, planned = scenario_spec(
        tr, case, model=model, router=router, ttft_s=ttft_s, tpot_s=tpot_s, seed=seed
    )
    result = run_replay(
        tr,
        spec,
        progress=lambda done, n: report(
            done / max(n, 1), f"{case.name}: replayed {done:,} of {n:,} requests"
        ),
    )
    return ScenarioOutcome(scenario=case, spec=spec, planned=planned, result=result)


@dataclass(frozen=True)
class AutoscaleSpec:
    """Inputs of an autoscaler comparison besides the trace (``fleetwise autoscale-compare``'s flags).

    Attributes:
        model, gpu, tp: one replica.
        policies: :class:`planner.autoscale.context.PolicyName` values to compare.
        ttft_s, tpot_s: SLO targets.
        min_replicas, max_replicas: bounds for every policy.
        cold_start_median_s: median cold start (None: the shipped fit).
        tick_s: control tick.
        static_reference: also replay the static fleet sized for the peak.
        seed: cold-start draws.
        engine: the engine profile replayed (``bare`` or ``vllm``: :mod:`planner.perf.engine_profile`).
    """

    model: str
    gpu: str
    tp: int = 1
    policies: tuple[str, ...] = ()
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    min_replicas: int = 1
    max_replicas: int = 64
    cold_start_median_s: float | None = None
    tick_s: float = 5.0
    static_reference: bool = True
    seed: int = 0
    engine: str = DEFAULT_ENGINE
    precision: str = "native"
    """``native`` or a label (:func:`planner.perf.precision.resolve_precision`)."""

    def __post_init__(self) -> None:
        _check_slo(self.ttft_s, self.tpot_s)
        if not self.policies:
            raise InputError("no policy selected", field="policies", expected="at least one policy")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InputError(
                f"bounds {self.min_replicas}..{self.max_replicas}",
                field="min_replicas/max_replicas",
                expected="1 <= min <= max",
            )
        if self.cold_start_median_s is not None and not self.cold_start_median_s > 0:
            raise InputError(
                "cold start must be positive", field="cold_start_median_s", expected="seconds > 0"
            )


def autoscale_job(
    src: TraceSource, load_factor: float, seed: int, spec: AutoscaleSpec, *, report: Report
) -> Comparison:
    """:func:`planner.autoscale.compare.compare_autoscalers` with every policy in the replay loop.

    Raises:
        InputError: unknown names, a layout that does not fit, or an SLO no replica can meet.
    """
    from planner.autoscale.compare import CompareConfig, compare_autoscalers
    from planner.autoscale.context import PolicyName
    from planner.sim.coldstart import ColdStartShape, cold_start_for

    names: list[PolicyName] = []
    for p in spec.policies:
        try:
            names.append(PolicyName(p))
        except ValueError:
            raise InputError(
                f"unknown policy {p!r}", field="policies", expected=", ".join(n.value for n in PolicyName)
            ) from None
    # the CLI's cold start (the fitted mixture, re-centred on a given median): one rule for both surfaces
    cold = cold_start_for(ColdStartShape.MIXTURE, median_s=spec.cold_start_median_s)
    cat = load_catalog()
    prof, cal, gpu = engine_perf_inputs(spec.engine, cat.gpu(spec.gpu))
    cfg = CompareConfig(
        engine=EngineConfig().with_profile(prof),
        slo=SLOTarget(ttft_s=spec.ttft_s, tpot_s=spec.tpot_s),
        cold_start=cold,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        tick_s=spec.tick_s,
        seed=spec.seed,
        static_reference=spec.static_reference,
    )
    prec = resolve_precision(spec.precision, cat.model(spec.model))
    perf = build_replica_perf(cat.model(spec.model), gpu, Parallelism(tp=spec.tp), calibration=cal,
                              weight_dtype=prec.weights, kv_dtype=prec.kv)
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    total = len(names) + (1 if spec.static_reference else 0)
    done: list[str] = []

    def on_policy(name: str) -> None:
        report(len(done) / total, f"replaying with {name} ({len(done) + 1} of {total})")
        done.append(name)

    report(0.0, "measuring one replica's capacity at the SLO (calibration replays)")
    return compare_autoscalers(tr, perf, policies=names, config=cfg, on_policy=on_policy)


@dataclass(frozen=True)
class PowerSpec:
    """Inputs of a row power study besides the trace (``fleetwise power``'s flags).

    Attributes:
        model, gpu, tp: what the servers run.
        nameplate_servers: servers the row budget is sized for at nameplate.
        pool_servers: servers replayed (the most a plan may deploy, the end of the Pareto curve).
        rps_per_server: requests/s each server carries.
        server_base_w: non-GPU watts per server.
        hp_share: least share of high-priority servers.
        max_capped: fraction of time capped allowed.
        hp_inflation, lp_inflation: p99 TTFT/TPOT inflation allowed per tier.
        ttft_s, tpot_s: SLO targets.
        pareto_step: server step of the Pareto curve.
        time_limit_s: CP-SAT time limit.
        seed: CP-SAT seed.
        engine: the engine profile replayed (``bare`` or ``vllm``).
        precision: the replicas' weights and KV dtypes (``native`` or a label).
    """

    model: str
    gpu: str
    tp: int = 1
    nameplate_servers: int = 4
    pool_servers: int = 6
    rps_per_server: float = 4.0
    server_base_w: float = DEFAULT_BASE_W  # sourced in planner/contracts/power.py
    hp_share: float = 0.5
    max_capped: float = 0.01
    hp_inflation: float = 0.05
    lp_inflation: float = 0.10
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    pareto_step: int = 1
    time_limit_s: float = 10.0
    seed: int = 0
    engine: str = DEFAULT_ENGINE
    precision: str = "native"

    def __post_init__(self) -> None:
        _check_slo(self.ttft_s, self.tpot_s)
        if not 1 <= self.nameplate_servers <= self.pool_servers:
            raise InputError(
                f"{self.nameplate_servers} nameplate servers, pool of {self.pool_servers}",
                field="nameplate_servers/pool_servers",
                expected="1 <= nameplate <= pool",
            )
        if not (self.rps_per_server > 0 and self.server_base_w >= 0 and self.time_limit_s > 0):
            raise InputError(
                "rate, base power and time limit must be positive",
                field="rps_per_server/server_base_w/time_limit_s",
                expected="numbers > 0",
            )


@dataclass(frozen=True, eq=False)
class CappingTimeline:
    """What POLCA capping did over the first replayed scenario at one row size.

    Attributes:
        servers, hp_servers: the row.
        t1, t2: the thresholds (fractions of the budget).
        t_s: telemetry sample starts.
        row_w: row power with the locks in force.
        row_unlocked_w: row power had nothing been locked.
        hp_locked, lp_locked: servers of each tier locked per sample (time-weighted).
        capped_fraction, brake_events: the run's own totals.
    """

    servers: int
    hp_servers: int
    t1: float
    t2: float
    t_s: tuple[float, ...]
    row_w: tuple[float, ...]
    row_unlocked_w: tuple[float, ...]
    hp_locked: tuple[float, ...]
    lp_locked: tuple[float, ...]
    capped_fraction: float
    brake_events: int


@dataclass(frozen=True, eq=False)
class PowerOutcome:
    """A power study reduced to what the page draws (the replayed row itself stays in the child).

    Attributes:
        budget_w, base_w: the row budget and the base power per server.
        nameplate: servers at nameplate.
        dynamo: Dynamo's rule on the same row.
        verified: our plan and its verification by replay.
        plan_attainment: SLO attainment of the plan's requests with the locks (worst tier).
        pareto: the Pareto table (:data:`planner.power_study.plan.PARETO_SCHEMA`).
        timelines: capping timeline per row size (the plan's and each Pareto row's).
        wall_s: the study's wall time.
    """

    budget_w: float
    base_w: float
    nameplate: int
    dynamo: DynamoBaseline
    verified: VerifiedPlan
    plan_attainment: float
    pareto: pl.DataFrame
    timelines: dict[int, CappingTimeline]
    wall_s: float


def power_job(
    src: TraceSource, load_factor: float, seed: int, spec: PowerSpec, *, report: Report
) -> PowerOutcome:
    """:func:`planner.power_study.study.run_study` (as ``fleetwise power`` runs it) plus the capping
    timelines.

    Raises:
        InputError: unknown names, a layout that does not fit a server, or a bad row description.
    """
    from dataclasses import replace

    from planner.contracts.power import HP, PolcaParams
    from planner.power_study.plan import Targets
    from planner.power_study.row import RowSpec, run_row
    from planner.power_study.study import run_study
    from solvers.power.problem import SolveParams as PowerSolveParams

    cat = load_catalog()
    gpu = cat.gpu(spec.gpu)
    model = cat.model(spec.model)
    row_spec = RowSpec(
        gpus_per_server=gpu.gpus_per_node,
        tp=spec.tp,
        nameplate_servers=spec.nameplate_servers,
        pool_servers=spec.pool_servers,
        rps_per_server=spec.rps_per_server,
        base_w=spec.server_base_w,
        slo=SLOTarget(ttft_s=spec.ttft_s, tpot_s=spec.tpot_s),
        seeds=(spec.seed,),
        engine=spec.engine,
        precision=spec.precision,
    )
    report(None, "loading the trace")
    tr = source_trace(src, load_factor, seed)
    report(
        None,
        f"replaying {spec.pool_servers} servers at {spec.rps_per_server:g} req/s each, planning with CP-SAT, "
        "verifying, tracing the Pareto curve",
    )
    policy = PolcaParams()
    study = run_study(
        tr,
        model=model,
        gpu=gpu,
        spec=row_spec,
        policy=policy,
        targets=Targets(
            max_capped_fraction=spec.max_capped,
            hp_inflation=spec.hp_inflation,
            lp_inflation=spec.lp_inflation,
        ),
        params=PowerSolveParams(time_limit_s=spec.time_limit_s, seed=spec.seed),
        min_hp_share=spec.hp_share,
        pareto_step=spec.pareto_step,
    )
    report(None, "capping timelines")
    plan = study.verified.plan
    sizes = {plan.servers: (plan.hp_servers, plan.t1, plan.t2)}
    for r in study.pareto.iter_rows(named=True):
        sizes.setdefault(int(r["servers"]), (int(r["hp_servers"]), float(r["t1"]), float(r["t2"])))
    timelines: dict[int, CappingTimeline] = {}
    scen = study.row.scenarios[0]
    for n, (hp, t1, t2) in sorted(sizes.items()):
        run, prio = run_row(
            study.row, scen, hp_servers=hp, lp_servers=n - hp, policy=replace(policy, t1=t1, t2=t2)
        )
        is_hp = np.array([p == HP for p in prio])
        timelines[n] = CappingTimeline(
            servers=n,
            hp_servers=hp,
            t1=t1,
            t2=t2,
            t_s=tuple(float(x) for x in run.t_s),
            row_w=tuple(float(x) for x in run.row_w),
            row_unlocked_w=tuple(float(x) for x in run.row_unlocked_w),
            hp_locked=tuple(float(x) for x in run.locked_share[:, is_hp].sum(axis=1)),
            lp_locked=tuple(float(x) for x in run.locked_share[:, ~is_hp].sum(axis=1)),
            capped_fraction=run.capped_fraction,
            brake_events=run.brake_events,
        )
    return PowerOutcome(
        budget_w=study.row.budget_w,
        base_w=study.row.spec.base_w,
        nameplate=study.nameplate,
        dynamo=study.dynamo,
        verified=study.verified,
        plan_attainment=study.plan_attainment,
        pareto=study.pareto,
        timelines=timelines,
        wall_s=study.wall_s,
    )

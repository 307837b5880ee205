"""A row of servers serving a trace: replayed once, then planned and verified against.

:func:`build_row` replays a request trace scaled to a pool of servers (every server at the same load, as
POLCA's experiment adds servers that carry proportionally more traffic), keeps the per-server power
timeline, the per-request results and the clock model, and sizes the row budget by nameplate for
``nameplate_servers``. :func:`scenarios` turns it into the solver's :class:`PowerScenario` list and
:func:`estimate` screens a plan by running the POLCA policy tick by tick over the first ``n`` servers'
replayed power and adding the locks' slowdown to the replayed requests (a model, used to choose which
points to verify); the verdict on a plan is :func:`planner.power_study.verify.verify_by_replay`, with the
policy in the simulator loop.

Server base (non-GPU) power: :data:`planner.contracts.power.DEFAULT_BASE_W`, sourced there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from planner.catalog.schema import GPUSpec, ModelSpec
from planner.contracts.power import DEFAULT_BASE_W, HP, LP, ClockModel, PolcaParams
from planner.perf import Parallelism, build_replica_perf
from planner.perf.api import ReplicaPerf
from planner.perf.engine_profile import DEFAULT_ENGINE, ENGINES, engine_perf_inputs
from planner.perf.precision import resolve_precision
from planner.power.latency import TierLatency, estimate_inflation
from planner.power.simulate import PolicyRun, run_policy
from planner.power.timeline import PowerTimeline, clock_model_from_perf, mix_from_replay, timeline_from_replay
from planner.power_study.verify import RowReplay
from planner.sim import EngineConfig, SimConfig, SLOTarget, replay
from planner.sim.result import SimResult
from solvers.power.problem import PowerPlan, PowerScenario
from traces.errors import InputError
from traces.schema import RequestTrace
from traces.transforms import scale_rate

I64 = NDArray[np.int64]


@dataclass(frozen=True)
class RowSpec:
    """What the row is and what it serves.

    Attributes:
        gpus_per_server: from the GPU spec (servers are the standard 8-GPU boards).
        tp: tensor-parallel degree of a replica (divides ``gpus_per_server``).
        nameplate_servers: servers the row's budget was sized for at nameplate (TDP x GPUs + base).
        pool_servers: servers replayed (the most the plan may deploy).
        rps_per_server: request rate each server carries (the trace is scaled to the pool).
        base_w: non-GPU power of a server (CPUs, NICs, switches, fans), assumed constant
            (default :data:`~planner.contracts.power.DEFAULT_BASE_W`, sourced there).
        slo: latency targets for attainment.
        interval_s: power sample length of the replay (finer than the telemetry period).
        seeds: one scenario per seed (the scaled trace's copies are shifted by seeded offsets).
        sm_clock_mhz: a static clock lock on every GPU of the row (None = unlocked); the policy's locks
            act below it. Static locks are verified by the replay itself, not estimated.
        engine: engine profile the replays model (``bare`` or ``vllm``: its step terms, hand-over,
            power coefficients and throttling; :mod:`planner.perf.engine_profile`).
        precision: weights and KV dtypes of the replicas: ``native`` or a label
            (:func:`planner.perf.precision.resolve_precision`).
    """

    gpus_per_server: int = 8
    tp: int = 8
    nameplate_servers: int = 40
    pool_servers: int = 64
    rps_per_server: float = 4.0
    base_w: float = DEFAULT_BASE_W
    slo: SLOTarget = field(default_factory=lambda: SLOTarget(ttft_s=2.0, tpot_s=0.1))
    interval_s: float = 1.0
    seeds: tuple[int, ...] = (0,)
    sm_clock_mhz: float | None = None
    engine: str = DEFAULT_ENGINE
    precision: str = "native"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}", field="engine", expected=", ".join(ENGINES))
        if self.tp < 1 or self.gpus_per_server % self.tp:
            raise InputError(
                f"tp={self.tp} does not divide the {self.gpus_per_server} GPUs of a server",
                field="tp",
                expected="a divisor of the GPUs per server (1, 2, 4, 8)",
            )
        if not 1 <= self.nameplate_servers <= self.pool_servers:
            raise InputError(
                f"nameplate servers {self.nameplate_servers}, pool {self.pool_servers}",
                field="pool_servers",
                expected="pool_servers >= nameplate_servers >= 1",
            )
        if not self.rps_per_server > 0:
            raise InputError(f"rate {self.rps_per_server}", field="rps_per_server", expected="requests/s > 0")
        if self.base_w < 0:
            raise InputError(f"base power {self.base_w} W", field="base_w", expected="watts >= 0")
        if not self.seeds:
            raise InputError("no seed", field="seeds", expected="at least one scenario seed")

    @property
    def replicas_per_server(self) -> int:
        return self.gpus_per_server // self.tp


@dataclass(frozen=True, eq=False)
class RowScenario:
    """One replay of the pool: its requests and the per-server unlocked power."""

    seed: int
    result: SimResult
    timeline: PowerTimeline


@dataclass(frozen=True, eq=False)
class Row:
    """A replayed row, ready to plan and verify.

    Attributes:
        spec: the row description.
        gpu: the GPU type.
        perf: one replica's performance model (unlocked).
        budget_w: nameplate budget of ``spec.nameplate_servers`` servers.
        scenarios: one replay per seed.
        server_of_replica: the server each replica of the pool runs on.
        clock_model: effect of clock locks at the workload's average step.
        trace: the (unscaled) request trace the row serves; verification replays scale it again.
    """

    spec: RowSpec
    gpu: GPUSpec
    perf: ReplicaPerf
    budget_w: float
    scenarios: tuple[RowScenario, ...]
    server_of_replica: I64
    clock_model: ClockModel
    trace: RequestTrace
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def replay_setup(self) -> RowReplay:
        """What :func:`planner.power_study.verify.verify_by_replay` needs from this row."""
        return RowReplay(
            perf=self.perf,
            gpu=self.gpu,
            replicas_per_server=self.spec.replicas_per_server,
            budget_w=self.budget_w,
            base_w=self.spec.base_w,
            slo=self.spec.slo,
            engine=self.engine,
        )

    @property
    def nameplate_server_w(self) -> float:
        """Nameplate of one server: TDP x GPUs + base."""
        return self.gpu.tdp_w * self.spec.gpus_per_server + self.spec.base_w


def pool_config(spec: RowSpec, seed: int, engine: EngineConfig) -> SimConfig:
    """The replay configuration of the pool (one shard, least-outstanding routing)."""
    return SimConfig(
        engine=engine,
        replicas=spec.pool_servers * spec.replicas_per_server,
        interval_s=spec.interval_s,
        seed=seed,
        default_slo=spec.slo,
        servers_per_rack=4,
        racks_per_row=max(1, -(-spec.pool_servers // 4)),
    )


def build_row(
    trace: RequestTrace, *, model: ModelSpec, gpu: GPUSpec, spec: RowSpec, policy: PolcaParams
) -> Row:
    """Replay ``trace`` scaled to ``spec.pool_servers`` servers at ``spec.rps_per_server`` each.

    Raises:
        InputError: a layout that does not fit, an empty trace, or a spec that does not match the GPU.
    """
    if spec.gpus_per_server != gpu.gpus_per_node:
        raise InputError(
            f"{spec.gpus_per_server} GPUs per server, {gpu.name} boards have {gpu.gpus_per_node}",
            field="gpus_per_server",
            expected=str(gpu.gpus_per_node),
        )
    if trace.num_requests < 2 or trace.duration_s <= 0:
        raise InputError(
            "the trace has fewer than two requests",
            path=trace.meta.source,
            field="arrival_s",
            expected="a trace spanning some time",
        )
    prof, cal, gpu = engine_perf_inputs(spec.engine, gpu)
    engine = EngineConfig().with_profile(prof)
    prec = resolve_precision(spec.precision, model)
    perf = build_replica_perf(model, gpu, Parallelism(tp=spec.tp), sm_clock_mhz=spec.sm_clock_mhz,
                              calibration=cal, weight_dtype=prec.weights, kv_dtype=prec.kv)
    top = gpu.max_sm_clock_mhz if spec.sm_clock_mhz is None else spec.sm_clock_mhz
    factor = spec.pool_servers * spec.rps_per_server * trace.duration_s / trace.num_requests
    scen = []
    for seed in spec.seeds:
        scaled = scale_rate(trace, factor, seed=seed)
        res = replay(scaled, perf, config=pool_config(spec, seed, engine), gpu=gpu)
        scen.append(
            RowScenario(
                seed=seed, result=res, timeline=timeline_from_replay(res.power, source=f"replay seed {seed}")
            )
        )
    first = scen[0].result
    clocks = {
        policy.lp_clock_mhz,
        policy.lp_min_clock_mhz,
        policy.hp_clock_mhz,
        policy.brake_clock_mhz,
        float(gpu.min_sm_clock_mhz),
    }
    clocks = {c for c in clocks if gpu.min_sm_clock_mhz <= c < top}
    cm = clock_model_from_perf(
        perf,
        mix=mix_from_replay(first.timeseries, first.requests),
        max_clock_mhz=top,
        idle_w=float(perf.step_power_w(0.0, 0.0, 0.0, 0.0)),
        gpus_per_server=spec.gpus_per_server,
        clocks_mhz=sorted(clocks),
    )
    reps = spec.pool_servers * spec.replicas_per_server
    sor = (np.arange(reps, dtype=np.int64) * spec.tp) // spec.gpus_per_server
    budget = spec.nameplate_servers * (gpu.tdp_w * spec.gpus_per_server + spec.base_w)
    return Row(
        spec=spec,
        gpu=gpu,
        perf=perf,
        budget_w=float(budget),
        scenarios=tuple(scen),
        server_of_replica=sor,
        clock_model=cm,
        trace=trace,
        engine=engine,
    )


def scenarios(row: Row, *, telemetry_period_s: float) -> tuple[PowerScenario, ...]:
    """The solver's scenarios: mean server GPU watts per telemetry period, same series for both tiers
    (every server carries the same traffic; tiers differ only in how they are capped)."""
    out = []
    for sc in row.scenarios:
        tl = sc.timeline.resample(telemetry_period_s)
        mean = tl.gpu_w.mean(axis=1)
        out.append(PowerScenario(name=f"seed{sc.seed}", hp_gpu_w=mean, lp_gpu_w=mean.copy()))
    return tuple(out)


@dataclass(frozen=True)
class Verification:
    """A plan's model estimate from the replayed power and requests (pooled over scenarios).

    Attributes:
        servers, hp_servers: the row checked.
        t1, t2: thresholds used.
        capped_fraction: time with any server locked (mean over scenarios).
        hp_locked_fraction, lp_locked_fraction: per tier.
        brake_events: total over scenarios.
        peak_row_fraction: highest row power over the budget (locks in force).
        hp, lp: worst tier latency over scenarios (None when the tier is empty).
    """

    servers: int
    hp_servers: int
    t1: float
    t2: float
    capped_fraction: float
    hp_locked_fraction: float
    lp_locked_fraction: float
    brake_events: int
    peak_row_fraction: float
    hp: TierLatency | None
    lp: TierLatency | None

    def meets(self, *, max_capped_fraction: float, hp_inflation: float, lp_inflation: float) -> bool:
        """Whether the targets hold: time capped, no brake, p99 inflation per tier."""
        return (
            self.capped_fraction <= max_capped_fraction + 1e-12
            and self.brake_events == 0
            and (self.hp is None or self.hp.inflation <= hp_inflation)
            and (self.lp is None or self.lp.inflation <= lp_inflation)
        )


def _worse(a: TierLatency | None, b: TierLatency) -> TierLatency:
    return b if a is None or b.inflation > a.inflation else a


def run_row(
    row: Row, scenario: RowScenario, *, hp_servers: int, lp_servers: int, policy: PolcaParams
) -> tuple[PolicyRun, tuple[str, ...]]:
    """Run ``policy`` over the first ``hp_servers + lp_servers`` servers of one scenario."""
    n = hp_servers + lp_servers
    prio = tuple([HP] * hp_servers + [LP] * lp_servers)
    run = run_policy(
        scenario.timeline.first(n),
        priorities=prio,
        budget_w=row.budget_w,
        base_w=row.spec.base_w,
        params=policy,
        clock_model=row.clock_model,
    )
    return run, prio


def estimate(row: Row, *, hp_servers: int, lp_servers: int, policy: PolcaParams) -> Verification:
    """Estimate a row size and thresholds over every scenario of ``row`` (policy over the replayed
    power, lock slowdown added to the replayed requests: no spill-over of queues; a screen, not a verdict).

    Raises:
        InputError: more servers than the replayed pool.
    """
    n = hp_servers + lp_servers
    if not 1 <= n <= row.spec.pool_servers:
        raise InputError(
            f"{n} servers asked of a pool of {row.spec.pool_servers}",
            field="servers",
            expected=f"1..{row.spec.pool_servers} (replay a larger pool)",
        )
    capped, hpf, lpf, peak = [], [], [], []
    brakes = 0
    hp_lat: TierLatency | None = None
    lp_lat: TierLatency | None = None
    for sc in row.scenarios:
        run, prio = run_row(row, sc, hp_servers=hp_servers, lp_servers=lp_servers, policy=policy)
        capped.append(run.capped_fraction)
        hpf.append(run.hp_locked_fraction)
        lpf.append(run.lp_locked_fraction)
        peak.append(run.peak_row_w / row.budget_w)
        brakes += run.brake_events
        for tl in estimate_inflation(
            sc.result.requests,
            run,
            server_of_replica=row.server_of_replica,
            priorities=prio,
            slo_ttft_s=row.spec.slo.ttft_s,
            slo_tpot_s=row.spec.slo.tpot_s,
        ):
            if tl.tier == HP:
                hp_lat = _worse(hp_lat, tl)
            else:
                lp_lat = _worse(lp_lat, tl)
    return Verification(
        servers=n,
        hp_servers=hp_servers,
        t1=policy.t1,
        t2=policy.t2,
        capped_fraction=float(np.mean(capped)),
        hp_locked_fraction=float(np.mean(hpf)),
        lp_locked_fraction=float(np.mean(lpf)),
        brake_events=brakes,
        peak_row_fraction=float(max(peak)),
        hp=hp_lat,
        lp=lp_lat,
    )


def estimate_plan(row: Row, plan: PowerPlan, policy: PolcaParams) -> Verification:
    """:func:`estimate` at the plan's size and thresholds."""
    return estimate(
        row,
        hp_servers=plan.hp_servers,
        lp_servers=plan.lp_servers,
        policy=replace(policy, t1=plan.t1, t2=plan.t2),
    )

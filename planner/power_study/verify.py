"""Verify a row plan by replay, with POLCA capping *in* the simulator loop.

A plan (servers per priority tier, thresholds ``t1``/``t2``) is checked the way it would run: the row's
trace is scaled to the plan's servers (each server carries ``rps_per_server``), requests are split between
a high-priority and a low-priority pool in proportion to their servers (two pools of the same model, as
POLCA's tiers are), and the cluster is replayed twice:

* **capped**: :func:`planner.sim.cluster.replay_cluster` with ``PowerConfig(policy=make_polca(...))``:
  every telemetry period the policy sees each server's power (GPUs from the perf model's per-step power,
  plus the non-GPU base), its clock locks take effect after the actuation latency, and locked replicas
  run their steps through ``ReplicaPerf.at_clock``. Queues that build while a server is locked and drain
  after it are in the per-request results.
* **reference**: the same two pools without any capping. Uncapped pools share nothing, so each tier is a
  plain :func:`planner.sim.replay` of its own requests.

The verdict compares p99 TTFT and TPOT per tier (capped vs reference), takes the fraction of time capped
and the brake events from the simulator's capping statistics, and the time each tier was locked from the
levels the policy decided (recorded by a wrapper around the policy, local to one verification).

>>> tier_of_requests(6, hp_share=0.5, seed=0).tolist()
['lp', 'lp', 'lp', 'hp', 'hp', 'hp']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.contracts.power import HP, LP, CapDecision, CapLevel, CappingPolicy, PolcaParams, PowerContext
from planner.power.latency import TierLatency
from planner.power.policy import PolcaState, make_polca
from planner.sim import EngineConfig, SimConfig, SLOTarget, replay
from planner.sim.cluster import replay_cluster
from planner.sim.config import PowerConfig
from planner.sim.pools import ClusterConfig, Pool
from planner.sim.replay import splitmix64_np
from planner.sim.result import SimResult
from traces.errors import InputError
from traces.schema import RequestTrace
from traces.transforms import scale_rate

F64 = NDArray[np.float64]


def tier_of_requests(n: int, *, hp_share: float, seed: int) -> NDArray[np.str_]:
    """``"hp"``/``"lp"`` for each of ``n`` requests: a seeded hash of the request index below
    ``hp_share`` is high priority (deterministic, independent of arrival order and of the row size)."""
    if not 0.0 <= hp_share <= 1.0:
        raise InputError(f"hp share {hp_share}", field="hp_share", expected="0..1")
    h = splitmix64_np(np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < hp_share, HP, LP)


def row_trace(
    trace: RequestTrace, *, servers: int, hp_servers: int, rps_per_server: float, seed: int
) -> RequestTrace:
    """``trace`` scaled to ``servers`` servers at ``rps_per_server`` each, with ``slo_class`` = tier.

    Raises:
        InputError: no server, more HP servers than servers, or an empty trace.
    """
    if not servers >= 1 or not 0 <= hp_servers <= servers:
        raise InputError(
            f"{hp_servers} HP of {servers} servers",
            field="servers",
            expected="0 <= hp <= servers, servers >= 1",
        )
    if trace.num_requests < 2 or trace.duration_s <= 0:
        raise InputError(
            "the trace has fewer than two requests", path=trace.meta.source, field="arrival_s",
            expected="a trace spanning some time",
        )
    factor = servers * rps_per_server * trace.duration_s / trace.num_requests
    scaled = scale_rate(trace, factor, seed=seed)
    tiers = tier_of_requests(scaled.num_requests, hp_share=hp_servers / servers, seed=seed)
    return RequestTrace(scaled.df.with_columns(pl.Series("slo_class", tiers, dtype=pl.String)), scaled.meta)


@dataclass(frozen=True)
class RowReplay:
    """What one row replay needs besides the trace (all from the study's row).

    Attributes:
        perf: one replica's performance model (unlocked; a static clock already applied if any).
        gpu: the GPU spec (power in the loop).
        replicas_per_server: replicas on one server (GPUs per server / TP).
        budget_w: the row budget the policy defends.
        base_w: non-GPU power of a server.
        slo: latency targets for attainment.
        interval_s: time-series resolution of the replay (a multiple of the telemetry period).
    """

    perf: object
    gpu: object
    replicas_per_server: int
    budget_w: float
    base_w: float
    slo: SLOTarget
    interval_s: float = 10.0
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass(frozen=True)
class ReplayVerification:
    """A plan checked by an in-loop capped replay against an uncapped one.

    Attributes:
        servers, hp_servers: the row checked.
        t1, t2: thresholds used.
        capped_fraction: time with any server clock-locked over the replay's makespan (simulator stats).
        hp_locked_fraction, lp_locked_fraction: time each tier's servers were locked (policy levels).
        brake_events: out-of-band brake engagements.
        peak_row_fraction: highest row power over a telemetry period / budget, locks in force.
        mean_row_fraction: average row power / budget.
        hp, lp: per-tier p99 latency capped vs reference (None for an empty tier).
        attainment: share of all requests meeting the SLO in the capped replay.
        attainment_reference: the same without capping.
        requests: requests replayed.
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
    mean_row_fraction: float
    hp: TierLatency | None
    lp: TierLatency | None
    attainment: float
    attainment_reference: float
    requests: int

    def meets(self, *, max_capped_fraction: float, hp_inflation: float, lp_inflation: float) -> bool:
        """Whether the targets hold: time capped, no brake, p99 inflation per tier."""
        return (
            self.capped_fraction <= max_capped_fraction + 1e-12
            and self.brake_events == 0
            and (self.hp is None or self.hp.inflation <= hp_inflation)
            and (self.lp is None or self.lp.inflation <= lp_inflation)
        )


def _done(df: pl.DataFrame) -> pl.DataFrame:
    out = df.filter(pl.col("finish_s").is_not_null())
    return out.filter(~pl.col("rejected")) if "rejected" in out.columns else out


def _p99(s: pl.Series) -> float:
    x = s.drop_nulls().to_numpy()
    x = x[np.isfinite(x)]
    return float(np.percentile(x, 99)) if x.size else float("nan")


def attainment(requests: pl.DataFrame, slo: SLOTarget) -> float:
    """Share of requests (rejected ones count as misses) with TTFT and TPOT within ``slo``."""
    if requests.height == 0:
        return float("nan")
    ok = (
        requests["finish_s"].is_not_null()
        & (requests["ttft_s"].fill_null(math.inf) <= slo.ttft_s)
        & (requests["tpot_s"].is_null() | (requests["tpot_s"].fill_null(math.inf) <= slo.tpot_s))
    )
    if "rejected" in requests.columns:
        ok = ok & ~requests["rejected"]
    return float(ok.mean())  # type: ignore[arg-type]


def tier_latency(tier: str, capped: pl.DataFrame, reference: pl.DataFrame, slo: SLOTarget) -> TierLatency:
    """p99 TTFT/TPOT and attainment of one tier, capped vs reference."""
    c, r = _done(capped), _done(reference)
    locked = c["clock_locked"] if "clock_locked" in c.columns else pl.Series([False] * c.height)
    return TierLatency(
        tier=tier,
        requests=c.height,
        affected=float(locked.mean()) if c.height else 0.0,  # type: ignore[arg-type]
        ttft_p99_base_s=_p99(r["ttft_s"]),
        ttft_p99_s=_p99(c["ttft_s"]),
        tpot_p99_base_s=_p99(r["tpot_s"]),
        tpot_p99_s=_p99(c["tpot_s"]),
        attainment_base=attainment(reference, slo),
        attainment=attainment(capped, slo),
    )


def _recording(policy: CappingPolicy, log: list[tuple[float, int]]) -> CappingPolicy:
    """The policy, appending ``(now_s, level)`` of every decision to ``log`` (local to one replay)."""

    def decide(ctx: PowerContext) -> CapDecision:
        d = policy(ctx)
        level = d.state.level if isinstance(d.state, PolcaState) else CapLevel.NONE
        log.append((ctx.now_s, int(level)))
        return d

    return decide


def telemetry_period_s(policy: PolcaParams | None) -> float:
    """The power loop's period, which is also the resolution the in-loop engines keep their time series
    at (:mod:`planner.sim.pool_run`). The per-tier references replay at it too: the engine's hand-over
    latency is read from the mean step time per interval (:func:`planner.sim.result.handover_s`), so two
    resolutions would give two TTFTs for the same schedule."""
    return 1.0 if policy is None else policy.telemetry_period_s


def replay_tiers(
    trace: RequestTrace, setup: RowReplay, *, hp_servers: int, lp_servers: int, policy: PolcaParams | None
) -> tuple[SimResult, list[tuple[float, int]]]:
    """Replay a labelled row trace through an HP and an LP pool, with POLCA in the loop (or no policy).

    Returns:
        The result and the policy's ``(now_s, level)`` log (empty without a policy).
    """
    rps = setup.replicas_per_server
    pools = [
        Pool(
            name=tier,
            perf=setup.perf,  # type: ignore[arg-type]
            config=SimConfig(replicas=n * rps, interval_s=setup.interval_s, default_slo=setup.slo,
                             engine=setup.engine),
            gpu=setup.gpu,  # type: ignore[arg-type]
            slo_classes=(tier,),
            priority=tier,
        )
        for tier, n in ((HP, hp_servers), (LP, lp_servers))
        if n > 0
    ]
    log: list[tuple[float, int]] = []
    cap: CappingPolicy | None = None
    tel, act, brake, brake_lat = telemetry_period_s(policy), 0.1, None, None
    if policy is not None:
        cap = _recording(make_polca(policy), log)
        act, brake = policy.actuation_latency_s, policy.brake_clock_mhz
        brake_lat = policy.brake_latency_s
    interval = max(1, round(setup.interval_s / tel)) * tel
    power = PowerConfig(
        row_budget_w=setup.budget_w,
        policy=cap,
        telemetry_period_s=tel,
        actuation_latency_s=act,
        server_base_w=setup.base_w,
        brake_clock_mhz=brake,
        brake_latency_s=brake_lat,
    )
    cc = ClusterConfig(
        interval_s=interval,
        power=power,
        servers_per_rack=4,
        racks_per_row=max(1, -(-(hp_servers + lp_servers) // 4)),
        default_slo=setup.slo,
    )
    return replay_cluster(trace, pools, config=cc), log


def _tier_reference(trace: RequestTrace, setup: RowReplay, tier: str, servers: int,
                    interval_s: float) -> pl.DataFrame:
    df = trace.df.with_row_index("_row").filter(pl.col("slo_class") == tier)
    if servers == 0 or df.height == 0:
        return pl.DataFrame()
    sub = RequestTrace(df.drop("_row"), trace.meta)
    res = replay(
        sub,
        setup.perf,  # type: ignore[arg-type]
        config=SimConfig(
            replicas=servers * setup.replicas_per_server, interval_s=interval_s, default_slo=setup.slo,
            engine=setup.engine,
        ),
        gpu=setup.gpu,  # type: ignore[arg-type]
    )
    return res.requests


def verify_by_replay(
    trace: RequestTrace,
    setup: RowReplay,
    *,
    hp_servers: int,
    lp_servers: int,
    rps_per_server: float,
    policy: PolcaParams,
    seed: int = 0,
) -> ReplayVerification:
    """Check ``hp_servers + lp_servers`` servers with ``policy`` by replaying ``trace`` scaled to them.

    Args:
        trace: the row's (unscaled) request trace.
        setup: perf model, GPU, budget, base power, SLO.
        hp_servers, lp_servers: servers per tier.
        rps_per_server: requests/s each server carries.
        policy: POLCA knobs including the thresholds to check.
        seed: seeds the scaling and the tier split.

    Returns:
        The :class:`ReplayVerification`.

    Raises:
        InputError: an empty row or trace.
    """
    n = hp_servers + lp_servers
    tr = row_trace(trace, servers=n, hp_servers=hp_servers, rps_per_server=rps_per_server, seed=seed)
    res, log = replay_tiers(tr, setup, hp_servers=hp_servers, lp_servers=lp_servers, policy=policy)
    cap = res.capping
    assert cap is not None
    req = res.requests
    makespan = max(res.summary.makespan_s, 1e-9)
    lv = np.array([lvl for _, lvl in log], dtype=np.int64)
    period = policy.telemetry_period_s
    lp_locked = float((lv >= CapLevel.LP).sum() * period / makespan) if lp_servers else 0.0
    hp_locked = float((lv >= CapLevel.HP).sum() * period / makespan) if hp_servers else 0.0
    tiers: dict[str, TierLatency] = {}
    refs = []
    for tier, k in ((HP, hp_servers), (LP, lp_servers)):
        if k == 0:
            continue
        ref = _tier_reference(tr, setup, tier, k, telemetry_period_s(policy))
        refs.append(ref)
        tiers[tier] = tier_latency(tier, req.filter(pl.col("pool") == tier), ref, setup.slo)
    ref_all = pl.concat([r.select("finish_s", "ttft_s", "tpot_s", "rejected") for r in refs])
    return ReplayVerification(
        servers=n,
        hp_servers=hp_servers,
        t1=policy.t1,
        t2=policy.t2,
        capped_fraction=min(1.0, cap.capped_s / makespan),
        hp_locked_fraction=min(1.0, hp_locked),
        lp_locked_fraction=min(1.0, lp_locked),
        brake_events=cap.brake_events,
        peak_row_fraction=cap.peak_row_w / setup.budget_w,
        mean_row_fraction=cap.mean_row_w / setup.budget_w,
        hp=tiers.get(HP),
        lp=tiers.get(LP),
        attainment=attainment(req, setup.slo),
        attainment_reference=attainment(ref_all, setup.slo),
        requests=tr.num_requests,
    )

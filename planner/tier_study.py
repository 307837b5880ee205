"""Does a KV tier pay for itself? (application layer): for each set of tiers below HBM (HBM only, +DRAM,
+NVMe, +a shared pool) the fewest replicas whose replay meets the SLO, and what GPUs and tiers then cost.

Why by replay: what a tier buys is reuse the fleet would otherwise recompute (multi-turn context that
fell out of HBM during a think time); that depends on the trace's sessions, the router and the eviction
order, which only the replay has. Each case's fleet is the smallest replica count (searched by doubling
then bisection) whose replay reaches ``target`` of requests within their TTFT and TPOT targets; the
presented numbers are that replay's, so every row is verified by construction. A tier pays for itself
when its case costs less per hour than the case above it (the GPUs it saves are worth more than the
memory it adds).

>>> from planner.sim import SimConfig
>>> from planner.sim.testing import LinearPerf, poisson_trace
>>> from planner.catalog import load_catalog
>>> cat = load_catalog()
>>> study = run_tier_study(poisson_trace(200, 20.0, 1, prefix_groups=10), LinearPerf(kv_tokens=4000),
...                        config=SimConfig(replicas=1), gpu=cat.gpu("H100-SXM"),
...                        cases=ablation_cases(cat.kv_tiers, ("dram",)))
>>> [row.case for row in study.rows]
['HBM only', '+dram']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from planner.contracts.kv_tiers import KVTiers, tiers_from_catalog
from traces.errors import InputError

if TYPE_CHECKING:
    from planner.catalog.schema import GPUSpec, KVTierSpec
    from planner.perf.api import ReplicaPerf
    from planner.sim.config import SimConfig
    from planner.sim.result import SimResult
    from traces.schema import RequestTrace

DEFAULT_TARGET = 0.99
"""Share of requests within both latency targets a fleet must reach."""
PLATEAU = 0.001
"""The search gives up when doubling the fleet raised attainment by less than this (0.1 point): the
requests still missing miss on an idle fleet (a prompt whose prefill alone exceeds the TTFT target)."""


@dataclass(frozen=True)
class TierCase:
    """One column of the ablation: a name and its tiers (None: HBM only)."""

    name: str
    tiers: KVTiers | None


@dataclass(frozen=True)
class TierRow:
    """The smallest fleet of one case that meets the SLO in replay, and its cost.

    Attributes:
        replicas: replicas of the fleet (``gpus`` GPUs in all); 0 when none up to the search limit met it.
        attainment: share of requests within both targets in that fleet's replay.
        prefix_hit_ratio: prompt tokens served from any cache tier, over prompt tokens.
        tier_hits: per tier, the share of prompt tokens it served.
        gpu_cost_per_hour, tier_cost_per_hour: USD per hour of the GPUs and of the tiers' capacity.
        pays: against the case before it: "pays" (cheaper), "does not pay", or "" (first case).
        ceiling: when no fleet met the target, the best attainment a searched fleet reached.
    """

    case: str
    replicas: int
    gpus: int
    attainment: float
    ttft_p99_s: float
    tpot_p99_s: float
    prefix_hit_ratio: float
    tier_hits: tuple[tuple[str, float], ...]
    gpu_cost_per_hour: float
    tier_cost_per_hour: float
    pays: str
    ceiling: float = float("nan")
    """When no fleet met the target: the best attainment any searched fleet reached."""

    @property
    def cost_per_hour(self) -> float:
        return self.gpu_cost_per_hour + self.tier_cost_per_hour

    @property
    def met(self) -> bool:
        return self.replicas > 0


@dataclass(frozen=True)
class TierStudy:
    """The ablation: one row per case, in order, with the target it was sized to."""

    rows: tuple[TierRow, ...]
    target: float
    ttft_s: float
    tpot_s: float
    replays: int

    def verdict(self) -> str:
        """One line: the cheapest case and what it saves against HBM only."""
        met = [r for r in self.rows if r.met]
        if not met:
            ceiling = max(r.ceiling for r in self.rows)
            return (f"no case met {self.target:.0%} within TTFT {self.ttft_s:g} s / TPOT {self.tpot_s:g} s "
                    f"(the best fleet reached {ceiling:.1%}: the rest miss even on an idle fleet; a longer "
                    "TTFT target or a long-context SLO class would)")
        best = min(met, key=lambda r: (r.cost_per_hour, r.gpus))
        base = self.rows[0]
        if best is base or not base.met:
            return f"cheapest: {best.case}, {best.gpus} GPUs, ${best.cost_per_hour:,.2f}/h"
        return (f"cheapest: {best.case}, {best.gpus} GPUs, ${best.cost_per_hour:,.2f}/h: "
                f"{base.gpus - best.gpus} GPUs and ${base.cost_per_hour - best.cost_per_hour:,.2f}/h less "
                "than HBM only "
                f"(tiers ${best.tier_cost_per_hour:,.2f}/h)")

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "replays": self.replays,
                "verdict": self.verdict(),
                "rows": [{**r.__dict__, "tier_hits": dict(r.tier_hits), "cost_per_hour": r.cost_per_hour}
                         for r in self.rows]}


def ablation_cases(available: Mapping[str, KVTierSpec], names: Sequence[str] = ("dram", "ssd", "remote"),
                   *, overlap: bool = True, cost_aware: bool = False) -> tuple[TierCase, ...]:
    """HBM only, then each named tier added to the ones before it (``+dram``, ``+dram+ssd``, ...)."""
    cases = [TierCase("HBM only", None)]
    specs = []
    for name in names:
        spec = available.get(name)
        if spec is None:
            raise InputError(f"unknown KV tier {name!r}", field="--tiers",
                             expected="names from the catalog's kv_tiers: " + ", ".join(sorted(available)))
        specs.append(spec)
        cases.append(TierCase("+" + "+".join(s.name for s in specs),
                              tiers_from_catalog(specs, overlap=overlap, cost_aware=cost_aware)))
    return tuple(cases)


def _attainment(result: SimResult) -> float:
    s = result.summary
    total = sum(c.requests for c in s.classes)
    return sum(c.attainment * c.requests for c in s.classes) / total if total else 0.0


def run_tier_study(trace: RequestTrace, perf: ReplicaPerf, *, config: SimConfig, gpu: GPUSpec,
                   cases: Sequence[TierCase], target: float = DEFAULT_TARGET, max_replicas: int = 256,
                   progress: Callable[[str, int, float], None] | None = None) -> TierStudy:
    """Size each case by replay (see the module docstring); ``config`` gives the router, engine and SLOs
    (its replica count is the search's start)."""
    from planner.sim.replay import replay

    if not 0.0 < target <= 1.0:
        raise InputError(f"target {target} outside (0, 1]", field="--target", expected="a share, e.g. 0.99")
    replays = 0

    seen: dict[str, list[SimResult]] = {c.name: [] for c in cases}

    def run(case: TierCase, replicas: int) -> SimResult:
        nonlocal replays
        replays += 1
        res = replay(trace, perf, config=replace(config, replicas=replicas, kv_tiers=case.tiers), gpu=gpu)
        seen[case.name].append(res)
        if progress is not None:
            progress(case.name, replicas, _attainment(res))
        return res

    rows: list[TierRow] = []
    start = max(1, config.replicas)
    for case in cases:
        best = _smallest(lambda r, c=case: run(c, r), start, max_replicas, target)  # type: ignore[misc]
        prev = rows[-1] if rows else None
        if best is None:
            rows.append(TierRow(case.name, 0, 0, float("nan"), float("nan"), float("nan"), float("nan"), (),
                                float("nan"), float("nan"), "" if prev is None else "does not pay",
                                ceiling=max(_attainment(r) for r in seen[case.name])))
            continue
        replicas, res = best
        gpus = replicas * perf.gpus
        s = res.summary
        tier_cost = case.tiers.price_per_hour(gpus) if case.tiers is not None else 0.0
        row = TierRow(
            case=case.name, replicas=replicas, gpus=gpus, attainment=_attainment(res),
            ttft_p99_s=float(np.nanmax([c.ttft_p99_s for c in s.classes])),
            tpot_p99_s=float(np.nanmax([c.tpot_p99_s for c in s.classes])),
            prefix_hit_ratio=s.prefix_hit_ratio, tier_hits=tuple((t.name, t.hit_ratio) for t in s.kv_tiers),
            gpu_cost_per_hour=gpus * gpu.price_per_hour, tier_cost_per_hour=tier_cost, pays="")
        if prev is not None:
            cheaper = not prev.met or row.cost_per_hour < prev.cost_per_hour
            row = replace(row, pays="pays" if cheaper else "does not pay")
        rows.append(row)
        start = max(1, replicas // 2)  # more tiers never need many more replicas: start the next search low
    return TierStudy(rows=tuple(rows), target=target, ttft_s=config.default_slo.ttft_s,
                     tpot_s=config.default_slo.tpot_s, replays=replays)


def _smallest(run: Callable[[int], SimResult], start: int, limit: int,
              target: float) -> tuple[int, SimResult] | None:
    """The fewest replicas in ``[1, limit]`` whose replay meets ``target`` (doubling up from ``start``,
    halving down, then bisection; attainment is taken as non-decreasing in replicas)."""
    cache: dict[int, SimResult] = {}

    def ok(r: int) -> bool:
        if r not in cache:
            cache[r] = run(r)
        return _attainment(cache[r]) >= target

    hi = start
    while not ok(hi):
        if hi >= limit:
            return None
        nxt = min(limit, hi * 2)
        if nxt >= 4 * start and _attainment(cache[hi]) <= _attainment(cache[hi // 2]) + PLATEAU:
            return None  # doubling the fleet no longer helps: what misses, misses on an idle fleet
        hi = nxt
    lo = 0  # largest known failing count (0: none)
    probe = hi // 2
    while probe >= 1 and ok(probe):
        hi = probe
        probe //= 2
    lo = probe if probe >= 1 else 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, cache[hi]

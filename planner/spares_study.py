"""How many spare replicas does a fleet need for its faults? (application layer)

For ``k = 0, 1, ...`` spares on top of a fleet's replicas, replay the trace with faults drawn at the given
rates under several seeds (a plan is checked under several fault histories, not one), and measure
*availability*: the share of windows (over every seed) in which at least ``window_target`` of the
requests arriving in the window met their TTFT and TPOT targets. The answer is the smallest ``k`` whose
availability reaches the target, with what its spares cost; the table shows how availability and the
cost of redundancy move with ``k`` and with the fault rates (``rate_scale``: the published rate times a
factor, for fleets that fail more often than Llama 3's training cluster did).

>>> from planner.catalog import load_catalog
>>> from planner.sim import SimConfig
>>> from planner.sim.faults import FaultRates
>>> from planner.sim.testing import LinearPerf, poisson_trace
>>> st = run_spares_study(poisson_trace(300, 5.0, 1), LinearPerf(), config=SimConfig(replicas=2),
...                       gpu=load_catalog().gpu("H100-SXM"), rates=FaultRates(fail_per_gpu_hour=0.0),
...                       max_spares=1, seeds=(0,), window_s=30.0)
>>> st.chosen, [r.availability for r in st.rows]
(0, [1.0, 1.0])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.sim.faults import Detector, FaultConfig, FaultRates, synth_faults
from traces.errors import InputError

if TYPE_CHECKING:
    from planner.catalog.schema import GPUSpec
    from planner.perf.api import ReplicaPerf
    from planner.sim.config import SimConfig
    from planner.sim.result import SimResult
    from traces.schema import RequestTrace


@dataclass(frozen=True)
class SparesRow:
    """One spare count, over every seed.

    Attributes:
        availability: share of (window, seed) pairs meeting the window target.
        worst_seed: the lowest availability of one seed.
        attainment: share of all requests (every seed) within both targets.
        fail_events: fail-stop incidents summed over the seeds; failed: requests never served.
        cost_per_hour: GPUs x price; spare_cost_per_hour: of it, the spares'.
    """

    spares: int
    replicas: int
    gpus: int
    availability: float
    worst_seed: float
    attainment: float
    fail_events: int
    failed: int
    cost_per_hour: float
    spare_cost_per_hour: float


@dataclass(frozen=True)
class SparesStudy:
    """The spare-capacity table and the choice (``chosen``: spares; -1 when none up to the limit met it)."""

    rows: tuple[SparesRow, ...]
    chosen: int
    target: float
    window_target: float
    window_s: float
    seeds: tuple[int, ...]
    rates: FaultRates

    def verdict(self) -> str:
        if self.chosen < 0:
            best = max(self.rows, key=lambda r: r.availability)
            return (f"no spare count up to {self.rows[-1].spares} reaches {self.target:.1%} availability "
                    f"(best {best.availability:.2%} with {best.spares})")
        r = self.rows[self.chosen]
        return (f"{r.spares} spare replica{'s' if r.spares != 1 else ''} ({r.gpus} GPUs in all) reach "
                f"{r.availability:.2%} availability >= {self.target:.1%}; redundancy costs "
                f"${r.spare_cost_per_hour:,.2f}/h")

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "window_target": self.window_target, "window_s": self.window_s,
                "seeds": list(self.seeds), "rates": dataclasses.asdict(self.rates), "chosen": self.chosen,
                "verdict": self.verdict(), "rows": [r.__dict__ for r in self.rows]}


def window_availability(result: SimResult, config: SimConfig, *, window_s: float,
                        window_target: float) -> tuple[float, float]:
    """(share of windows whose arriving requests met their targets at ``window_target``, attainment)."""
    req = result.requests
    arr = req["arrival_s"].to_numpy()
    ttft = req["ttft_s"].fill_null(np.nan).to_numpy().astype(np.float64)
    tpot = req["tpot_s"].fill_null(np.nan).to_numpy().astype(np.float64)
    rej = req["rejected"].to_numpy().astype(bool)
    cls = req["slo_class"].to_list()
    t_ttft = np.array([config.slo_for(c).ttft_s for c in cls])
    t_tpot = np.array([config.slo_for(c).tpot_s for c in cls])
    ok = ~rej & ~np.isnan(ttft) & (ttft <= t_ttft) & ((tpot <= t_tpot) | np.isnan(tpot))
    win = (arr // window_s).astype(np.int64)
    n = np.bincount(win)
    met = np.bincount(win, weights=ok.astype(np.float64), minlength=n.size)
    used = n > 0
    share = met[used] / n[used]
    return float((share >= window_target).mean()) if used.any() else 1.0, float(ok.mean()) if ok.size else 1.0


def run_spares_study(trace: RequestTrace, perf: ReplicaPerf, *, config: SimConfig, gpu: GPUSpec,
                     rates: FaultRates, target: float = 0.999, window_target: float = 0.99,
                     window_s: float = 300.0, max_spares: int = 3, seeds: Sequence[int] = (0, 1, 2),
                     detector: Detector | None = None, retry_budget: int = 2) -> SparesStudy:
    """Replay ``config.replicas + k`` replicas for ``k = 0 .. max_spares`` under faults drawn per seed."""
    from planner.sim.replay import replay

    if not 0.0 < target <= 1.0 or not 0.0 < window_target <= 1.0:
        raise InputError("availability and window targets are shares", field="--availability",
                         expected="0 < target <= 1")
    horizon = float(trace.df["arrival_s"].to_numpy().max(initial=0.0)) + window_s
    rows: list[SparesRow] = []
    chosen = -1
    for k in range(max_spares + 1):
        n = config.replicas + k
        avail, att, fails, failed = [], [], 0, 0
        for seed in seeds:
            events = synth_faults(rates, replicas=n, gpus_per_replica=perf.gpus, horizon_s=horizon, seed=seed)
            cfg = dataclasses.replace(config, replicas=n, faults=FaultConfig(events, retry_budget, detector))
            res = replay(trace, perf, config=cfg, gpu=gpu)
            a, m = window_availability(res, cfg, window_s=window_s, window_target=window_target)
            avail.append(a)
            att.append(m)
            if res.faults is not None:
                fails += res.faults.fail_events
                failed += res.faults.failed
        gpus = n * perf.gpus
        rows.append(SparesRow(spares=k, replicas=n, gpus=gpus, availability=float(np.mean(avail)),
                              worst_seed=float(min(avail)), attainment=float(np.mean(att)), fail_events=fails,
                              failed=failed, cost_per_hour=gpus * gpu.price_per_hour,
                              spare_cost_per_hour=k * perf.gpus * gpu.price_per_hour))
        if chosen < 0 and rows[-1].availability >= target:
            chosen = k
    return SparesStudy(rows=tuple(rows), chosen=chosen, target=target, window_target=window_target,
                       window_s=window_s, seeds=tuple(seeds), rates=rates)

"""Latency cost of clock locks, estimated from a replay's requests and a :class:`PolicyRun`.

While a server is locked its engine steps take ``slowdown`` times longer, so a request in flight on it
loses ``(slowdown - 1)`` seconds per second of overlap. The estimate adds that loss to every request's
TTFT (overlap between arrival and first token) and TPOT (overlap between first token and finish, spread
over the output tokens) and compares p99 per priority tier with the unlocked replay.

Why an estimate: queues that build up during a lock and drain after it also delay requests that arrive
just after the lock; that spill-over needs the in-loop replay (the simulator applying the locks through
``ReplicaPerf.at_clock``). At a fraction of time capped of about 1 % the spill-over is a second-order
term; :func:`planner.power_study.verify` also reports a bound from a replay with the tier locked all the time.

>>> import numpy as np, polars as pl
>>> from planner.power.simulate import PolicyRun
>>> z = np.zeros((2, 1))
>>> run = PolicyRun(np.array([0.0, 1.0]), 1.0, np.zeros(2), np.zeros(2), z, z, np.array([[0.0], [0.5]]),
...                 1.0, 0.5, 0.5, 0.0, 0.0, 0, 0.0, 0.0, 0.0)
>>> req = pl.DataFrame({"arrival_s": [0.0], "first_token_s": [2.0], "finish_s": [2.0], "replica": [0],
...                     "output_tokens": [1], "rejected": [False]})
>>> est = estimate_inflation(req, run, server_of_replica=np.array([0]), priorities=("lp",))
>>> est[0].ttft_p99_s - est[0].ttft_p99_base_s
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.contracts.power import HP, LP
from planner.power.simulate import PolicyRun
from planner.sim.result import tpot_s
from traces.errors import InputError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class TierLatency:
    """p99 latency of one priority tier without and with the locks.

    Attributes:
        tier: ``"hp"`` or ``"lp"``.
        requests: completed requests of the tier (on the row's servers).
        affected: share of them that overlapped a lock.
        ttft_p99_base_s, ttft_p99_s: p99 TTFT unlocked / locked.
        tpot_p99_base_s, tpot_p99_s: p99 TPOT unlocked / locked.
        attainment_base, attainment: share meeting the SLO unlocked / locked (NaN without targets).
    """

    tier: str
    requests: int
    affected: float
    ttft_p99_base_s: float
    ttft_p99_s: float
    tpot_p99_base_s: float
    tpot_p99_s: float
    attainment_base: float = float("nan")
    attainment: float = float("nan")

    @property
    def ttft_inflation(self) -> float:
        return _ratio(self.ttft_p99_s, self.ttft_p99_base_s)

    @property
    def tpot_inflation(self) -> float:
        return _ratio(self.tpot_p99_s, self.tpot_p99_base_s)

    @property
    def inflation(self) -> float:
        """The worse of the two p99 inflations (0.05 = 5 % slower)."""
        return max(self.ttft_inflation, self.tpot_inflation)


def _ratio(new: float, base: float) -> float:
    if not (np.isfinite(new) and np.isfinite(base)) or base <= 0:
        return 0.0
    return new / base - 1.0


def _p99(x: F64) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, 99)) if x.size else float("nan")


def _attain(ttft: F64, tpot: F64, t_ttft: float, t_tpot: float) -> float:
    ok = (ttft <= t_ttft) & ((tpot <= t_tpot) | np.isnan(tpot))
    return float(ok.mean()) if ok.size else float("nan")


def estimate_inflation(
    requests: pl.DataFrame,
    run: PolicyRun,
    *,
    server_of_replica: I64,
    priorities: Sequence[str],
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
) -> tuple[TierLatency, ...]:
    """p99 TTFT/TPOT per tier with the run's locks added to the replay's request times.

    Args:
        requests: a replay's request table (``arrival_s``, ``first_token_s``, ``finish_s``, ``replica``,
            ``output_tokens``; ``rejected`` when present).
        run: the policy run over the same servers (``slow_extra`` per sample and server).
        server_of_replica: server index of every replica of the replay.
        priorities: tier of every server of the run; requests on servers beyond it are ignored.
        slo_ttft_s, slo_tpot_s: targets for the attainment fields (both or neither).

    Returns:
        One :class:`TierLatency` per tier that has requests, ``hp`` first.

    Raises:
        InputError: a request's replica has no server in ``server_of_replica``.
    """
    n_srv = len(priorities)
    df = requests.filter(pl.col("finish_s").is_not_null())
    if "rejected" in df.columns:
        df = df.filter(~pl.col("rejected"))
    rep = df["replica"].to_numpy().astype(np.int64)
    if rep.size and (rep.min() < 0 or rep.max() >= server_of_replica.size):
        raise InputError(
            "a request ran on a replica with no server",
            field="replica",
            expected=f"replica ids 0..{server_of_replica.size - 1}",
        )
    srv = server_of_replica[rep] if rep.size else np.zeros(0, dtype=np.int64)
    keep = srv < n_srv
    srv = srv[keep]
    arr = df["arrival_s"].to_numpy()[keep]
    first = df["first_token_s"].to_numpy()[keep]
    fin = df["finish_s"].to_numpy()[keep]
    out = df["output_tokens"].to_numpy()[keep].astype(np.float64)
    grid = np.concatenate([run.t_s, [run.t_s[-1] + run.dt_s]]) if run.t_s.size else np.zeros(1)
    cum = np.vstack([np.zeros((1, n_srv)), np.cumsum(run.slow_extra[:, :n_srv], axis=0)])
    e_arr = np.zeros(srv.size)
    e_first = np.zeros(srv.size)
    e_fin = np.zeros(srv.size)
    for s in np.unique(srv):
        sel = srv == s
        e_arr[sel] = np.interp(arr[sel], grid, cum[:, s])
        e_first[sel] = np.interp(first[sel], grid, cum[:, s])
        e_fin[sel] = np.interp(fin[sel], grid, cum[:, s])
    ttft = first - arr
    tpot = tpot_s(first, fin, out)
    tpot_new = tpot_s(first + e_first, fin + e_fin, out)  # every token later by the extra time so far
    ttft_new = ttft + (e_first - e_arr)
    hit = (e_fin - e_arr) > 0
    tiers = np.array([priorities[s] for s in srv], dtype=object) if srv.size else np.zeros(0, dtype=object)
    res = []
    for tier in (HP, LP):
        sel = tiers == tier
        if not sel.any():
            continue
        att_base = att = float("nan")
        if slo_ttft_s is not None and slo_tpot_s is not None:
            att_base = _attain(ttft[sel], tpot[sel], slo_ttft_s, slo_tpot_s)
            att = _attain(ttft_new[sel], tpot_new[sel], slo_ttft_s, slo_tpot_s)
        res.append(
            TierLatency(
                tier=tier,
                requests=int(sel.sum()),
                affected=float(hit[sel].mean()),
                ttft_p99_base_s=_p99(ttft[sel]),
                ttft_p99_s=_p99(ttft_new[sel]),
                tpot_p99_base_s=_p99(tpot[sel]),
                tpot_p99_s=_p99(tpot_new[sel]),
                attainment_base=att_base,
                attainment=att,
            )
        )
    return tuple(res)

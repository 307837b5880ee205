"""The alpha-beta communication model, fitted to measured NCCL collectives, and its error tables.

A collective over ``n`` GPUs moving ``B`` bytes (nccl-tests' size convention: the all-reduce buffer,
the gathered output, the bytes each rank sends in an all-to-all) takes

    ``t = hops(op, n) * alpha + min(base + x / (ll_eff * link), simple_base + x / (simple_eff * link))``,
    ``x = share(op, n) * B``

with ``hops`` the ring's latency steps (``2 (n-1)`` for all-reduce, ``n-1`` otherwise) and ``share`` the
part of the message each link carries (nccl-tests' bus-bandwidth factor: ``2 (n-1)/n`` for
all-reduce, ``(n-1)/n`` otherwise), for NCCL's two main protocols (low-latency: small fixed cost, a
fraction of the bandwidth; simple: the other way round), of which NCCL's tuner runs the faster. This is
the form the step kernel uses for TP all-reduces and EP
all-to-alls (:mod:`planner.perf.kernel`), so the fit here is what the planner's steps get.

The fit uses the timings taken inside CUDA graphs (``mode == "graph"``): serving engines replay
decode steps from graphs, where a collective costs no host launch; eager timings are kept in the
profile to show the difference. Errors are reported per operation, GPU count and size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.optimize import least_squares

from planner.perf.calibration import CommFit

Arr = NDArray[np.float64]

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "all_to_all")


def hops(op: str, n: Arr | float) -> Arr:
    """Latency steps of a ring collective over ``n`` GPUs.

    >>> float(hops("all_reduce", 4)), float(hops("all_to_all", 4))
    (6.0, 3.0)
    """
    n = np.asarray(n, dtype=np.float64)
    return np.asarray(2.0 * (n - 1.0) if op == "all_reduce" else n - 1.0)


def share(op: str, n: Arr | float) -> Arr:
    """Share of the message each link carries (nccl-tests' bus-bandwidth factor).

    >>> float(share("all_reduce", 2)), float(share("all_gather", 4))
    (1.0, 0.75)
    """
    n = np.asarray(n, dtype=np.float64)
    return np.asarray(2.0 * (n - 1.0) / n if op == "all_reduce" else (n - 1.0) / n)


def predict(op: str, n: Arr | float, nbytes: Arr | float, p: CommFit, link_gbps: float) -> Arr:
    """Seconds for ``op`` over ``n`` GPUs moving ``nbytes`` (vectorised): the faster protocol.

    >>> p = CommFit(10e-6, 2e-6, 0.3, 30e-6, 0.8)
    >>> round(float(predict("all_reduce", 2, 360e6, p, 450)) * 1e3, 3)
    1.034
    """
    x = share(op, n) * np.asarray(nbytes, dtype=np.float64)
    link = link_gbps * 1e9
    return np.asarray(hops(op, n) * p.alpha_s + np.minimum(p.base_s + x / (p.ll_eff * link),
                                                           p.simple_base_s + x / (p.simple_eff * link)))


START = CommFit(10e-6, 1e-6, 0.3, 30e-6, 0.7)
LOWER = (0.0, 0.0, 0.01, 0.0, 0.05)
UPPER = (1e-3, 1e-4, 1.0, 1e-3, 1.0)


def fit(df: pl.DataFrame, link_gbps: float, op: str) -> CommFit:
    """Least squares on log(pred/meas) over the rows of one collective (every GPU count).

    Each size counts equally (relative errors), so the small-message latency, the middle sizes where
    NCCL switches protocol, and the large-message bandwidth all constrain the fit.
    """
    rows = df.filter(pl.col("op") == op)
    if rows.is_empty():
        raise ValueError(f"no {op} rows in the collectives table")
    n = rows["gpus"].cast(pl.Float64).to_numpy()
    b = rows["bytes"].cast(pl.Float64).to_numpy()
    lm = np.log(rows["time_s"].to_numpy())

    def resid(v: Arr) -> Arr:
        return np.asarray(np.log(predict(op, n, b, CommFit(*map(float, v)), link_gbps)) - lm)

    # the min() makes the loss non-convex (a start can settle with one protocol never chosen):
    # a few starts, the best kept
    best = None
    for ll_eff in (0.15, 0.3, 0.5):
        x0 = np.array([START.base_s, START.alpha_s, ll_eff, START.simple_base_s, START.simple_eff])
        r = least_squares(resid, x0, bounds=(LOWER, UPPER), loss="soft_l1", f_scale=0.1)
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    return CommFit(*map(float, best.x))


def fit_all(df: pl.DataFrame, link_gbps: float) -> dict[str, CommFit]:
    """One fit per collective present in ``df``."""
    return {op: fit(df, link_gbps, op) for op in OPS if op in set(df["op"].to_list())}


def load_collectives(folder: Path, *, mode: str = "graph") -> pl.DataFrame | None:
    """``collectives.parquet`` of a profile folder, the rows of one timing mode; None when absent."""
    path = folder / "collectives.parquet"
    if not path.exists():
        return None
    df = pl.read_parquet(path)
    if "mode" in df.columns:
        df = df.filter(pl.col("mode") == mode)
    return df


def error_table(df: pl.DataFrame, per_op: dict[str, CommFit], link_gbps: float) -> pl.DataFrame:
    """Per (op, GPUs): median and max absolute % error of the prediction, and the sizes measured."""
    out = []
    for (op, n), g in df.group_by(["op", "gpus"], maintain_order=True):
        p = per_op[str(op)]
        pred = predict(str(op), float(n), g["bytes"].cast(pl.Float64).to_numpy(), p, link_gbps)
        err = np.abs(pred / g["time_s"].to_numpy() - 1.0) * 100
        out.append({"op": op, "gpus": n, "sizes": g.height, "median_err_pct": float(np.median(err)),
                    "max_err_pct": float(err.max()), "min_bytes": int(g["bytes"].min()),  # type: ignore[arg-type]
                    "max_bytes": int(g["bytes"].max())})  # type: ignore[arg-type]
    return pl.DataFrame(out)

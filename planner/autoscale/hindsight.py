"""Hindsight references for the autoscaler comparison: what knowing the future would buy.

Why: "20 % fewer GPU-hours than the best baseline" is only a meaningful target if some policy could
reach it. Two references, computed from the trace itself (so neither is a contender, and neither runs
live):

* :func:`need_series` turns the trace into its *need*: per bin, the bin's requests over what one
  replica sustains at the SLO for that bin's own length mix (the same capacity table every policy is
  tuned from). :func:`need_gpu_hours` integrates it: the GPU-hours of a fleet that follows the need
  exactly, with no cold start, no headroom and no tail; a fleet below it runs its replicas past their SLO
  capacity on average.
* :func:`hindsight` is a *clairvoyant* policy: at every tick it asks for ``factor`` x the largest
  smoothed need over the next ``lookahead_s`` (a cold start's high quantile), so every replica a burst
  needs is ready when the burst arrives, and it is released as soon as no burst within the lookahead
  needs it. No causal policy sees the bursts coming; replaying it at a few factors traces what perfect
  foresight attains per GPU-hour on this trace, with the same simulator, cold starts and router.

>>> import numpy as np
>>> need = np.array([1.0, 1.0, 6.0, 1.0, 1.0, 1.0])
>>> from dataclasses import replace
>>> from planner.contracts.scaling import ScalingContext
>>> ctx = ScalingContext(now_s=0.0, replicas=1, running=(0,), waiting=(0,), kv_cache_usage_perc=(0.0,))
>>> p = hindsight_params(need, bin_s=10.0, lookahead_s=20.0, smooth_bins=1)
>>> hindsight(ctx, params=p).desired_replicas, hindsight(replace(ctx, now_s=30.0), params=p).desired_replicas
(6, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.contracts.scaling import ScalingContext, ScalingDecision, clamp
from solvers.scaling.capacity import CapacityTable
from traces.errors import InputError
from traces.schema import RequestTrace

__all__ = ["HindsightParams", "hindsight", "hindsight_params", "need_gpu_hours", "need_series"]


def need_series(trace: RequestTrace, table: CapacityTable, *, bin_s: float = 5.0) -> np.ndarray:
    """Replicas each ``bin_s`` bin of the trace keeps busy at the SLO (0 for an empty bin).

    Raises:
        InputError: an empty trace or a bin that is not positive.
    """
    if bin_s <= 0:
        raise InputError(f"bin of {bin_s} s", field="bin_s", expected="a positive bin length")
    df = trace.df
    if df.height == 0:
        raise InputError("the trace has no request", path=trace.meta.source, expected="at least one request")
    arr = df["arrival_s"].to_numpy()
    b = (arr // bin_s).astype(np.int64)
    nb = int(b.max()) + 1
    n = np.bincount(b, minlength=nb).astype(np.float64)
    isl = np.bincount(b, weights=df["input_tokens"].to_numpy().astype(np.float64), minlength=nb)
    osl = np.bincount(b, weights=df["output_tokens"].to_numpy().astype(np.float64), minlength=nb)
    out = np.zeros(nb)
    for k in np.flatnonzero(n):
        out[k] = table.need(n[k], isl[k], osl[k], bin_s)
    return out


def need_gpu_hours(need: np.ndarray, *, bin_s: float, gpus_per_replica: int) -> float:
    """GPU-hours of a fleet that is exactly the need in every bin (no cold start, no headroom)."""
    return float(need.sum()) * bin_s * gpus_per_replica / 3600.0


@dataclass(frozen=True)
class HindsightParams:
    """The clairvoyant policy's inputs (build them with :func:`hindsight_params`).

    Attributes:
        need: the trace's need per bin, already smoothed, known in advance.
        bin_s: its bin.
        lookahead_s: how far ahead the policy provisions (at least a high cold-start quantile, so that
            what it starts is ready in time).
        factor: headroom multiplier on the need (the knob that trades GPU-hours for attainment).
        min_replicas, max_replicas: bounds.
    """

    need: tuple[float, ...]
    bin_s: float
    lookahead_s: float
    factor: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 1_000


def hindsight_params(need: np.ndarray, *, bin_s: float, lookahead_s: float, factor: float = 1.0,
                     smooth_bins: int = 3, min_replicas: int = 1,
                     max_replicas: int = 1_000) -> HindsightParams:
    """:class:`HindsightParams` with the need averaged over ``smooth_bins`` bins (centred).

    Why smooth: a one-bin spike is absorbed by queueing within the TTFT target rather than by a replica;
    provisioning every 5-second spike would charge the reference for headroom no policy needs.
    """
    x = np.asarray(need, dtype=np.float64)
    k = max(1, smooth_bins)
    if k > 1 and x.size >= k:
        x = np.convolve(x, np.ones(k) / k, mode="same")
    return HindsightParams(need=tuple(float(v) for v in x), bin_s=bin_s, lookahead_s=lookahead_s,
                           factor=factor, min_replicas=min_replicas, max_replicas=max_replicas)


def hindsight(ctx: ScalingContext, *, params: HindsightParams) -> ScalingDecision[None]:
    """``factor`` x the largest need over ``[now, now + lookahead_s]`` (the future is known)."""
    k0 = max(0, int(ctx.now_s // params.bin_s))
    k1 = int((ctx.now_s + params.lookahead_s) // params.bin_s) + 1
    seg = params.need[k0:k1]
    peak = max(seg) if seg else 0.0
    return ScalingDecision(clamp(math.ceil(params.factor * peak - 1e-9), params.min_replicas,
                                 params.max_replicas), None)

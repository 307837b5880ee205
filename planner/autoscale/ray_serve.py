"""Ray Serve's default autoscaling policy (``replica_queue_length_autoscaling_policy``).

Source: ``ray-project/ray`` ``python/ray/serve/autoscaling_policy.py`` and Ray Serve's AutoscalingConfig
API reference:

* ``total`` = ongoing requests (running + queued at replicas and handles), averaged over
  ``look_back_period_s`` (30 s, mean aggregation);
* :func:`desired_replicas`: ``error = total / (target_ongoing_requests * running)``, smoothed by the
  up/down scaling factor, ``ceil(running * (1 + (error - 1) * factor))``, decremented by one when the factor
  leaves it stuck on a downscale, then bounded;
* :func:`apply_delay`: a change is applied only once it has been wanted for ``upscale_delay_s`` (30 s) or
  ``downscale_delay_s`` (600 s) without a change of direction; 1 -> 0 uses ``downscale_to_zero_delay_s``;
* from zero running replicas with requests waiting, scale to ``max(ceil(upscaling_factor), target)`` at once.

Ray counts control-loop iterations (every 0.1 s) and acts when the counter exceeds ``delay / 0.1``; here the
state keeps *when* the wish started and compares timestamps, which is the same rule without the float trap
Ray's own tests note ("int(delay / interval) undercounts when float division yields 5.999...").

>>> p = RayServeParams(target_ongoing_requests=2, max_replicas=10, upscale_delay_s=0.0)
>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(5, 5), waiting=(0, 0),
...                      kv_cache_usage_perc=(0.1, 0.1))
>>> ray_serve(ctx, params=p).desired_replicas
5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.contracts.scaling import (
    ScalingContext,
    ScalingDecision,
    clamp,
    in_system,
    own_state,
    ready_count,
)


@dataclass(frozen=True)
class RayServeParams:
    """``AutoscalingConfig`` (defaults as documented except the bounds, which every deployment sets).

    Attributes:
        target_ongoing_requests: requests per replica the policy aims for (default 2 since Ray 2.32).
        min_replicas, max_replicas: bounds.
        look_back_period_s: window of the averaged metric.
        upscale_delay_s, downscale_delay_s: how long a wish must last before it is applied.
        downscale_to_zero_delay_s: delay for 1 -> 0 (None: ``downscale_delay_s``).
        upscaling_factor, downscaling_factor: gains on the error (the old ``smoothing_factor``).
    """

    target_ongoing_requests: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 100
    look_back_period_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0


@dataclass(frozen=True)
class RayServeState:
    """The wish in progress (+1 up, -1 down, 0 none) and since when; the look-back samples."""

    direction: int = 0
    since_s: float = 0.0
    samples: tuple[tuple[float, float], ...] = ()


def look_back_mean(samples: tuple[tuple[float, float], ...], now_s: float, window_s: float) -> float:
    """Mean of the samples taken within the last ``window_s`` (the newest always counts)."""
    recent = [v for t, v in samples if t > now_s - window_s] or [samples[-1][1]]
    return sum(recent) / len(recent)


def desired_replicas(total: float, running: int, params: RayServeParams) -> int:
    """``_calculate_desired_num_replicas`` (``running`` > 0).

    >>> desired_replicas(3.0, 4, RayServeParams(target_ongoing_requests=2, downscaling_factor=0.1))
    3
    """
    error = total / (params.target_ongoing_requests * running)
    factor = params.upscaling_factor if error >= 1 else params.downscaling_factor
    n = math.ceil(running * (1 + (error - 1) * factor))
    if math.ceil(running * error) < running and n == running:
        n -= 1  # stuck because of the smoothing factor: step down by one
    return clamp(n, params.min_replicas, params.max_replicas)


def apply_delay(wanted: int, target: int, now_s: float, state: RayServeState,
                params: RayServeParams) -> tuple[int, RayServeState]:
    """Act on a wish only when it has lasted the delay of its direction (reset when it flips)."""
    if wanted == target:
        return target, RayServeState(0, now_s, state.samples)
    direction = 1 if wanted > target else -1
    since = state.since_s if state.direction == direction else now_s
    if direction > 0:
        delay = params.upscale_delay_s
    else:
        to_zero = target == 1
        delay = (params.downscale_to_zero_delay_s
                 if to_zero and params.downscale_to_zero_delay_s is not None else params.downscale_delay_s)
        if not to_zero:
            wanted = max(1, wanted)
    if now_s - since >= delay - 1e-9:
        return wanted, RayServeState(0, now_s, state.samples)
    return target, RayServeState(direction, since, state.samples)


def ray_serve(ctx: ScalingContext, *, params: RayServeParams | None = None) -> ScalingDecision[RayServeState]:
    """One control-loop iteration of Ray Serve's default policy."""
    p = params or RayServeParams()
    st = own_state(ctx, RayServeState, RayServeState)
    samples = tuple(s for s in st.samples if s[0] > ctx.now_s - p.look_back_period_s)
    samples += ((ctx.now_s, float(in_system(ctx))),)
    st = RayServeState(st.direction, st.since_s, samples)
    running = ready_count(ctx)
    target = ctx.replicas
    total = look_back_mean(samples, ctx.now_s, p.look_back_period_s)
    if running == 0:
        if total > 0:
            return ScalingDecision(max(math.ceil(1 * p.upscaling_factor), target), st)
        return ScalingDecision(target, st)
    wanted = desired_replicas(total, running, p)
    n, st = apply_delay(wanted, target, ctx.now_s, st, p)
    return ScalingDecision(n, st)

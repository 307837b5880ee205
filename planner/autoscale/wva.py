"""llm-d Workload Variant Autoscaler, saturation analyzer (one variant).

Source: ``llm-d/llm-d-workload-variant-autoscaler`` ``docs/saturation-analyzer.md``:

* per replica, ``max_over_time[1m]`` of ``vllm:kv_cache_usage_perc`` and ``vllm:num_requests_waiting``
  (:func:`window_max`);
* a replica is saturated when ``kv >= 0.80`` or ``queue >= 5``; spare capacity is averaged over the
  non-saturated ones: ``spare_kv = 0.80 - kv``, ``spare_q = 5 - q`` (:func:`spare_capacity`);
* scale up by one when ``avg spare_kv < 0.1`` or ``avg spare_q < 3`` (or no replica is non-saturated);
* scale down by one only when the load of the non-saturated replicas spread over one replica fewer keeps
  ``spare_kv >= 0.1`` and ``spare_q >= 3``, with at least 2 non-saturated replicas (:func:`can_scale_down`);
* skip while pods are pending (start-up takes 2-7 min; acting then would cascade).

Replicas are matched across samples by their position in the context's tuples.

>>> p = WVAParams(max_replicas=10)
>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(50, 50), waiting=(4, 4),
...                      kv_cache_usage_perc=(0.6, 0.6))
>>> wva(ctx, params=p).desired_replicas
3
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.contracts.scaling import ScalingContext, ScalingDecision, clamp, is_ready, is_scraped, own_state


@dataclass(frozen=True)
class WVAParams:
    """Saturation thresholds (documented defaults), the analysis window and the reconcile interval."""

    kv_cache_threshold: float = 0.80
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.1
    queue_spare_trigger: float = 3.0
    window_s: float = 60.0
    interval_s: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 100


Sample = tuple[float, tuple[float, ...], tuple[float, ...]]
"""``(t, kv per replica, waiting per replica)`` of the ready, scraped replicas."""


@dataclass(frozen=True)
class WVAState:
    """Recent samples (for ``max_over_time``) and the last analysis time."""

    samples: tuple[Sample, ...] = ()
    last_s: float | None = None


def window_max(samples: tuple[Sample, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-replica maxima of KV usage and queue length over the samples (the latest replica set)."""
    n = len(samples[-1][1])
    kv = [max((s[1][i] for s in samples if i < len(s[1])), default=0.0) for i in range(n)]
    q = [max((s[2][i] for s in samples if i < len(s[2])), default=0.0) for i in range(n)]
    return tuple(kv), tuple(q)


def spare_capacity(kv: tuple[float, ...], q: tuple[float, ...],
                   p: WVAParams) -> tuple[int, float, float, float, float]:
    """``(non-saturated count, avg spare kv, avg spare queue, their kv sum, their queue sum)``."""
    idx = [i for i in range(len(kv)) if kv[i] < p.kv_cache_threshold and q[i] < p.queue_length_threshold]
    if not idx:
        return 0, 0.0, 0.0, 0.0, 0.0
    skv = sum(kv[i] for i in idx)
    sq = sum(q[i] for i in idx)
    n = len(idx)
    return n, p.kv_cache_threshold - skv / n, p.queue_length_threshold - sq / n, skv, sq


def needs_scale_up(n_ok: int, spare_kv: float, spare_q: float, p: WVAParams) -> bool:
    """Too little spare capacity left (or every replica saturated)."""
    return n_ok == 0 or spare_kv < p.kv_spare_trigger or spare_q < p.queue_spare_trigger


def can_scale_down(n_ok: int, kv_sum: float, q_sum: float, p: WVAParams) -> bool:
    """The N-1 redistribution still leaves the spare-capacity margins (and N_non_sat >= 2)."""
    if n_ok < 2:
        return False
    kv_after = kv_sum / (n_ok - 1)
    q_after = q_sum / (n_ok - 1)
    return (p.kv_cache_threshold - kv_after >= p.kv_spare_trigger
            and p.queue_length_threshold - q_after >= p.queue_spare_trigger)


def wva(ctx: ScalingContext, *, params: WVAParams | None = None) -> ScalingDecision[WVAState]:
    """Sample every tick; analyse every ``interval_s``: +1, -1 or hold."""
    p = params or WVAParams()
    st = own_state(ctx, WVAState, WVAState)
    idx = [i for i in range(len(ctx.running)) if is_ready(ctx, i) and is_scraped(ctx, i)]
    sample: Sample = (ctx.now_s, tuple(ctx.kv_cache_usage_perc[i] for i in idx),
                      tuple(float(ctx.waiting[i]) for i in idx))
    samples = (*tuple(s for s in st.samples if s[0] > ctx.now_s - p.window_s), sample)
    if st.last_s is not None and ctx.now_s - st.last_s < p.interval_s - 1e-9:
        return ScalingDecision(ctx.replicas, WVAState(samples, st.last_s))
    st = WVAState(samples, ctx.now_s)
    pending = ctx.starting + sum(1 for i in range(len(ctx.running)) if not is_ready(ctx, i))
    if pending > 0:
        return ScalingDecision(ctx.replicas, st)  # pending pods: skip to avoid cascade scaling
    if not idx:
        up = ctx.pending_at_router > 0 or ctx.replicas < p.min_replicas
        return ScalingDecision(clamp(ctx.replicas + (1 if up else 0), p.min_replicas, p.max_replicas), st)
    kv, q = window_max(samples)
    n_ok, spare_kv, spare_q, kv_sum, q_sum = spare_capacity(kv, q, p)
    if needs_scale_up(n_ok, spare_kv, spare_q, p):
        return ScalingDecision(clamp(ctx.replicas + 1, p.min_replicas, p.max_replicas), st)
    if can_scale_down(n_ok, kv_sum, q_sum, p):
        return ScalingDecision(clamp(ctx.replicas - 1, p.min_replicas, p.max_replicas), st)
    return ScalingDecision(clamp(ctx.replicas, p.min_replicas, p.max_replicas), st)

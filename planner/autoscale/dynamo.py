"""NVIDIA Dynamo's SLA planner (throughput mode): predict the next interval's load, size from a profile.

Source: ``ai-dynamo/dynamo`` ``planner_core.py``, ``load_predictor.py``, ``perf_interpolation.py`` and the
planner design doc (``docs/design-docs/planner-design.md``). Every ``adjustment_interval``
(180 s):

1. observe over the interval (here from counter deltas): request count, mean ISL and OSL, mean TTFT and ITL
   (:func:`observe`);
2. correction factors ``p_corr = ttft_obs / ttft_profile(ISL)`` and
   ``d_corr = itl_obs / itl_profile(concurrency, ISL + OSL / 2)`` (:func:`correction_factors`);
3. predict the next interval's request count, ISL and OSL, each with its own predictor: constant (last
   value) or ARIMA once it has 5 points (:mod:`planner.autoscale.arima`), window 50;
4. prefill: ``thpt = num_req * ISL / interval * min(1, p_corr)``, GPUs = ``thpt / thpt_per_gpu(ISL)``;
5. decode: ``itl* = ITL_SLA / d_corr``, the best per-GPU throughput of the profile with ITL <= itl*
   (scanning KV usage from high to low at the nearest context length), GPUs = ``num_req * OSL / interval /
   that``; then ``ceil(GPUs / gpus_per_engine)`` for each pool, at least ``min_endpoint``, scaled down
   proportionally when over ``max_gpu_budget`` (:func:`size_pools`).

Dynamo sizes separate prefill and decode pools. The replay cluster is aggregated (each replica does both),
so :func:`dynamo_sla` asks for ``ceil((prefill GPUs + decode GPUs) / gpus_per_engine)`` replicas: the time
an aggregated engine spends in prefill and in decode adds up. That sum is our adaptation; every other step
is Dynamo's. When the interval saw no request the planner skips the adjustment, as Dynamo does on
``None``/NaN metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from planner.autoscale.arima import arima_forecast
from planner.contracts.scaling import ScalingContext, ScalingDecision, clamp, is_ready, own_state


class Predictor(StrEnum):
    """Dynamo's load predictors implemented here."""

    CONSTANT = "constant"
    ARIMA = "arima"


@dataclass(frozen=True)
class DynamoProfile:
    """The pre-deployment profile Dynamo's planner interpolates (built from our perf model).

    Attributes:
        prefill_isl: ISL grid (ascending).
        prefill_ttft_s: TTFT of one request of that ISL.
        prefill_thpt_per_gpu: prefill tokens/s per GPU at that ISL.
        decode_kv_usage: KV-usage axis of the decode grid (ascending, 0..1).
        decode_context: context-length axis of the decode grid (ascending).
        decode_itl_s: ITL at ``[kv_usage][context]``.
        decode_thpt_per_gpu: decode tokens/s per GPU at ``[kv_usage][context]``.
        kv_capacity_tokens: KV tokens of one engine (turns concurrency into KV usage).
        gpus_per_engine: GPUs per replica.
    """

    prefill_isl: tuple[float, ...]
    prefill_ttft_s: tuple[float, ...]
    prefill_thpt_per_gpu: tuple[float, ...]
    decode_kv_usage: tuple[float, ...]
    decode_context: tuple[float, ...]
    decode_itl_s: tuple[tuple[float, ...], ...]
    decode_thpt_per_gpu: tuple[tuple[float, ...], ...]
    kv_capacity_tokens: int
    gpus_per_engine: int = 1

    def ttft_at(self, isl: float) -> float:
        """Profile TTFT at ``isl`` (interpolated; Dynamo uses a cubic 1-D interpolation)."""
        return float(np.interp(isl, self.prefill_isl, self.prefill_ttft_s))

    def prefill_thpt_at(self, isl: float) -> float:
        return float(np.interp(isl, self.prefill_isl, self.prefill_thpt_per_gpu))

    def _ctx_index(self, context: float) -> int:
        return int(np.argmin(np.abs(np.asarray(self.decode_context) - context)))

    def itl_at(self, concurrency: float, context: float) -> float:
        """Profile ITL at a per-engine concurrency and context length."""
        j = self._ctx_index(context)
        kv = min(1.0, concurrency * context / max(self.kv_capacity_tokens, 1))
        col = [row[j] for row in self.decode_itl_s]
        return float(np.interp(kv, self.decode_kv_usage, col))

    def best_decode_thpt(self, itl_target_s: float, context: float) -> float:
        """``find_best_throughput_per_gpu``: scan KV usage high to low; the first point meeting the ITL."""
        j = self._ctx_index(context)
        for i in range(len(self.decode_kv_usage) - 1, -1, -1):
            if self.decode_itl_s[i][j] <= itl_target_s:
                return self.decode_thpt_per_gpu[i][j]
        return self.decode_thpt_per_gpu[0][j]


@dataclass(frozen=True)
class DynamoParams:
    """Planner arguments (Dynamo defaults) and the profile.

    Attributes:
        profile: the interpolation profile (required for sizing).
        adjustment_interval_s: 180 s.
        ttft_sla_s, itl_sla_s: 0.5 s and 0.05 s.
        predictor: ``arima`` (default) or ``constant``.
        window: points each predictor keeps (50).
        min_endpoint: replicas at least (1).
        max_gpu_budget: GPUs at most (8 by default; set to the cluster's).
        log1p: predict on ``log1p`` of the observations and map back (``load_predictor_log1p``).
    """

    profile: DynamoProfile | None = None
    adjustment_interval_s: float = 180.0
    ttft_sla_s: float = 0.5
    itl_sla_s: float = 0.05
    predictor: Predictor = Predictor.ARIMA
    window: int = 50
    min_endpoint: int = 1
    max_gpu_budget: int = 8
    log1p: bool = False


@dataclass(frozen=True)
class Counters:
    """A snapshot of the cumulative counters the planner differences."""

    t_s: float
    requests: int
    prompt: int
    generation: int
    ttft_sum: float
    ttft_count: int
    itl_sum: float
    itl_count: int

    @staticmethod
    def of(ctx: ScalingContext) -> Counters:
        return Counters(ctx.now_s, ctx.requests_total, ctx.prompt_tokens_total, ctx.generation_tokens_total,
                        ctx.ttft_sum_s, ctx.ttft_count, ctx.itl_sum_s, ctx.itl_count)


@dataclass(frozen=True)
class Observation:
    """One interval's averages (NaN where the interval had no sample)."""

    num_req: int
    isl: float
    osl: float
    ttft_s: float
    itl_s: float
    concurrency: float


@dataclass(frozen=True)
class DynamoState:
    """Counters at the last adjustment, the predictors' buffers, the last sizing."""

    last: Counters | None = None
    num_req: tuple[float, ...] = ()
    isl: tuple[float, ...] = ()
    osl: tuple[float, ...] = ()
    prefill_gpus: float = 0.0
    decode_gpus: float = 0.0


def observe(prev: Counters, ctx: ScalingContext) -> Observation:
    """Interval averages from counter deltas; concurrency = mean running per ready replica now."""
    n = ctx.requests_total - prev.requests
    nan = float("nan")
    isl = (ctx.prompt_tokens_total - prev.prompt) / n if n > 0 else nan
    osl = (ctx.generation_tokens_total - prev.generation) / n if n > 0 else nan
    dc = ctx.ttft_count - prev.ttft_count
    ttft = (ctx.ttft_sum_s - prev.ttft_sum) / dc if dc > 0 else nan
    di = ctx.itl_count - prev.itl_count
    itl = (ctx.itl_sum_s - prev.itl_sum) / di if di > 0 else nan
    ready = [ctx.running[i] for i in range(len(ctx.running)) if is_ready(ctx, i)]
    conc = sum(ready) / len(ready) if ready else 0.0
    return Observation(n, isl, osl, ttft, itl, conc)


def correction_factors(obs: Observation, profile: DynamoProfile) -> tuple[float, float]:
    """``(p_corr, d_corr)``; 1 where an observation is missing."""
    p = obs.ttft_s / profile.ttft_at(obs.isl) if math.isfinite(obs.ttft_s) else 1.0
    d = (obs.itl_s / profile.itl_at(max(obs.concurrency, 1.0), obs.isl + obs.osl / 2)
         if math.isfinite(obs.itl_s) else 1.0)
    return (p if math.isfinite(p) and p > 0 else 1.0), (d if math.isfinite(d) and d > 0 else 1.0)


def predict(buffer: tuple[float, ...], predictor: Predictor, *, log1p: bool = False) -> float:
    """Next value: the last one (constant) or auto-ARIMA (constant until 5 points); with ``log1p`` the
    predictor sees ``log1p`` of the values and its forecast is mapped back with ``expm1``.

    >>> predict((3.0, 4.0), Predictor.ARIMA), predict((3.0, 4.0), Predictor.CONSTANT, log1p=True)
    (4.0, 4.0)
    """
    if predictor is Predictor.CONSTANT or len(buffer) < 5:
        return buffer[-1]
    if log1p:
        return max(0.0, math.expm1(arima_forecast(tuple(math.log1p(max(x, 0.0)) for x in buffer))))
    return max(0.0, arima_forecast(buffer))


def size_pools(num_req: float, isl: float, osl: float, p_corr: float, d_corr: float,
               params: DynamoParams, profile: DynamoProfile) -> tuple[float, float]:
    """GPUs needed by the prefill and the decode work of the next interval (before rounding)."""
    iv = params.adjustment_interval_s
    thpt_p = num_req * isl / iv * min(1.0, p_corr)
    p_gpus = thpt_p / max(profile.prefill_thpt_at(isl), 1e-9)
    itl_target = params.itl_sla_s / d_corr
    d_gpus = num_req * osl / iv / max(profile.best_decode_thpt(itl_target, isl + osl / 2), 1e-9)
    return p_gpus, d_gpus


def replicas_for(p_gpus: float, d_gpus: float, params: DynamoParams, profile: DynamoProfile) -> int:
    """Aggregated replicas (see the module docstring), ``min_endpoint``, and the GPU budget."""
    g = profile.gpus_per_engine
    n = max(params.min_endpoint, math.ceil((p_gpus + d_gpus) / g - 1e-9))
    return clamp(n, params.min_endpoint, max(params.min_endpoint, params.max_gpu_budget // g))


def dynamo_sla(ctx: ScalingContext, *, params: DynamoParams | None = None) -> ScalingDecision[DynamoState]:
    """One planner tick: adjust every ``adjustment_interval_s``, hold in between."""
    p = params or DynamoParams()
    st = own_state(ctx, DynamoState, DynamoState)
    if st.last is None:
        return ScalingDecision(ctx.replicas, replace(st, last=Counters.of(ctx)))
    if ctx.now_s - st.last.t_s < p.adjustment_interval_s - 1e-9 or p.profile is None:
        return ScalingDecision(ctx.replicas, st)
    obs = observe(st.last, ctx)
    st = replace(st, last=Counters.of(ctx))
    if obs.num_req <= 0:
        return ScalingDecision(ctx.replicas, st)  # no request: metrics are NaN, the planner skips
    w = p.window
    st = replace(st, num_req=((*st.num_req, float(obs.num_req)))[-w:], isl=((*st.isl, obs.isl))[-w:],
                 osl=((*st.osl, obs.osl))[-w:])
    p_corr, d_corr = correction_factors(obs, p.profile)
    nxt = (predict(st.num_req, p.predictor, log1p=p.log1p), predict(st.isl, p.predictor, log1p=p.log1p),
           predict(st.osl, p.predictor, log1p=p.log1p))
    pg, dg = size_pools(nxt[0], max(nxt[1], 1.0), max(nxt[2], 1.0), p_corr, d_corr, p, p.profile)
    return ScalingDecision(replicas_for(pg, dg, p, p.profile), replace(st, prefill_gpus=pg, decode_gpus=dg))

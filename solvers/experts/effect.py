"""What a placement's imbalance costs in latency and capacity: the perf model at each placement's max/mean.

An expert-parallel MoE step waits, layer after layer, for its busiest GPU, so its expert GEMMs and its
all-to-all run on ``imbalance`` times the mean token count (:mod:`planner.perf.model`). The number that
step time follows is the *aggregate* imbalance (sum over layers of the busiest GPU's load over the sum of
mean loads: :meth:`solvers.experts.Placement.aggregate_imbalance`). This module turns such numbers, one
per placement, into the figures a planner compares: decode step time (TPOT) at a few batch sizes, one
prefill chunk's time (a TTFT proxy), and the decode tokens/s one replica sustains at a TPOT target.

The layout is the caller's: the placement's GPUs should be the layout's ``ep``. The perf model lets
``ep`` divide ``tp`` only (experts spread over the TP GPUs of a stage), so a placement over ``G`` GPUs
maps to ``Parallelism(tp=G, ep=G)``; see :func:`ep_layout`.

>>> from planner.catalog import load_catalog
>>> cat = load_catalog()
>>> rows = placement_effect(cat.model("Mixtral-8x7B"), cat.gpu("H200-SXM"), ep_layout(2),
...                         {"uniform": 1.0, "skewed": 1.5})
>>> rows[1].tpot_s[-1] > rows[0].tpot_s[-1]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.catalog import GPUSpec, ModelSpec
from planner.perf import Parallelism, build_replica_perf
from planner.perf.calibration import Calibration
from traces.errors import InputError

DECODE_BATCHES: tuple[int, ...] = (1, 32, 128, 256)
"""Decode batch sizes (sequences per replica) at which TPOT is reported."""
CONTEXT_TOKENS = 2048
"""Default KV tokens of every decoding sequence."""
CHUNK_TOKENS = 8192
"""Default new tokens of the timed prefill chunk (vLLM's default token budget)."""


@dataclass(frozen=True)
class EffectRow:
    """One placement's latency and capacity under the perf model.

    Attributes:
        name: the placement ("uniform", "EPLB greedy", "fleetwise"...).
        imbalance: max/mean expert load fed to the perf model.
        batches: decode batch sizes of ``tpot_s``.
        tpot_s: pure-decode step time at each batch size, every sequence at ``context_tokens`` of KV.
        prefill_chunk_s: time of one prefill chunk of ``chunk_tokens`` new tokens at context 0.
        decode_tokens_per_s: the most decode tokens/s one replica sustains with its step within the TPOT
            target (KV cache permitting); 0 when even one sequence misses it.
        decode_batch: the batch size that achieves it.
    """

    name: str
    imbalance: float
    batches: tuple[int, ...]
    tpot_s: tuple[float, ...]
    prefill_chunk_s: float
    decode_tokens_per_s: float
    decode_batch: int


def ep_layout(gpus: int) -> Parallelism:
    """The layout whose expert-parallel group is a placement's ``gpus`` GPUs.

    The perf model requires ``ep`` to divide ``tp`` and counts ``tp * pp`` GPUs per replica, so the only
    layout with ``ep == gpus`` is ``tp = ep = gpus``, ``pp = 1`` (attention TP-split over the same GPUs;
    attention data-parallelism is not modelled).

    >>> ep_layout(32)
    Parallelism(tp=32, pp=1, ep=32, dp_attention=False)
    """
    if gpus < 1:
        raise InputError(f"{gpus} GPUs", field="gpus", expected="a positive integer")
    return Parallelism(tp=gpus, pp=1, ep=gpus)


def placement_effect(
    model: ModelSpec,
    gpu: GPUSpec,
    par: Parallelism,
    imbalances: dict[str, float],
    *,
    weight_dtype: str = "bf16",
    batches: tuple[int, ...] = DECODE_BATCHES,
    context_tokens: int = CONTEXT_TOKENS,
    chunk_tokens: int = CHUNK_TOKENS,
    tpot_slo_s: float = 0.05,
    max_batch: int = 1024,
    calibration: Calibration | None = None,
) -> list[EffectRow]:
    """Decode TPOT, prefill chunk time and decode capacity of one replica, per placement.

    Args:
        model: a catalog MoE model.
        gpu: catalog GPU.
        par: the replica's layout (``ep`` = the placement's GPUs, see :func:`ep_layout`).
        imbalances: placement name -> max/mean expert load (>= 1), in the order to report.
        weight_dtype: ``bf16`` or ``fp8`` (DeepSeek-V3 ships fp8).
        batches: decode batch sizes to report TPOT at.
        context_tokens: KV tokens of every decoding sequence.
        chunk_tokens: new tokens of the prefill chunk timed.
        tpot_slo_s: decode step-time target for the capacity figure.
        max_batch: largest decode batch tried for capacity.
        calibration: the step model's calibration (an engine profile's, from
            :func:`planner.perf.engine_profile.engine_perf_inputs`); None: the GPU's own.

    Returns:
        One :class:`EffectRow` per entry of ``imbalances``, in order.

    Raises:
        InputError: a dense model, an imbalance below 1 or not finite, bad sizes, or a layout the perf
            model rejects (the message says why).
    """
    if model.moe is None:
        raise InputError(f"{model.name} is dense: no experts to place", field="model",
                         expected="a catalog MoE model")
    for what, v in (("context_tokens", context_tokens), ("chunk_tokens", chunk_tokens),
                    ("max_batch", max_batch), *((f"batch {b}", b) for b in batches)):
        if v < 1:
            raise InputError(f"{what} = {v}", field=what, expected="a positive integer")
    if not (math.isfinite(tpot_slo_s) and tpot_slo_s > 0):
        raise InputError(f"TPOT target {tpot_slo_s}", field="tpot_slo_s", expected="seconds > 0")
    rows = []
    for name, imb in imbalances.items():
        if not (math.isfinite(imb) and imb >= 1.0):
            raise InputError(f"imbalance {imb} of placement {name!r}", field="imbalance",
                             expected="max/mean load >= 1")
        perf = build_replica_perf(model, gpu, par, weight_dtype=weight_dtype, expert_imbalance=imb,
                                  max_batch_tokens=chunk_tokens, calibration=calibration)
        b = np.asarray(batches, dtype=np.float64)
        tpot = perf.step_time_s(0.0, 0.0, b, b * context_tokens)
        n = float(chunk_tokens)
        chunk = float(perf.step_time_s(n, n * (n + 1) / 2, 0.0, 0.0))
        fit = min(max_batch, perf.kv_capacity_tokens // context_tokens)
        cap, best = 0.0, 0
        if fit >= 1:
            grid = np.arange(1, fit + 1, dtype=np.float64)
            steps = perf.step_time_s(0.0, 0.0, grid, grid * context_tokens)
            rate = np.where(steps <= tpot_slo_s, grid / steps, 0.0)
            i = int(np.argmax(rate))
            cap, best = float(rate[i]), (i + 1 if rate[i] > 0 else 0)
        rows.append(EffectRow(name=name, imbalance=float(imb), batches=tuple(batches),
                              tpot_s=tuple(float(t) for t in tpot), prefill_chunk_s=chunk,
                              decode_tokens_per_s=cap, decode_batch=best))
    return rows

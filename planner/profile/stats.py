"""Statistics and operation counts used by the profiler (pure numpy, no torch).

The median of repeats is the shipped time: it ignores the occasional slow outlier (a clock ramp, a
stray host interruption) that a mean would carry into the fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def median(values: Sequence[float]) -> float:
    """Median of the repeats; NaN for none.

    >>> median([3.0, 1.0, 2.0, 100.0])
    2.5
    >>> math.isnan(median([]))
    True
    """
    if len(values) == 0:
        return math.nan
    return float(np.median(np.asarray(values, dtype=np.float64)))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation); NaN for none.

    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50)
    3.0
    """
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for none.

    >>> mean([1.0, 3.0])
    2.0
    """
    if len(values) == 0:
        return math.nan
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def repeats_for(first_s: float, *, target_s: float, lo: int, hi: int) -> int:
    """How many timed repeats fill about ``target_s`` given one run took ``first_s``, within [lo, hi].

    Small kernels get many repeats (their medians are noisy), large ones few (each is already long).

    >>> repeats_for(0.001, target_s=0.05, lo=5, hi=100)
    50
    >>> repeats_for(1.0, target_s=0.05, lo=3, hi=100)
    3
    """
    if first_s <= 0 or not math.isfinite(first_s):
        return hi
    return int(min(hi, max(lo, round(target_s / first_s))))


def gemm_tflops(m: int, n: int, k: int, time_s: float) -> float:
    """Achieved TFLOP/s of an ``m x n x k`` GEMM (2 flops per multiply-add).

    >>> round(gemm_tflops(1000, 1000, 1000, 1e-3), 3)
    2.0
    """
    return 2.0 * m * n * k / time_s / 1e12 if time_s > 0 else math.nan


def copy_gbps(nbytes: int, time_s: float) -> float:
    """Device copy bandwidth in GB/s counting bytes read plus bytes written.

    >>> copy_gbps(1_000_000_000, 1.0)
    2.0
    """
    return 2.0 * nbytes / time_s / 1e9 if time_s > 0 else math.nan


def rotation_count(buffer_bytes: int, l2_bytes: int, *, cap: int = 64) -> int:
    """Copies of a buffer to rotate through so that no timed run finds its inputs in L2.

    Enough copies to span three times the L2 size, at least two, at most ``cap``.

    >>> rotation_count(1 << 30, 50 << 20)
    2
    >>> rotation_count(1 << 20, 50 << 20)
    64
    >>> rotation_count(10 << 20, 50 << 20)
    15
    """
    if buffer_bytes <= 0:
        return 2
    return int(min(cap, max(2, math.ceil(3 * l2_bytes / buffer_bytes))))


def attention_flops(batch: int, heads: int, head_dim: int, pairs: float) -> float:
    """FLOPs of attention over ``pairs`` query-key pairs per (batch, head): QK^T and PV, 2 each.

    >>> attention_flops(1, 1, 128, 10.0)
    5120.0
    """
    return 4.0 * batch * heads * head_dim * pairs


def llama_step_flops(
    *,
    params_linear: int,
    num_layers: int,
    num_heads: int,
    head_dim: int,
    tokens: int,
    logits_tokens: int,
    lm_head_params: int,
    pairs: float,
) -> float:
    """Approximate FLOPs of one forward step: linear layers, LM head on sampled tokens, attention.

    >>> llama_step_flops(params_linear=10, num_layers=1, num_heads=1, head_dim=1, tokens=2,
    ...                  logits_tokens=1, lm_head_params=5, pairs=3.0)
    62.0
    """
    linear = 2.0 * params_linear * tokens + 2.0 * lm_head_params * logits_tokens
    return linear + num_layers * attention_flops(1, num_heads, head_dim, pairs)

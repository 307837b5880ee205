"""Synthetic request traces for benchmarks and tests (seeded, pure).

Why lognormal: the Azure LLM conversation trace (2023) has input tokens with median 1,020 / mean 1,155 and
output tokens with median 129 / mean 211 (Microsoft's ``AzurePublicDataset``, AzureLLMInferenceTrace_conv);
a lognormal with ``mu = ln(median)`` and ``sigma = sqrt(2 ln(mean / median))`` has exactly that median and
mean.

>>> tr = azure_conv_like(1000, rate_rps=10.0, seed=1)
>>> tr.num_requests, float(tr.df["arrival_s"][0])
(1000, 0.0)
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from traces.schema import RequestTrace, TraceMeta

AZURE_CONV_INPUT = (1020.0, 1155.0)
"""(median, mean) prompt tokens of the Azure 2023 conversation trace."""
AZURE_CONV_OUTPUT = (129.0, 211.0)
"""(median, mean) output tokens of the Azure 2023 conversation trace."""


def lognormal_from_median_mean(median: float, mean: float) -> tuple[float, float]:
    """``(mu, sigma)`` of the lognormal with this median and mean.

    >>> mu, s = lognormal_from_median_mean(100.0, 100.0 * math.exp(0.5))
    >>> round(mu, 6) == round(math.log(100.0), 6), round(s, 6)
    (True, 1.0)
    """
    return math.log(median), math.sqrt(2.0 * math.log(mean / median))


def azure_conv_like(n: int, *, rate_rps: float, seed: int, max_tokens: int = 32_768) -> RequestTrace:
    """``n`` requests, Poisson arrivals at ``rate_rps``, Azure-conversation-like lengths (clipped to
    ``[1, max_tokens]``)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_rps, n)
    arrival = np.cumsum(gaps)
    arrival -= arrival[0] if n else 0.0
    mu_i, s_i = lognormal_from_median_mean(*AZURE_CONV_INPUT)
    mu_o, s_o = lognormal_from_median_mean(*AZURE_CONV_OUTPUT)
    inp = np.clip(np.rint(rng.lognormal(mu_i, s_i, n)), 1, max_tokens).astype(np.int32)
    out = np.clip(np.rint(rng.lognormal(mu_o, s_o, n)), 1, max_tokens).astype(np.int32)
    df = pl.DataFrame({"arrival_s": arrival, "input_tokens": inp, "output_tokens": out})
    return RequestTrace(df, TraceMeta(source=f"synthetic:azure-conv-like(n={n},rate={rate_rps},seed={seed})",
                                      format="synthetic"))

"""Small trace builders shared by the simulator tests."""

from __future__ import annotations

import numpy as np
import polars as pl

from traces.schema import RequestTrace, TraceMeta


def make_trace(arrival: np.ndarray, inp: np.ndarray, out: np.ndarray, *,
               prefix_hashes: list[list[int]] | None = None, block_size: int | None = None,
               slo_class: list[str] | None = None) -> RequestTrace:
    """A canonical trace from columns (arrivals shifted to start at 0)."""
    arrival = np.asarray(arrival, dtype=np.float64)
    arrival = arrival - arrival[0] if arrival.size else arrival
    cols: dict[str, object] = {
        "arrival_s": arrival,
        "input_tokens": np.asarray(inp, dtype=np.int32),
        "output_tokens": np.asarray(out, dtype=np.int32),
    }
    df = pl.DataFrame(cols)
    if prefix_hashes is not None:
        df = df.with_columns(pl.Series("prefix_hashes", prefix_hashes, dtype=pl.List(pl.UInt64)))
    if slo_class is not None:
        df = df.with_columns(pl.Series("slo_class", slo_class, dtype=pl.String))
    return RequestTrace(df, TraceMeta(source="test", format="synthetic", block_size=block_size))


def poisson_trace(n: int, rate: float, seed: int, *, max_in: int = 3000, max_out: int = 400,
                  prefix_groups: int = 0, block_size: int = 64) -> RequestTrace:
    """Poisson arrivals, uniform lengths; with ``prefix_groups`` > 0, prompts share group prefixes."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    inp = rng.integers(1, max_in, n)
    out = rng.integers(1, max_out, n)
    hashes = None
    if prefix_groups:
        groups = rng.integers(0, prefix_groups, n)
        hashes = [[int(g) * 100_000 + j for j in range((int(i) + block_size - 1) // block_size)]
                  for g, i in zip(groups, inp, strict=True)]
    return make_trace(arrival, inp, out, prefix_hashes=hashes, block_size=block_size if prefix_groups else None)

"""Small explicit :class:`~planner.perf.api.ReplicaPerf` implementations with known answers.

Why here and not in tests: doctests, the pure-Python reference loop and the queueing-theory tests all
need a perf model whose step time is a simple formula (a constant service time makes M/D/1 and M/G/1
checks exact). They are real implementations of the contract, not mocks.

>>> p = LinearPerf(base_s=0.01, per_decode_s=0.0, per_kv_s=0.0)
>>> float(p.step_time_s(0.0, 0.0, 4.0, 100.0))
0.01
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.sim.kernels import linear_step_power, linear_step_time
from traces.schema import RequestTrace, TraceMeta

Num = NDArray[np.float64] | float


@dataclass(frozen=True)
class LinearPerf:
    """A replica whose step time is linear in the four batch aggregates (power likewise).

    Attributes:
        base_s: fixed cost of every step.
        per_prefill_token_s: cost per prefill token.
        per_pair_s: cost per prefill attention query-key pair.
        per_decode_s: cost per decoding sequence.
        per_kv_s: cost per KV token read by decode attention.
        kv_tokens: KV cache capacity in tokens.
        kv_token_bytes: KV bytes per token per GPU (Llama-3.1-8B's in bf16: 32 layers x 8 KV heads x 128
            x 2 tensors x 2 bytes).
        gpus_per_replica: GPUs in the replica.
        idle_power_w: power per GPU of an empty step; ``busy_power_w`` is added per unit of step time
            above ``base_s``... kept simple: ``power = idle + busy_power_w`` whenever a step runs.
    """

    base_s: float = 0.005
    per_prefill_token_s: float = 2e-5
    per_pair_s: float = 0.0
    per_decode_s: float = 5e-5
    per_kv_s: float = 1e-8
    kv_tokens: int = 200_000
    kv_token_bytes: float = 131_072.0
    gpus_per_replica: int = 1
    idle_power_w: float = 70.0
    busy_power_w: float = 400.0
    clock_scale: float = 1.0

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens

    @property
    def kv_bytes_per_token(self) -> float:
        return self.kv_token_bytes

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica

    def _params(self) -> NDArray[np.float64]:
        return np.array([self.base_s, self.per_prefill_token_s, self.per_pair_s, self.per_decode_s,
                         self.per_kv_s]) * self.clock_scale

    def step_time_s(self, prefill_tokens: Num, prefill_pairs: Num, decode_seqs: Num,
                    decode_kv: Num) -> NDArray[np.float64]:
        p = self._params()
        return np.asarray(p[0] + p[1] * np.asarray(prefill_tokens) + p[2] * np.asarray(prefill_pairs)
                          + p[3] * np.asarray(decode_seqs) + p[4] * np.asarray(decode_kv), dtype=np.float64)

    def step_power_w(self, prefill_tokens: Num, prefill_pairs: Num, decode_seqs: Num,
                     decode_kv: Num) -> NDArray[np.float64]:
        shape = np.broadcast(np.asarray(prefill_tokens), np.asarray(decode_seqs)).shape
        return np.full(shape, self.idle_power_w + self.busy_power_w / self.clock_scale)

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        p = self._params()
        return float(p[0] + p[3] * decode_seqs), float(p[4])

    def kernel(self) -> tuple[object, NDArray[np.float64]]:
        return linear_step_time, self._params()

    def power_kernel(self) -> tuple[object, NDArray[np.float64]]:
        return linear_step_power, np.array([self.idle_power_w + self.busy_power_w / self.clock_scale])

    def at_clock(self, sm_clock_mhz: float) -> LinearPerf:
        """Slower by ``1980 / sm_clock_mhz`` (an H100's boost clock as the reference)."""
        return replace(self, clock_scale=1980.0 / sm_clock_mhz)


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
    return make_trace(arrival, inp, out, prefix_hashes=hashes,
                      block_size=block_size if prefix_groups else None)

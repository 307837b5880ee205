"""The contract between the performance model and its callers (simulator, solvers, CLI).

A :class:`ReplicaPerf` answers, for one replica of one model on one GPU type in one parallelism layout
at one SM clock: how long does an engine step take, how much KV cache fits, what power does each GPU
draw. The simulator calls it in its hot loop, so besides the Python methods it exposes a numba-callable
form (:meth:`ReplicaPerf.kernel`).

A batch composition is summarised by four aggregates, enough for every operator's cost:

``prefill_tokens``  new (uncached) prompt tokens computed this step, over all prefill chunks
``prefill_pairs``   query-key pairs of prefill attention: sum over chunks of ``n * (ctx + (n + 1) / 2)``
                    for a chunk of ``n`` tokens starting at context offset ``ctx``
``decode_seqs``     sequences doing one decode token this step
``decode_kv``       sum of their KV lengths (tokens read from the cache by decode attention)

Pure-decode steps with a fixed set of sequences are affine in ``decode_kv`` (every other operator is
independent of it), which lets the simulator sum long runs of decode steps in closed form:
``step(B, kv) = a(B) + b(B) * kv`` (see :meth:`ReplicaPerf.decode_affine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Parallelism:
    """Layout of one replica: tensor, pipeline and expert parallel degrees.

    GPUs per replica = ``tp * pp`` (expert parallelism reuses the same GPUs: ``ep`` must divide ``tp``).
    With ``dp_attention`` the ``tp`` GPUs run attention data-parallel instead (each GPU holds the whole
    attention and the KV of its own sequences) and share the experts by EP (``ep == tp``), as SGLang's
    DP attention and vLLM's data-parallel + expert-parallel deployments serve DeepSeek-V3: for MLA, whose
    one latent KV head TP can only replicate, it multiplies the KV capacity by ``tp`` and removes the
    attention all-reduces, at the cost of every GPU reading the whole attention weights each step.
    """

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp_attention: bool = False

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


class ReplicaPerf(Protocol):
    """Per-replica performance: step latency, memory and power. Implemented in :mod:`planner.perf`."""

    @property
    def kv_capacity_tokens(self) -> int:
        """KV-cache tokens the replica can hold after weights, activations and reserve."""
        ...

    @property
    def gpus(self) -> int:
        """GPUs in the replica (for GPU-hours and power aggregation)."""
        ...

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token takes on each GPU of the replica (what a KV tier moves per GPU)."""
        ...

    def step_time_s(
        self,
        prefill_tokens: NDArray[np.float64] | float,
        prefill_pairs: NDArray[np.float64] | float,
        decode_seqs: NDArray[np.float64] | float,
        decode_kv: NDArray[np.float64] | float,
    ) -> NDArray[np.float64]:
        """Step latency in seconds, vectorised over batch compositions (numpy broadcasting)."""
        ...

    def step_power_w(
        self,
        prefill_tokens: NDArray[np.float64] | float,
        prefill_pairs: NDArray[np.float64] | float,
        decode_seqs: NDArray[np.float64] | float,
        decode_kv: NDArray[np.float64] | float,
    ) -> NDArray[np.float64]:
        """Average power per GPU of the replica over such a step, watts."""
        ...

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        """``(a, b)`` such that a pure-decode step of ``decode_seqs`` sequences with ``kv`` total KV
        tokens takes ``a + b * kv`` seconds."""
        ...

    def kernel(self) -> tuple[object, NDArray[np.float64]]:
        """``(fn, params)``: a numba ``@njit`` function and its parameter vector such that
        ``fn(params, prefill_tokens, prefill_pairs, decode_seqs, decode_kv)`` returns the same step
        time (seconds, float) as :meth:`step_time_s`, callable from other njit code."""
        ...

    def at_clock(self, sm_clock_mhz: float) -> ReplicaPerf:
        """The same replica with its SM clock locked to ``sm_clock_mhz`` (slower, lower power)."""
        ...

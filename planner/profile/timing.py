"""Timing with CUDA events: warm-up, an adaptive number of repeats, the median, the wall window.

Every benchmark goes through :func:`time_op` so the method is the same everywhere: the op is called
with a rotating index (callers use it to pick one of several input copies, so no timed run finds its
inputs in L2), warmed up, timed once to size the repeats, then timed ``reps`` times between events. The
wall-clock window of the repeats is returned too, so the NVML sampler can say what clock and power
the GPU ran at meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.profile.stats import median, repeats_for


@dataclass(frozen=True)
class Timing:
    """Result of :func:`time_op`: the median seconds, all repeats, and the wall window."""

    time_s: float
    times_s: tuple[float, ...]
    t0: float
    t1: float


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how often to time one op.

    Attributes:
        warmup: untimed calls first (module load, autotuning, handle creation).
        target_s: GPU time the repeats should add up to.
        lo: fewest timed repeats.
        hi: most timed repeats.
    """

    warmup: int = 3
    target_s: float = 0.03
    lo: int = 5
    hi: int = 60


QUICK_POLICY = TimingPolicy(warmup=2, target_s=0.01, lo=3, hi=10)


def time_op(
    torch: Any,
    op: Callable[[int], object],
    policy: TimingPolicy,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``op(i)`` on the current CUDA stream with events; ``i`` counts calls from 0.

    Args:
        torch: the imported torch module (passed in so this module imports without it).
        op: the operation; it must enqueue GPU work and may use ``i`` to rotate inputs.
        policy: warm-up and repeat counts.
        clock: wall clock for the window (the NVML sampler's clock).
    """
    calls = 0
    for _ in range(policy.warmup):
        op(calls)
        calls += 1
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    op(calls)
    calls += 1
    end.record()
    end.synchronize()
    first = start.elapsed_time(end) / 1e3
    reps = repeats_for(first, target_s=policy.target_s, lo=policy.lo, hi=policy.hi)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    t0 = clock()
    for i in range(reps):
        starts[i].record()
        op(calls)
        calls += 1
        ends[i].record()
    torch.cuda.synchronize()
    t1 = clock()
    times = tuple(s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends, strict=True))
    return Timing(median(times), times, t0, t1)

"""Timing with CUDA events: warm-up, an adaptive number of repeats, the median, the wall window.

Every benchmark goes through :func:`time_op` so the method is the same everywhere: the op is called
with a rotating index (callers use it to pick one of several input copies, so no timed run finds its
inputs in L2), warmed up, timed once to size the repeats, then timed ``reps`` times between events.
Ops shorter than a couple of milliseconds are captured into a CUDA graph and timed by replaying it,
so the reported time is the GPU's rather than Python's launch latency. The wall-clock window of the
repeats is returned too, so the NVML sampler can say what clock and power the GPU ran at meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.profile.stats import median, repeats_for


@dataclass(frozen=True)
class Timing:
    """Result of :func:`time_op`: the median seconds per call, all repeats, the wall window, and
    whether the calls were replayed from a CUDA graph (``inner`` calls per replay)."""

    time_s: float
    times_s: tuple[float, ...]
    t0: float
    t1: float
    graph: bool = False
    inner: int = 1


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how often to time one op.

    Attributes:
        warmup: untimed calls first (module load, autotuning, handle creation); ops slower than 20 ms
            get one.
        target_s: GPU time the repeats should add up to.
        lo: fewest timed repeats.
        hi: most timed repeats.
        graph_below_s: ops faster than this are captured ``inner`` times into a CUDA graph and timed by
            replaying it, so the host's launch latency (tens of microseconds through Python) does not
            pad kernels that run for a few microseconds; engines replay such kernels from graphs too.
        graph_span_s: GPU time one graph replay should take (sets ``inner``).
    """

    warmup: int = 3
    target_s: float = 0.03
    lo: int = 5
    hi: int = 60
    graph_below_s: float = 2e-3
    graph_span_s: float = 2e-3


QUICK_POLICY = TimingPolicy(warmup=2, target_s=0.01, lo=3, hi=10)


def inner_calls(first_s: float, policy: TimingPolicy) -> int:
    """Calls per graph replay: enough to span ``graph_span_s``, between 2 and 64.

    >>> inner_calls(5e-5, TimingPolicy())
    40
    >>> inner_calls(1e-3, TimingPolicy())
    2
    """
    return int(min(64, max(2, round(policy.graph_span_s / max(first_s, 1e-7)))))


def event_time(torch: Any, fn: Callable[[], object]) -> float:
    """Seconds ``fn`` took on the GPU, between two CUDA events around it."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) / 1e3


def _capture(torch: Any, op: Callable[[int], object], first: int, inner: int) -> Any | None:
    """A CUDA graph of ``op(first) ... op(first + inner - 1)``, or None when capture fails."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            op(first)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for j in range(inner):
                op(first + j)
        graph.replay()
        torch.cuda.synchronize()
        return graph
    except Exception:
        torch.cuda.synchronize()
        return None


def time_op(
    torch: Any,
    op: Callable[[int], object],
    policy: TimingPolicy,
    *,
    clock: Callable[[], float] = time.perf_counter,
    graph: bool = True,
) -> Timing:
    """Time ``op(i)`` on the current CUDA stream with events; ``i`` counts calls from 0.

    Short ops (under ``policy.graph_below_s``) are captured into a CUDA graph of ``inner`` calls and
    each repeat replays it, reporting replay time over ``inner``; when capture fails (or ``graph`` is
    False) every repeat is one eager call between two events.

    Args:
        torch: the imported torch module (passed in so this module imports without it).
        op: the operation; it must enqueue GPU work and may use ``i`` to rotate inputs.
        policy: warm-up, repeat counts and graph thresholds.
        clock: wall clock for the window (the NVML sampler's clock).
        graph: allow CUDA-graph replay for short ops.
    """
    w0 = clock()
    op(0)
    torch.cuda.synchronize()
    calls = 1
    if clock() - w0 < 0.02:
        for _ in range(policy.warmup - 1):
            op(calls)
            calls += 1
        torch.cuda.synchronize()
    first = event_time(torch, lambda: op(calls))
    calls += 1
    captured = None
    inner = 1
    if graph and first < policy.graph_below_s:
        inner = inner_calls(first, policy)
        captured = _capture(torch, op, calls, inner)
        if captured is not None:
            first = event_time(torch, captured.replay) / inner
        else:
            inner = 1
    reps = repeats_for(first * inner, target_s=policy.target_s, lo=policy.lo, hi=policy.hi)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    t0 = clock()
    for i in range(reps):
        starts[i].record()
        if captured is not None:
            captured.replay()
        else:
            op(calls)
            calls += 1
        ends[i].record()
    torch.cuda.synchronize()
    t1 = clock()
    times = tuple(s.elapsed_time(e) / 1e3 / inner for s, e in zip(starts, ends, strict=True))
    return Timing(median(times), times, t0, t1, graph=captured is not None, inner=inner)

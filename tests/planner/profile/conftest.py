"""Fixtures: a CPU stand-in for ``torch`` with CUDA calls, so the profiler runs in tests without a GPU.

Tensors asked for on ``"cuda"`` are made on the CPU, CUDA events read the host clock, synchronisation is
a no-op and CUDA graph capture fails (the profiler then falls back to eager steps, as it would on a GPU
where capture fails). Timings from it mean nothing; the tests check shapes, schemas and control flow.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

_DEVICE_FUNCS = frozenset(
    {"randn", "randint", "ones", "zeros", "empty", "full", "arange", "Generator", "tensor", "rand"}
)


class _Event:
    def __init__(self, enable_timing: bool = True) -> None:
        self.t = 0.0

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        return None

    def elapsed_time(self, other: _Event) -> float:
        return (other.t - self.t) * 1e3


class _Cuda:
    Event = _Event

    def __init__(self, torch: Any) -> None:
        self.OutOfMemoryError = torch.cuda.OutOfMemoryError

    def synchronize(self) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def is_available(self) -> bool:
        return True

    def Stream(self) -> Any:  # noqa: N802 (mirrors torch.cuda.Stream)
        raise RuntimeError("no CUDA graphs on the CPU stand-in")


class CpuTorch:
    """Wraps the real ``torch`` module; see the module docstring."""

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self.cuda = _Cuda(torch)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._torch, name)
        if name in _DEVICE_FUNCS:

            def on_cpu(*args: Any, **kwargs: Any) -> Any:
                if kwargs.get("device") == "cuda":
                    kwargs["device"] = "cpu"
                return attr(*args, **kwargs)

            return on_cpu
        return attr


@pytest.fixture(scope="session")
def cpu_torch() -> CpuTorch:
    """The CPU stand-in around the real torch; skips when torch is not installed (as in CI)."""
    torch = pytest.importorskip("torch", reason="torch is not installed: the profiler's torch paths need it")
    return CpuTorch(torch)

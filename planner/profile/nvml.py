"""A background NVML sampler: power, energy, clocks and utilisation every ~25 ms.

Two power readings are kept because they answer different questions. The board's *instant* power
(``NVML_FI_DEV_POWER_INSTANT``, where the driver has it) gives the distribution (p50/p95) within a
phase; ``nvmlDeviceGetPowerUsage`` is averaged by the driver over about a second on recent GPUs. The
*total energy* counter gives the exact mean over any window as an energy difference over a time
difference, which is what the shipped means use whenever the window is long enough.

The clock is injected (``clock``), so tests can drive the sampler deterministically; on the GPU host it
is :func:`time.perf_counter`, the same clock the benchmarks stamp their windows with.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One NVML reading. Missing readings are NaN."""

    t: float
    power_w: float
    power_avg_w: float
    energy_j: float
    sm_clock_mhz: float
    mem_clock_mhz: float
    gpu_util: float
    mem_util: float


@dataclass(frozen=True)
class WindowStats:
    """Statistics of the samples inside a time window."""

    power_w_mean: float
    power_w_p50: float
    power_w_p95: float
    sm_clock_mhz_mean: float
    mem_clock_mhz_mean: float
    gpu_util_mean: float
    samples: int


Reader = Callable[[], tuple[float, float, float, float, float, float, float]]
"""Returns ``(power_w, power_avg_w, energy_j, sm_clock_mhz, mem_clock_mhz, gpu_util, mem_util)``."""


def nvml_reader(index: int = 0) -> tuple[Reader, dict[str, Any]] | None:
    """A reader of GPU ``index`` through pynvml and a dict of static device facts; None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None

    def safe(fn: Callable[[], float]) -> float:
        try:
            return float(fn())
        except Exception:
            return math.nan

    def instant_mw() -> float:
        values = pynvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_POWER_INSTANT])
        fv = values[0]
        if fv.nvmlReturn != 0:
            return math.nan
        vt = fv.valueType
        if vt == pynvml.NVML_VALUE_TYPE_DOUBLE:
            return float(fv.value.dVal)
        if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
            return float(fv.value.ullVal)
        if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG:
            return float(fv.value.ulVal)
        return float(fv.value.uiVal)

    clock_sm = pynvml.NVML_CLOCK_SM
    clock_mem = pynvml.NVML_CLOCK_MEM

    def read() -> tuple[float, float, float, float, float, float, float]:
        avg = safe(lambda: pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        inst = safe(instant_mw) / 1000.0
        if not math.isfinite(inst) or inst <= 0:
            inst = avg
        energy = safe(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0
        sm = safe(lambda: pynvml.nvmlDeviceGetClockInfo(handle, clock_sm))
        mem = safe(lambda: pynvml.nvmlDeviceGetClockInfo(handle, clock_mem))
        try:
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            gpu_u, mem_u = float(util.gpu), float(util.memory)
        except Exception:
            gpu_u = mem_u = math.nan
        return inst, avg, energy, sm, mem, gpu_u, mem_u

    def text(fn: Callable[[], Any]) -> str:
        try:
            v = fn()
            return v.decode() if isinstance(v, bytes) else str(v)
        except Exception:
            return ""

    facts: dict[str, Any] = {
        "gpu_name": text(lambda: pynvml.nvmlDeviceGetName(handle)),
        "driver": text(pynvml.nvmlSystemGetDriverVersion),
        "max_sm_clock_mhz": safe(lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, clock_sm)),
        "max_mem_clock_mhz": safe(lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, clock_mem)),
        "power_limit_w": safe(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1000.0,
        "instant_power_field": math.isfinite(safe(instant_mw)),
    }
    return read, facts


@dataclass
class Sampler:
    """Samples ``reader`` every ``period_s`` in a daemon thread between :meth:`start` and :meth:`stop`.

    Args:
        reader: the NVML reader (or a fake one in tests).
        period_s: sampling period.
        clock: monotonic clock in seconds, shared with whoever asks for windows.
    """

    reader: Reader
    period_s: float = 0.025
    clock: Callable[[], float] = time.perf_counter
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample_once(self) -> Sample:
        """Take one reading now and keep it."""
        values = self.reader()
        s = Sample(self.clock(), *values)
        with self._lock:
            self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.period_s)

    def start(self) -> Sampler:
        """Start the background thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def snapshot(self) -> list[Sample]:
        """A copy of the samples so far."""
        with self._lock:
            return list(self.samples)

    def window(self, t0: float, t1: float) -> list[Sample]:
        """Samples with ``t0 <= t <= t1``; the nearest one when the window holds none."""
        samples = self.snapshot()
        inside = [s for s in samples if t0 <= s.t <= t1]
        if inside or not samples:
            return inside
        mid = 0.5 * (t0 + t1)
        return [min(samples, key=lambda s: abs(s.t - mid))]

    def energy_power_w(self, t0: float, t1: float) -> float:
        """Mean power over ``[t0, t1]`` from the energy counter (first and last samples inside); NaN when
        fewer than two samples with a valid counter fall in the window or the window is under 0.3 s."""
        inside = [s for s in self.snapshot() if t0 <= s.t <= t1 and math.isfinite(s.energy_j)]
        if len(inside) < 2:
            return math.nan
        dt = inside[-1].t - inside[0].t
        if dt < 0.3:
            return math.nan
        return (inside[-1].energy_j - inside[0].energy_j) / dt

    def stats(self, t0: float, t1: float) -> WindowStats:
        """Power and clock statistics in ``[t0, t1]``; the mean power comes from the energy counter when
        it can (see :meth:`energy_power_w`), else from the instant readings."""
        return window_stats(self.window(t0, t1), energy_mean_w=self.energy_power_w(t0, t1))


def window_stats(samples: list[Sample], *, energy_mean_w: float = math.nan) -> WindowStats:
    """Statistics of ``samples`` (NaN-safe); ``energy_mean_w`` overrides the mean power when finite.

    >>> s = [Sample(float(i), 100.0 + i, 0.0, 0.0, 1980.0, 2619.0, 50.0, 10.0) for i in range(5)]
    >>> st = window_stats(s)
    >>> (st.power_w_mean, st.power_w_p50, st.sm_clock_mhz_mean, st.samples)
    (102.0, 102.0, 1980.0, 5)
    """

    def col(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        arr = np.asarray([getattr(s, name) for s in samples], dtype=np.float64)
        return arr[np.isfinite(arr)]

    def agg(arr: np.ndarray[Any, np.dtype[np.float64]], fn: Callable[..., Any], *args: float) -> float:
        return float(fn(arr, *args)) if arr.size else math.nan

    power = col("power_w")
    mean_w = energy_mean_w if math.isfinite(energy_mean_w) else agg(power, np.mean)
    return WindowStats(
        power_w_mean=mean_w,
        power_w_p50=agg(power, np.percentile, 50.0),
        power_w_p95=agg(power, np.percentile, 95.0),
        sm_clock_mhz_mean=agg(col("sm_clock_mhz"), np.mean),
        mem_clock_mhz_mean=agg(col("mem_clock_mhz"), np.mean),
        gpu_util_mean=agg(col("gpu_util"), np.mean),
        samples=len(samples),
    )

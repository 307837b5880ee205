"""Per-server power timelines (from a replay or from a power trace file) and how clock locks change them.

A :class:`PowerTimeline` is the unlocked GPU power of every server of a row on a uniform time grid. It comes
from the simulator's power table (:func:`timeline_from_replay`) or from a user's telemetry
(:func:`timeline_from_power_trace`, through :func:`traces.power.load_power_trace`). The server's non-GPU
base power is kept apart (``base_w`` per server) because clock locks do not touch it.

A :class:`ClockModel` says, for each SM clock a policy can lock to, how much of a GPU's power above idle
remains (``power_ratio``) and how much longer an engine step takes (``slowdown``). It is derived from the
calibrated performance model (:func:`clock_model_from_perf`) at the workload's average step composition,
so the counterfactual "what would this server draw if locked" needs no second replay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.contracts.power import ClockModel
from planner.perf.api import ReplicaPerf
from traces.errors import InputError

F64 = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PowerTimeline:
    """Unlocked GPU power per server on a uniform grid.

    Attributes:
        t_s: start of each sample, seconds, ``t_s[i] = t_s[0] + i * dt_s``.
        dt_s: sample length.
        gpu_w: ``[samples, servers]`` average GPU watts of each server (all its GPUs together).
        server_ids: one id per column.
        source: where it came from (file or replay), for messages.
    """

    t_s: F64
    dt_s: float
    gpu_w: F64
    server_ids: tuple[str, ...]
    source: str = "inline"

    def __post_init__(self) -> None:
        if self.gpu_w.ndim != 2 or self.gpu_w.shape != (self.t_s.size, len(self.server_ids)):
            raise InputError(
                f"power matrix of shape {self.gpu_w.shape} for {self.t_s.size} samples and "
                f"{len(self.server_ids)} servers",
                path=self.source,
                field="power_w",
                expected="one sample per server per time",
            )
        if not (self.dt_s > 0 and math.isfinite(self.dt_s)):
            raise InputError(
                f"sample length {self.dt_s}",
                path=self.source,
                field="t_s",
                expected="a uniform time grid with a positive step",
            )
        if self.gpu_w.size and not (np.isfinite(self.gpu_w).all() and (self.gpu_w >= 0).all()):
            raise InputError(
                "non-finite or negative power", path=self.source, field="power_w", expected="watts >= 0"
            )

    @property
    def samples(self) -> int:
        return int(self.t_s.size)

    @property
    def servers(self) -> int:
        return len(self.server_ids)

    @property
    def duration_s(self) -> float:
        return self.samples * self.dt_s

    def first(self, n: int) -> PowerTimeline:
        """The first ``n`` servers (a row of ``n`` servers from a larger replayed pool)."""
        if not 1 <= n <= self.servers:
            raise InputError(
                f"{n} servers asked of a timeline with {self.servers}",
                path=self.source,
                field="servers",
                expected=f"1..{self.servers}",
            )
        return PowerTimeline(self.t_s, self.dt_s, self.gpu_w[:, :n], self.server_ids[:n], self.source)

    def resample(self, period_s: float) -> PowerTimeline:
        """Averages over windows of ``period_s`` (a whole multiple of ``dt_s``): what telemetry sees."""
        k = _multiple(period_s, self.dt_s, self.source)
        if k == 1:
            return self
        m = self.samples // k
        w = self.gpu_w[: m * k].reshape(m, k, self.servers).mean(axis=1)
        return PowerTimeline(self.t_s[: m * k : k], self.dt_s * k, w, self.server_ids, self.source)


def _multiple(period_s: float, dt_s: float, source: str) -> int:
    k = round(period_s / dt_s)
    if k < 1 or abs(k * dt_s - period_s) > 1e-6 * max(period_s, 1.0):
        raise InputError(
            f"period {period_s:g} s is not a whole multiple of the {dt_s:g} s samples",
            path=source,
            field="telemetry_period_s",
            expected=f"a multiple of {dt_s:g} s",
        )
    return int(k)


def timeline_from_power_frame(df: pl.DataFrame, *, source: str, gpu_only_w: float = 0.0) -> PowerTimeline:
    """Pivot a long power table (``t_s, scope, id, power_w``) into a server timeline.

    Args:
        df: rows in :data:`traces.schema.POWER_POLARS_SCHEMA`; only ``scope == "server"`` rows are used.
        source: the file or run, for messages.
        gpu_only_w: watts to subtract from every server sample to leave GPU power only (the non-GPU
            base, when the telemetry measured whole servers); 0 when the samples are GPU power.

    Raises:
        InputError: no server rows, a server missing at some time, or a non-uniform time grid.
    """
    srv = df.filter(pl.col("scope") == "server")
    if srv.height == 0:
        raise InputError(
            "no server-scope samples",
            path=source,
            field="scope",
            expected="rows with scope 'server' (per-server power)",
        )
    wide = srv.pivot(on="id", index="t_s", values="power_w", aggregate_function="first").sort("t_s")
    ids = [c for c in wide.columns if c != "t_s"]
    ids.sort(key=_natural_key)
    mat = wide.select(ids).to_numpy().astype(np.float64)
    t = wide["t_s"].to_numpy().astype(np.float64)
    if np.isnan(mat).any():
        r, c = np.argwhere(np.isnan(mat))[0]
        raise InputError(
            f"server {ids[c]} has no sample at t_s={t[r]:g}",
            path=source,
            field="power_w",
            expected="every server sampled at every time",
        )
    if t.size >= 2:
        d = np.diff(t)
        dt = float(np.median(d))
        if not np.allclose(d, dt, rtol=1e-6, atol=1e-9):
            i = int(np.argmax(np.abs(d - dt) > 1e-6 * max(dt, 1.0)))
            raise InputError(
                f"time step {d[i]:g} s at t_s={t[i + 1]:g} differs from {dt:g} s",
                path=source,
                field="t_s",
                expected="a uniform sampling period",
            )
    else:
        dt = 1.0
    gpu = mat - gpu_only_w
    if gpu_only_w and (gpu < 0).any():
        raise InputError(
            f"a server sample is below the {gpu_only_w:g} W base",
            path=source,
            field="power_w",
            expected="server watts >= the non-GPU base power",
        )
    return PowerTimeline(t_s=t, dt_s=dt, gpu_w=gpu, server_ids=tuple(ids), source=source)


def _natural_key(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return head, int(tail) if tail else -1


def timeline_from_power_trace(path: str | Path, *, gpu_only_w: float = 0.0) -> PowerTimeline:
    """Read a power trace file (CSV/Parquet, validated by :func:`traces.power.load_power_trace`).

    >>> from pathlib import Path
    >>> tl = timeline_from_power_trace(Path(__file__).parents[2] / "tests/data/traces/power_sample.csv")
    >>> tl.servers >= 1
    True
    """
    from traces.power import load_power_trace

    return timeline_from_power_frame(load_power_trace(path), source=str(path), gpu_only_w=gpu_only_w)


def timeline_from_replay(power: pl.DataFrame | None, *, source: str = "replay") -> PowerTimeline:
    """The server timeline of a replay's power table (``SimResult.power``; GPU watts per server).

    Raises:
        InputError: the replay ran without a GPU spec (no power table).
    """
    if power is None:
        raise InputError(
            "the replay has no power table",
            path=source,
            field="gpu",
            expected="a replay run with the GPU spec (replay(..., gpu=...))",
        )
    return timeline_from_power_frame(power, source=source)


@dataclass(frozen=True)
class StepMix:
    """An average engine step (the four aggregates of :mod:`planner.perf.api`)."""

    prefill_tokens: float
    prefill_pairs: float
    decode_seqs: float
    decode_kv: float


def mix_from_replay(timeseries: pl.DataFrame, requests: pl.DataFrame) -> StepMix:
    """The average step of a replay: tokens per step from its time series, context lengths from requests.

    Why an average: the counterfactual power of a locked server is needed per server and sample, where
    only watts are known; one representative step per workload keeps that a table lookup.

    Raises:
        InputError: the replay ran no step.
    """
    steps = float(timeseries["steps"].sum())
    if steps <= 0:
        raise InputError("the replay ran no engine step", field="steps", expected="a non-empty replay")
    pt = float(timeseries["prefill_tokens"].sum()) / steps
    ds = float(timeseries["decode_tokens"].sum()) / steps
    mean_in = float(np.mean(requests["input_tokens"].to_numpy())) if requests.height else 0.0
    mean_out = float(np.mean(requests["output_tokens"].to_numpy())) if requests.height else 0.0
    chunk = min(pt, mean_in) if pt > 0 else 0.0
    pairs = pt * ((chunk + 1.0) / 2.0)  # chunks starting at context 0 (prefix hits shift them: ignored)
    kv = ds * (mean_in + mean_out / 2.0)
    return StepMix(prefill_tokens=pt, prefill_pairs=pairs, decode_seqs=ds, decode_kv=kv)


def clock_model_from_perf(
    perf: ReplicaPerf,
    *,
    mix: StepMix,
    max_clock_mhz: float,
    idle_w: float,
    gpus_per_server: int,
    clocks_mhz: Sequence[float],
) -> ClockModel:
    """Tabulate power ratio and slowdown of ``perf`` locked at each clock, at the step ``mix``.

    Args:
        perf: the replica at its unlocked clock (``at_clock`` gives the locked ones).
        mix: the workload's average step.
        max_clock_mhz: the unlocked clock.
        idle_w: per-GPU idle watts of the perf model (its power at an empty step).
        gpus_per_server: GPUs per server.
        clocks_mhz: clocks a policy may lock to (below ``max_clock_mhz``).

    >>> from planner.catalog import load_catalog
    >>> from planner.perf import Parallelism, build_replica_perf
    >>> cat = load_catalog(); gpu = cat.gpu("H100-SXM")
    >>> perf = build_replica_perf(cat.model("Llama-3.1-8B"), gpu, Parallelism(tp=1))
    >>> cm = clock_model_from_perf(perf, mix=StepMix(512, 512 * 256, 32, 32 * 1000), max_clock_mhz=1980,
    ...                            idle_w=float(perf.step_power_w(0, 0, 0, 0)), gpus_per_server=8,
    ...                            clocks_mhz=[1200, 1600])
    >>> cm.ratio(1200) < cm.ratio(1600) < 1.0 < cm.slow(1200)
    True
    """
    xs = (mix.prefill_tokens, mix.prefill_pairs, mix.decode_seqs, mix.decode_kv)
    p_max = float(perf.step_power_w(*xs))
    t_max = float(perf.step_time_s(*xs))
    clocks = sorted({float(c) for c in clocks_mhz if c < max_clock_mhz})
    ratios, slows = [], []
    dyn = max(p_max - idle_w, 1e-9)
    for c in clocks:
        p = perf.at_clock(c)
        ratios.append(min(1.0, max(0.0, (float(p.step_power_w(*xs)) - idle_w) / dyn)))
        slows.append(max(1.0, float(p.step_time_s(*xs)) / t_max))
    return ClockModel(
        max_clock_mhz=float(max_clock_mhz),
        idle_w=float(idle_w),
        gpus_per_server=int(gpus_per_server),
        clocks_mhz=tuple(clocks),
        power_ratio=tuple(ratios),
        slowdown=tuple(slows),
    )

"""NVIDIA Dynamo's power-planner rule, as published, for one aggregated configuration.

Source: ``ai-dynamo/dynamo`` ``docs/design-docs/powerplanner-design.md`` (Kai Ma, 2026-05; phases 1-3
validated, the power-as-sweep-dimension phase still a draft); design notes area A3. What it does:

* **The cap** (§5.1, aggregated mode): ``cap = ceil(aic_power_w * max(1, c_power_agg))`` per GPU, where
  ``aic_power_w`` is aiconfigurator's predicted per-GPU draw of the configuration at its operating point,
  and ``c_power_agg`` an EMA (``alpha = 0.3``, clamped to ``[0.5, 2]``) of observed over predicted power.
  The cap is never set below the estimate ("that would force NVML throttling on every tick").
* **The budget** (§3.3): ``total_gpu_power_limit = rack_W * headroom - non_GPU_overhead`` with
  ``headroom`` about 0.85-0.9; replicas fit while ``replicas * cap * gpus <= total_gpu_power_limit``.
  With the non-GPU overhead counted per server that is ``servers = floor(h B / (cap * GPUs + base))``.
* **The choice** (§5.4): every candidate operating point is kept only if its corrected latency meets
  the SLO (``aic_ttft * max(1, c_ttft) <= ttft``, ``aic_itl * max(1, c_itl) <= itl``) and its capped
  power fits the budget; the survivor with the most throughput wins (ties: fewer GPUs, lower cap).

Here the perf model plays aiconfigurator: for each batch size ``b`` (powers of two up to the engine's
``max_num_seqs`` and the KV capacity) the steady-state aggregated step runs ``b`` decodes plus the chunked
prefill that keeps the batch full (``b * ISL / OSL`` prompt tokens a step); its time is the ITL, its
power the ``aic_power_w``, ``b / ITL`` the throughput; the isolated prompt of mean length gives the TTFT.
The corrections come from a replay of Dynamo's own fleet: ``c_*`` are the EMAs over its planner ticks
(180 s) of observed mean power per GPU, TTFT and TPOT over the predictions; if they move the choice, the
fleet is chosen and replayed again.

A power cap is modelled in the replay as the highest SM clock at which the chosen operating point's step
fits under the cap (the GPU's power manager lowers the clock until it does); at Dynamo's own cap that is
the full clock, so its fleet runs unthrottled, as the rule intends.

>>> dynamo_servers_for_cap(339_200, cap_w=491, gpus_per_server=8, base_w=2880, headroom=0.9)
44
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from planner.contracts.serving import SLOTarget
from planner.perf.api import ReplicaPerf
from traces.errors import InputError

EMA_ALPHA = 0.3
"""Dynamo's smoothing factor for every correction coefficient (§5.3)."""
COEFF_RANGE = (0.5, 2.0)
"""Dynamo clamps every coefficient to this range after each update (§5.3)."""
PLANNER_TICK_S = 180.0
"""Dynamo planner adjustment interval (default ``adjustment_interval``, §5.6)."""


@dataclass(frozen=True)
class OperatingPoint:
    """One candidate of the aiconfigurator stand-in: the steady state at ``batch`` running sequences.

    Attributes:
        batch: running sequences.
        prefill_tokens: prompt tokens a step (chunked prefill that keeps the batch full).
        itl_s: step time = inter-token latency.
        ttft_s: isolated prefill of the mean prompt.
        power_w: per-GPU power of the step (``aic_power_w``).
        throughput_tok_s: output tokens/s of one replica.
    """

    batch: int
    prefill_tokens: float
    itl_s: float
    ttft_s: float
    power_w: float
    throughput_tok_s: float


def operating_points(
    perf: ReplicaPerf, *, mean_in: float, mean_out: float, max_seqs: int = 256, max_batched_tokens: int = 8192
) -> tuple[OperatingPoint, ...]:
    """The candidates for batch sizes 1, 2, 4, ... up to ``max_seqs`` that fit the KV cache.

    Raises:
        InputError: non-positive mean lengths.
    """
    if not (mean_in > 0 and mean_out >= 1):
        raise InputError(
            f"mean prompt {mean_in}, mean output {mean_out}", field="input_tokens/output_tokens",
            expected="mean prompt > 0 and mean output >= 1 token",
        )
    ttft = float(perf.step_time_s(mean_in, mean_in * (mean_in + 1) / 2, 0.0, 0.0))
    out = []
    b = 1
    while b <= max_seqs:
        if b * (mean_in + mean_out) > perf.kv_capacity_tokens:
            break
        pt = min(b * mean_in / mean_out, max(0.0, max_batched_tokens - b))
        pairs = pt * (min(pt, mean_in) + 1.0) / 2.0
        kv = b * (mean_in + mean_out / 2.0)
        t = float(perf.step_time_s(pt, pairs, float(b), kv))
        w = float(perf.step_power_w(pt, pairs, float(b), kv))
        out.append(OperatingPoint(b, pt, t, ttft, w, b / t))
        b *= 2
    return tuple(out)


def dynamo_servers_for_cap(
    budget_w: float, *, cap_w: float, gpus_per_server: int, base_w: float, headroom: float
) -> int:
    """``floor(headroom B / (cap x GPUs + base))``: Dynamo's ``cap x N`` within its GPU budget, with the
    non-GPU overhead of each server taken off the rack budget first."""
    if not 0 < headroom <= 1:
        raise InputError(f"headroom {headroom}", field="dynamo_headroom", expected="0 < headroom <= 1")
    return max(0, math.floor(headroom * budget_w / (cap_w * gpus_per_server + base_w) + 1e-9))


def cap_for(aic_power_w: float, c_power: float) -> float:
    """The §5.1 bridge: ``ceil(aic_power_w * max(1, c_power))``.

    >>> cap_for(480.0, 1.04), cap_for(360.0, 0.8)
    (500.0, 360.0)
    """
    return float(math.ceil(aic_power_w * max(1.0, c_power) - 1e-9))


def ema(ratios: list[float], *, initial: float = 1.0) -> float:
    """Dynamo's EMA over per-tick observed/predicted ratios, clamped after each update.

    >>> round(ema([2.0, 2.0]), 3)
    1.51
    """
    c = initial
    lo, hi = COEFF_RANGE
    for r in ratios:
        if np.isfinite(r) and r > 0:
            c = min(hi, max(lo, EMA_ALPHA * r + (1 - EMA_ALPHA) * c))
    return c


@dataclass(frozen=True)
class Corrections:
    """Dynamo's live coefficients (1.0 at cold start)."""

    c_power: float = 1.0
    c_ttft: float = 1.0
    c_itl: float = 1.0


@dataclass(frozen=True)
class DynamoChoice:
    """The operating point Dynamo keeps, its cap and the servers its budget admits.

    Attributes:
        point: the winning operating point.
        cap_w: per-GPU cap.
        servers: servers admitted.
        corrections: the coefficients it was chosen with.
        feasible_points: candidates that passed the SLO gate.
    """

    point: OperatingPoint
    cap_w: float
    servers: int
    corrections: Corrections
    feasible_points: int


def choose(
    points: tuple[OperatingPoint, ...],
    *,
    budget_w: float,
    slo: SLOTarget,
    gpus_per_server: int,
    replicas_per_server: int,
    base_w: float,
    headroom: float,
    corrections: Corrections,
) -> DynamoChoice:
    """Dynamo's selection (§5.4, aggregated mode) over the operating points.

    Raises:
        InputError: no operating point meets the SLO gate or fits the budget.
    """
    best: tuple[tuple[float, float, float], OperatingPoint, float, int] | None = None
    feasible = 0
    for op in points:
        if op.ttft_s * max(1.0, corrections.c_ttft) > slo.ttft_s:
            continue
        if op.itl_s * max(1.0, corrections.c_itl) > slo.tpot_s:
            continue
        feasible += 1
        cap = cap_for(op.power_w, corrections.c_power)
        n = dynamo_servers_for_cap(
            budget_w, cap_w=cap, gpus_per_server=gpus_per_server, base_w=base_w, headroom=headroom
        )
        if n < 1:
            continue
        gpus = n * gpus_per_server
        key = (n * replicas_per_server * op.throughput_tok_s, -float(gpus), -float(gpus) * cap)
        if best is None or key > best[0]:
            best = (key, op, cap, n)
    if best is None:
        raise InputError(
            "no operating point meets the SLO within the budget (Dynamo rule)",
            field="slo", expected="an SLO the configuration can meet at batch 1",
        )
    return DynamoChoice(
        point=best[1], cap_w=best[2], servers=best[3], corrections=corrections, feasible_points=feasible
    )


def corrections_from_replay(
    requests: pl.DataFrame,
    power: pl.DataFrame | None,
    point: OperatingPoint,
    *,
    tick_s: float = PLANNER_TICK_S,
) -> Corrections:
    """Dynamo's coefficients after watching its fleet: per planner tick, observed mean per-GPU power
    (ticks with work only), mean TTFT and mean TPOT over the operating point's predictions."""
    ttft_r: list[float] = []
    itl_r: list[float] = []
    pow_r: list[float] = []
    done = requests.filter(pl.col("finish_s").is_not_null())
    if done.height:
        by = (
            done.with_columns((pl.col("finish_s") // tick_s).alias("_tick"))
            .group_by("_tick")
            .agg(pl.col("ttft_s").mean(), pl.col("tpot_s").mean())
            .sort("_tick")
        )
        ttft_r = [float(x) / point.ttft_s for x in by["ttft_s"].fill_null(np.nan)]
        itl_r = [float(x) / point.itl_s for x in by["tpot_s"].fill_null(np.nan)]
    if power is not None and power.height:
        g = (
            power.filter(pl.col("scope") == "gpu")
            .with_columns((pl.col("t_s") // tick_s).alias("_tick"))
            .group_by("_tick")
            .agg(pl.col("power_w").mean())
            .sort("_tick")
        )
        pow_r = [float(x) / point.power_w for x in g["power_w"]]
    return Corrections(c_power=ema(pow_r), c_ttft=ema(ttft_r), c_itl=ema(itl_r))


def cap_clock_for_point(
    perf: ReplicaPerf, point: OperatingPoint, *, cap_w: float, max_clock_mhz: float, min_clock_mhz: float,
    mean_in: float, mean_out: float,
) -> float:
    """The highest clock at which ``point``'s step draws at most ``cap_w`` per GPU (bisection)."""
    b = float(point.batch)
    pt = point.prefill_tokens
    pairs = pt * (min(pt, mean_in) + 1.0) / 2.0
    kv = b * (mean_in + mean_out / 2.0)

    def power(c: float) -> float:
        p = perf.at_clock(c) if c < max_clock_mhz else perf
        return float(p.step_power_w(pt, pairs, b, kv))

    if power(max_clock_mhz) <= cap_w:
        return max_clock_mhz
    lo, hi = min_clock_mhz, max_clock_mhz
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(mid) <= cap_w else (lo, mid)
    return lo

"""Whole-step timings of the Llama stack and sustained-load power phases.

Power is a property of a *sustained* load: the board's sensors and the energy counter need hundreds of
milliseconds to say anything, so each phase keeps one kind of work running for seconds and is summarised
after a ramp-up allowance. Each phase also records what the load achieved (TFLOP/s and HBM bandwidth,
absolute and as a fraction of the catalog peak), so the power model can be fitted as a function of how
compute- and memory-bound the work is rather than of the phase's name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from planner.profile.grid import ModelShape, StepCase
from planner.profile.llama import Stack, linear_params
from planner.profile.micro import BenchContext, Row
from planner.profile.stats import llama_step_flops
from planner.profile.timing import TimingPolicy, time_op

STEP_POLICY = TimingPolicy(warmup=2, target_s=0.25, lo=3, hi=25)
"""Whole steps are long: fewer repeats, each already averaging 32 layers."""


PREFILL_PHASE = StepCase("prefill", 2, 4096)
"""The sustained prefill load of the power phases: two 4k-token prompts a step."""


@dataclass(frozen=True)
class Peaks:
    """Catalog peaks the achieved rates are divided by (NaN when the catalog lacks the GPU)."""

    bf16_tflops: float
    hbm_tbps: float


def step_flops(shape: ModelShape, case: StepCase, num_layers: int) -> float:
    """FLOPs of one step of the stack (linear layers, LM head on sampled tokens, attention).

    >>> from planner.profile.grid import LLAMA_8B
    >>> f = step_flops(LLAMA_8B, StepCase("decode", decode_seqs=1, decode_len=1), 32)
    >>> round(f / 1e9, 1)
    15.0
    """
    tokens = case.prefill_tokens + case.decode_seqs
    sampled = case.prefill_seqs + case.decode_seqs
    pairs = case.prefill_pairs + case.decode_kv
    return llama_step_flops(
        params_linear=linear_params(shape) * num_layers,
        num_layers=num_layers,
        num_heads=shape.num_heads,
        head_dim=shape.head_dim,
        tokens=tokens,
        logits_tokens=sampled,
        lm_head_params=shape.vocab_size * shape.hidden_size,
        pairs=pairs,
    )


def step_bytes(shape: ModelShape, case: StepCase, num_layers: int) -> float:
    """Minimum HBM bytes of one step: every weight once, the KV read by attention, the KV written.

    >>> from planner.profile.grid import LLAMA_8B
    >>> round(step_bytes(LLAMA_8B, StepCase("decode", decode_seqs=1, decode_len=1), 32) / 1e9, 2)
    16.06
    """
    weights = 2.0 * (linear_params(shape) * num_layers + 2 * shape.vocab_size * shape.hidden_size)
    kv_token = 2.0 * 2 * shape.num_kv_heads * shape.head_dim * num_layers
    kv_read = case.decode_kv + case.prefill_seqs * (case.prefill_ctx + case.prefill_len)
    kv_written = case.prefill_tokens + case.decode_seqs
    return weights + kv_token * (kv_read + kv_written)


def bench_steps(
    ctx: BenchContext, stack: Stack, cases: Iterable[StepCase], *, power_window_s: float = 0.6
) -> list[Row]:
    """Time each step case (median of repeats) and its mean power over ``power_window_s`` of repeats."""
    torch = ctx.torch
    rows: list[Row] = []
    modes: dict[str, int] = {}
    for case in cases:
        if ctx.out_of_time():
            ctx.notes["steps_stopped_early"] = f"deadline reached after {len(rows)} steps"
            break
        try:
            run, mode = stack.runner(case, graph=case.kind != "prefill")
            t = time_op(torch, indexed(run), STEP_POLICY, clock=ctx.clock, graph=False)
        except torch.cuda.OutOfMemoryError:
            ctx.notes.setdefault("steps_oom", []).append(str(case))
            torch.cuda.empty_cache()
            continue
        modes[f"{case.kind}:{mode}"] = modes.get(f"{case.kind}:{mode}", 0) + 1
        power_w = math.nan
        sm = ctx.sm_clock(t)
        if ctx.sampler is not None and power_window_s > 0:
            t0, t1 = run_for(torch, run, power_window_s, t.time_s, clock=ctx.clock)
            st = ctx.sampler.stats(t0, t1)
            power_w = ctx.sampler.energy_power_w(t0, t1)
            sm = st.sm_clock_mhz_mean
        rows.append(
            {
                "kind": case.kind,
                "prefill_tokens": case.prefill_tokens,
                "prefill_pairs": case.prefill_pairs,
                "decode_seqs": case.decode_seqs,
                "decode_kv": case.decode_kv,
                "time_s": t.time_s,
                "power_w": power_w,
                "sm_clock_mhz": sm,
            }
        )
        ctx.log(
            f"  step {case.kind} p={case.prefill_tokens} ctx={case.prefill_ctx} b={case.decode_seqs} "
            f"kv={case.decode_len}: {t.time_s * 1e3:.2f} ms ({mode}) {power_w:.0f} W"
        )
        del run
        torch.cuda.empty_cache()
    ctx.notes["steps_modes"] = modes
    return rows


def indexed(run: Callable[[], Any]) -> Callable[[int], object]:
    """``run`` as an op taking the (ignored) call index :func:`time_op` passes."""

    def op(_i: int) -> object:
        return run()

    return op


def run_for(
    torch: Any,
    run: Callable[[], Any],
    seconds: float,
    est_s: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Keep ``run`` busy on the GPU for about ``seconds``; return the wall window it ran in.

    Work is enqueued in batches of about 0.1 s of estimated GPU time so the queue never runs dry.
    """
    batch = max(1, min(1000, round(0.1 / max(est_s, 1e-6))))
    torch.cuda.synchronize()
    t0 = clock()
    while clock() - t0 < seconds:
        for _ in range(batch):
            run()
        torch.cuda.synchronize()
    return t0, clock()


def _phase_row(
    ctx: BenchContext,
    phase: str,
    t0: float,
    t1: float,
    *,
    ramp_s: float,
    flops: float,
    nbytes: float,
    peaks: Peaks,
    decode_batch: int = 0,
    prefill_tokens: int = 0,
) -> Row:
    """Summarise one phase: NVML stats after ``ramp_s``, achieved rates over the whole window."""
    dur = t1 - t0
    assert ctx.sampler is not None
    st = ctx.sampler.stats(t0 + ramp_s, t1)
    tflops = flops / dur / 1e12 if dur > 0 else math.nan
    tbps = nbytes / dur / 1e12 if dur > 0 else math.nan
    return {
        "phase": phase,
        "power_w_mean": st.power_w_mean,
        "power_w_p50": st.power_w_p50,
        "power_w_p95": st.power_w_p95,
        "sm_clock_mhz_mean": st.sm_clock_mhz_mean,
        "mem_clock_mhz_mean": st.mem_clock_mhz_mean,
        "duration_s": dur,
        "tflops": tflops,
        "tflops_frac": tflops / peaks.bf16_tflops,
        "bw_tbps": tbps,
        "bw_frac": tbps / peaks.hbm_tbps,
        "decode_batch": decode_batch,
        "prefill_tokens": prefill_tokens,
    }


def _sustain(
    ctx: BenchContext, run: Callable[[], Any], seconds: float, policy: TimingPolicy
) -> tuple[float, float, int, float]:
    """Time ``run`` once (median), then sustain it; returns ``(t0, t1, iterations, median_s)``."""
    torch = ctx.torch
    t = time_op(torch, indexed(run), policy, clock=ctx.clock, graph=False)
    batch = max(1, min(2000, round(0.1 / max(t.time_s, 1e-6))))
    torch.cuda.synchronize()
    t0 = ctx.clock()
    iters = 0
    while ctx.clock() - t0 < seconds:
        for _ in range(batch):
            run()
        iters += batch
        torch.cuda.synchronize()
    return t0, ctx.clock(), iters, t.time_s


def power_phases(
    ctx: BenchContext,
    stack: Stack,
    *,
    peaks: Peaks,
    quick: bool,
    decode_batches: Iterable[int] = (1, 16, 64, 256),
    decode_len: int = 2048,
    prefill: StepCase = PREFILL_PHASE,
) -> list[Row]:
    """Idle, GEMM, prefill, decode (several batch sizes) and memcpy phases, each sustained for seconds."""
    if ctx.sampler is None:
        ctx.notes["power"] = "skipped: NVML unavailable"
        return []
    torch = ctx.torch
    shape = stack.shape
    layers = len(stack.weights.layers)
    sec = 2.0 if quick else 8.0
    ramp = 0.5 if quick else 1.0
    rows: list[Row] = []

    torch.cuda.synchronize()
    t0 = ctx.clock()
    time.sleep(2.0 if quick else 5.0)
    rows.append(_phase_row(ctx, "idle", t0, ctx.clock(), ramp_s=ramp, flops=0.0, nbytes=0.0, peaks=peaks))
    ctx.log(f"  power idle: {rows[-1]['power_w_mean']:.0f} W")

    size = 8192 if stack.device == "cuda" else 256
    a = [torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    bm = [torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    count = [0]

    def gemm() -> Any:
        count[0] += 1
        return torch.mm(a[count[0] % 3], bm[(count[0] + 1) % 3])

    t0, t1, iters, _ = _sustain(ctx, gemm, sec, ctx.policy)
    rows.append(
        _phase_row(
            ctx,
            "gemm",
            t0,
            t1,
            ramp_s=ramp,
            flops=iters * 2.0 * size**3,
            nbytes=iters * 3.0 * size * size * 2,
            peaks=peaks,
        )
    )
    ctx.log(f"  power gemm: {rows[-1]['power_w_mean']:.0f} W at {rows[-1]['tflops']:.0f} TFLOP/s")
    a.clear()
    bm.clear()

    run, _mode = stack.runner(prefill, graph=False)
    t0, t1, iters, _ = _sustain(ctx, run, sec, STEP_POLICY)
    rows.append(
        _phase_row(
            ctx,
            "prefill",
            t0,
            t1,
            ramp_s=ramp,
            flops=iters * step_flops(shape, prefill, layers),
            nbytes=iters * step_bytes(shape, prefill, layers),
            peaks=peaks,
            prefill_tokens=prefill.prefill_tokens,
        )
    )
    ctx.log(f"  power prefill: {rows[-1]['power_w_mean']:.0f} W at {rows[-1]['tflops']:.0f} TFLOP/s")
    del run
    torch.cuda.empty_cache()

    for b in (16,) if quick else decode_batches:
        case = StepCase("decode", decode_seqs=b, decode_len=decode_len)
        run, _mode = stack.runner(case, graph=True)
        t0, t1, iters, _ = _sustain(ctx, run, sec * 0.75, STEP_POLICY)
        rows.append(
            _phase_row(
                ctx,
                "decode",
                t0,
                t1,
                ramp_s=ramp,
                flops=iters * step_flops(shape, case, layers),
                nbytes=iters * step_bytes(shape, case, layers),
                peaks=peaks,
                decode_batch=b,
            )
        )
        ctx.log(f"  power decode b={b}: {rows[-1]['power_w_mean']:.0f} W at {rows[-1]['bw_tbps']:.2f} TB/s")
        del run
        torch.cuda.empty_cache()

    nbytes = 1 << 30 if stack.device == "cuda" else 1 << 20
    src = [torch.randint(0, 255, (nbytes,), device="cuda", dtype=torch.uint8) for _ in range(2)]
    dst = [torch.empty_like(s) for s in src]

    def copy() -> Any:
        count[0] += 1
        return dst[count[0] % 2].copy_(src[count[0] % 2])

    t0, t1, iters, _ = _sustain(ctx, copy, sec * 0.75, ctx.policy)
    rows.append(
        _phase_row(ctx, "memcpy", t0, t1, ramp_s=ramp, flops=0.0, nbytes=iters * 2.0 * nbytes, peaks=peaks)
    )
    ctx.log(f"  power memcpy: {rows[-1]['power_w_mean']:.0f} W at {rows[-1]['bw_tbps']:.2f} TB/s")
    src.clear()
    dst.clear()
    torch.cuda.empty_cache()
    return rows

"""The torch code paths of the profiler, run on the CPU through the stand-in (skipped without torch).

Timings here mean nothing; what is checked is that every benchmark produces rows in the exact shipped
schema, that the aggregates of the whole-step cases are right, and that the packed-GQA decode layout
computes the same attention as the textbook expanded-KV form.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from planner.profile import grid, micro, power, tables
from planner.profile.llama import Stack, build_weights
from planner.profile.nvml import Sampler
from planner.profile.timing import QUICK_POLICY

TINY = grid.ModelShape("tiny", 64, 8, 2, 16, 128, 1000, num_layers=2)


@pytest.fixture
def ctx(cpu_torch: Any) -> Iterator[micro.BenchContext]:
    count = itertools.count()

    def reader() -> tuple[float, float, float, float, float, float, float]:
        i = next(count)
        return 100.0 + i % 5, 100.0, 2.0 * i, 1980.0, 2619.0, 50.0, 20.0

    sampler = Sampler(reader, period_s=0.005).start()
    yield micro.BenchContext(
        torch=cpu_torch,
        l2_bytes=1 << 16,
        policy=QUICK_POLICY,
        sampler=sampler,
        deadline=time.perf_counter() + 60,
        log=lambda _s: None,
    )
    sampler.stop()


def test_micro_benches_write_the_exact_schema(ctx: micro.BenchContext) -> None:
    fp8 = micro.fp8_supported(ctx.torch) is None
    gemm = micro.bench_gemm(ctx, [(1, 64, 64), (32, 128, 64)], fp8=fp8)
    assert {(r["m"], r["n"], r["k"]) for r in gemm} == {(1, 64, 64), (32, 128, 64)}
    tables.build_table("gemm", gemm)
    attn = micro.bench_attention(
        ctx,
        grid.head_configs([TINY], quick=True),
        prefill_lengths=(32,),
        chunked=((16, 48),),
        decode=lambda _h: [(2, 64)],
    )
    assert {r["phase"] for r in attn} == {"prefill", "decode"}
    tables.build_table("attention", attn)
    skipped = micro.bench_attention(
        ctx,
        grid.head_configs([TINY], quick=True),
        prefill_lengths=(32,),
        chunked=((16, 48),),
        decode=lambda _h: [(2, 64)],
        skip={micro.attention_key(r) for r in attn},
    )
    assert skipped == []  # resuming measures nothing twice
    mla = grid.ModelShape("m", 64, 4, 4, 16, 0, 100, mla=grid.MLAShape(32, 32, 16, 8, 16))
    rows = micro.bench_mla_decode(ctx, mla, [(2, 64)])
    assert rows[0]["head_dim"] == 40 and rows[0]["num_kv_heads"] == 1
    tables.build_table("memcpy", micro.bench_memcpy(ctx, (1 << 12,)))
    ew = micro.bench_elementwise(ctx, grid.elementwise_cases([TINY], quick=True), head_dim=16)
    assert {r["op"] for r in ew} == set(grid.ELEMENTWISE_OPS)
    tables.build_table("elementwise", ew)


def test_packed_gqa_decode_equals_expanded_attention(cpu_torch: Any) -> None:
    torch = cpu_torch
    b, h, hk, d, length = 3, 8, 2, 16, 40
    g = h // hk
    q = torch.randn(b, h, d, dtype=torch.float64)
    k = torch.randn(b, hk, length, d, dtype=torch.float64)
    v = torch.randn(b, hk, length, d, dtype=torch.float64)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    packed = sdpa(q.view(b, hk, g, d), k, v).reshape(b, h, d)
    expanded = sdpa(q.view(b, h, 1, d), k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)).reshape(b, h, d)
    assert torch.allclose(packed, expanded, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_steps_and_power_phases(ctx: micro.BenchContext) -> None:
    weights = build_weights(ctx.torch, TINY, num_layers=2, seed=0, device="cpu")
    stack = Stack(ctx.torch, TINY, weights, l2_bytes=1 << 16, max_pos=4096, device="cpu")
    cases = [
        grid.StepCase("prefill", 2, 16),
        grid.StepCase("prefill", 1, 16, 32),
        grid.StepCase("decode", decode_seqs=3, decode_len=40),
        grid.StepCase("mixed", 1, 8, 0, 2, 24),
    ]
    for case in cases:
        out = stack.step_fn(case)()
        assert tuple(out.shape) == (case.prefill_seqs + case.decode_seqs, TINY.vocab_size)
        assert bool(ctx.torch.isfinite(out.float()).all())
    rows = power.bench_steps(ctx, stack, cases, power_window_s=0.35)
    tables.build_table("steps", rows)
    assert [r["prefill_pairs"] for r in rows] == [c.prefill_pairs for c in cases]
    assert all(math.isfinite(r["power_w"]) for r in rows)
    phases = power.power_phases(
        ctx,
        stack,
        peaks=power.Peaks(989.4, 3.35),
        quick=True,
        prefill=grid.StepCase("prefill", 1, 16),
        decode_len=32,
    )
    tables.build_table("power", phases)
    assert [r["phase"] for r in phases] == ["idle", "gemm", "prefill", "decode", "memcpy"]

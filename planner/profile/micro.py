"""Microbenchmarks on the GPU: GEMMs (bf16, fp8), attention, device copies and elementwise ops.

Inputs are random (never zeros, which run faster and hide wrong indexing), and each timed call picks
one of several input copies in turn, enough to span three L2s, so small operators are measured
reading HBM as they do inside a real forward step.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from planner.profile.grid import HeadConfig, ModelShape
from planner.profile.nvml import Sampler
from planner.profile.stats import copy_gbps, gemm_tflops, rotation_count
from planner.profile.timing import Timing, TimingPolicy, time_op

Row = dict[str, Any]


@dataclass
class BenchContext:
    """What every benchmark needs: torch, the L2 size, the timing policy, the sampler and a deadline.

    Attributes:
        torch: the imported torch module.
        l2_bytes: the GPU's L2 cache size (for input rotation).
        policy: warm-up and repeats.
        sampler: the running NVML sampler, or None without NVML.
        deadline: a ``clock()`` value after which a section stops and keeps what it has measured.
        log: progress printer.
        clock: wall clock shared with the sampler.
        notes: facts collected while measuring (kernels that ran, skipped cases), for meta.json.
    """

    torch: Any
    l2_bytes: int
    policy: TimingPolicy
    sampler: Sampler | None
    deadline: float
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.perf_counter
    notes: dict[str, Any] = field(default_factory=dict)

    def time(self, op: Callable[[int], object]) -> Timing:
        t = time_op(self.torch, op, self.policy, clock=self.clock)
        self.note_count("timing_mode", "cuda-graph replay" if t.graph else "eager")
        return t

    def sm_clock(self, timing: Timing) -> float:
        if self.sampler is None:
            return math.nan
        return self.sampler.stats(timing.t0, timing.t1).sm_clock_mhz_mean

    def out_of_time(self) -> bool:
        return self.clock() > self.deadline

    def note_count(self, key: str, value: str) -> None:
        counts = self.notes.setdefault(key, {})
        counts[value] = counts.get(value, 0) + 1


def _randn(ctx: BenchContext, *shape: int, dtype: Any = None) -> Any:
    torch = ctx.torch
    return torch.randn(*shape, device="cuda", dtype=dtype or torch.bfloat16)


def fp8_supported(torch: Any) -> str | None:
    """None when ``torch._scaled_mm`` runs an e4m3 GEMM here, else the reason it does not."""
    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return "torch has no float8_e4m3fn / _scaled_mm"
    try:
        a = torch.randn(16, 32, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(16, 32, device="cuda").to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda", dtype=torch.float32)
        torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        torch.cuda.synchronize()
    except Exception as exc:
        return f"_scaled_mm failed: {type(exc).__name__}: {exc}"[:300]
    return None


def bench_gemm(ctx: BenchContext, shapes: Iterable[tuple[int, int, int]], *, fp8: bool) -> list[Row]:
    """Time ``F.linear(X[m,k], W[n,k])`` (bf16) and ``_scaled_mm`` (fp8 e4m3, per-tensor scales).

    fp8 GEMMs need ``m`` to be a multiple of 16: smaller or ragged ``m`` runs padded up (as engines
    pad) and is recorded under the requested ``m``.
    """
    torch = ctx.torch
    fn = torch.nn.functional
    by_nk: dict[tuple[int, int], list[int]] = {}
    for m, n, k in shapes:
        by_nk.setdefault((n, k), []).append(m)
    rows: list[Row] = []
    one = torch.ones((), device="cuda", dtype=torch.float32)
    for idx, ((n, k), ms) in enumerate(sorted(by_nk.items())):
        if ctx.out_of_time():
            ctx.notes["gemm_stopped_early"] = f"deadline reached after {idx} of {len(by_nk)} (n, k) pairs"
            break
        nw = rotation_count(n * k * 2, ctx.l2_bytes, cap=8)
        weights = _randn(ctx, nw, n, k)
        weights8 = weights.to(torch.float8_e4m3fn) if fp8 else None
        for m in sorted(ms):
            nx = rotation_count(m * k * 2, ctx.l2_bytes, cap=8)
            x = _randn(ctx, nx, m, k)
            t = ctx.time(partial(_linear_op, fn.linear, x, nx, weights, nw))
            rows.append(_gemm_row(m, n, k, "bf16", t, ctx.sm_clock(t)))
            del x
            if weights8 is not None and n % 16 == 0 and k % 16 == 0:
                mp = max(16, -(-m // 16) * 16)
                x8 = _randn(ctx, nx, mp, k).to(torch.float8_e4m3fn)
                t8 = ctx.time(partial(_fp8_op, torch, x8, nx, weights8, nw, one))
                rows.append(_gemm_row(m, n, k, "fp8", t8, ctx.sm_clock(t8)))
                del x8
        weights = weights8 = None
        if idx % 10 == 0:
            ctx.log(f"  gemm {idx + 1}/{len(by_nk)} (n={n}, k={k}) rows={len(rows)}")
    torch.cuda.empty_cache()
    return rows


def _linear_op(linear: Any, x: Any, nx: int, w: Any, nw: int, i: int) -> object:
    return linear(x[i % nx], w[i % nw])


def _fp8_op(torch: Any, x8: Any, nx: int, w8: Any, nw: int, one: Any, i: int) -> object:
    return torch._scaled_mm(x8[i % nx], w8[i % nw].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def _gemm_row(m: int, n: int, k: int, dtype: str, t: Timing, sm_clock: float) -> Row:
    return {
        "m": m,
        "n": n,
        "k": k,
        "dtype": dtype,
        "time_s": t.time_s,
        "tflops": gemm_tflops(m, n, k, t.time_s),
        "sm_clock_mhz": sm_clock,
    }


def _sdpa_backends(torch: Any) -> list[tuple[str, Any]]:
    from torch.nn.attention import SDPBackend

    return [
        ("flash", [SDPBackend.FLASH_ATTENTION]),
        ("efficient", [SDPBackend.EFFICIENT_ATTENTION]),
        ("cudnn", [SDPBackend.CUDNN_ATTENTION]),
        ("math", [SDPBackend.MATH]),
    ]


def _first_working(
    ctx: BenchContext, candidates: list[tuple[str, Callable[[int], object]]]
) -> tuple[str, Any]:
    """The first candidate op that runs (tried once, synchronised), with its name."""
    last: Exception | None = None
    for name, op in candidates:
        try:
            op(0)
            ctx.torch.cuda.synchronize()
            return name, op
        except Exception as exc:  # a backend that does not support this shape: try the next one
            last = exc
    raise RuntimeError(f"no attention kernel ran: {last}")


def bench_attention(
    ctx: BenchContext,
    heads: Iterable[HeadConfig],
    *,
    prefill_lengths: Iterable[int],
    chunked: Iterable[tuple[int, int]],
    decode: Callable[[HeadConfig], list[tuple[int, int]]],
    prefill_batches: Iterable[int] = (1,),
    skip: frozenset[tuple[Any, ...]] | set[tuple[Any, ...]] = frozenset(),
) -> list[Row]:
    """Prefill (causal, and chunked with a bottom-right causal mask) and decode attention via SDPA.

    Decode packs each KV head's query group into the query-length axis (``q`` is ``B x Hkv x G x D``),
    which is exact for GQA, needs no KV expansion, and lets FlashAttention run it.
    """
    torch = ctx.torch
    sdpa = torch.nn.functional.scaled_dot_product_attention
    from torch.nn.attention import sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    backends = _sdpa_backends(torch)
    rows: list[Row] = []

    def candidates(
        q: Any, k: Any, v: Any, n: int, *, causal: bool, mask: Any, gqa: bool
    ) -> list[tuple[str, Callable[[int], object]]]:
        out: list[tuple[str, Callable[[int], object]]] = []
        for name, be in backends:
            for use_gqa in [True, False] if gqa else [False]:

                def op(i: int, be: Any = be, use_gqa: bool = use_gqa) -> object:
                    kk, vv = k[i % n], v[i % n]
                    if gqa and not use_gqa:
                        rep = q.shape[2] // kk.shape[1]
                        kk = kk.repeat_interleave(rep, dim=1)
                        vv = vv.repeat_interleave(rep, dim=1)
                    with sdpa_kernel(be):
                        if mask is not None:
                            return sdpa(q[i % n], kk, vv, attn_mask=mask, enable_gqa=use_gqa)
                        return sdpa(q[i % n], kk, vv, is_causal=causal, enable_gqa=use_gqa)

                out.append((f"{name}{'+gqa' if use_gqa else ('+expandkv' if gqa else '')}", op))
        return out

    for head in heads:
        h, hk, d = head.num_heads, head.num_kv_heads, head.head_dim
        cases: list[tuple[int, int, int]] = [(b, n, n) for b in prefill_batches for n in prefill_lengths]
        cases += [(1, q, kv) for q, kv in chunked]
        for b, ql, kvl in cases:
            if ("prefill", b, ql, kvl, h, hk, d) in skip:
                continue
            if ctx.out_of_time():
                ctx.notes["attention_stopped_early"] = "deadline reached in prefill"
                return rows
            nrot = rotation_count(b * (h * ql + 2 * hk * kvl) * d * 2, ctx.l2_bytes, cap=8)
            q = _randn(ctx, nrot, b, h, ql, d)
            k = _randn(ctx, nrot, b, hk, kvl, d)
            v = _randn(ctx, nrot, b, hk, kvl, d)
            mask = causal_lower_right(ql, kvl) if ql != kvl else None
            try:
                name, op = _first_working(ctx, candidates(q, k, v, nrot, causal=True, mask=mask, gqa=h != hk))
            except RuntimeError as exc:
                ctx.note_count("attention_failed", f"prefill b{b} q{ql} kv{kvl} h{h}/{hk}: {exc}"[:200])
                continue
            ctx.note_count("attention_kernels", f"prefill{'-chunked' if mask is not None else ''}:{name}")
            t = ctx.time(op)
            rows.append(_attn_row("prefill", b, ql, kvl, head, t))
            del q, k, v
        ctx.log(f"  attention prefill h={h}/{hk} done, rows={len(rows)}")
        group = h // hk
        for b, kvl in decode(head):
            if ("decode", b, 1, kvl, h, hk, d) in skip:
                continue
            if ctx.out_of_time():
                ctx.notes["attention_stopped_early"] = "deadline reached in decode"
                return rows
            nrot = rotation_count(b * 2 * hk * kvl * d * 2, ctx.l2_bytes, cap=8)
            q = _randn(ctx, nrot, b, hk, group, d)
            k = _randn(ctx, nrot, b, hk, kvl, d)
            v = _randn(ctx, nrot, b, hk, kvl, d)
            try:
                name, op = _first_working(ctx, candidates(q, k, v, nrot, causal=False, mask=None, gqa=False))
            except RuntimeError as exc:
                ctx.note_count("attention_failed", f"decode b{b} kv{kvl} h{h}/{hk}: {exc}"[:200])
                continue
            ctx.note_count("attention_kernels", f"decode(gqa-packed):{name}")
            t = ctx.time(op)
            rows.append(_attn_row("decode", b, 1, kvl, head, t))
            del q, k, v
        ctx.log(f"  attention decode h={h}/{hk} done, rows={len(rows)}")
        torch.cuda.empty_cache()
    return rows


def attention_key(row: Row) -> tuple[Any, ...]:
    """The identity of an attention measurement (for resuming).

    >>> attention_key({"phase": "decode", "batch": 2, "q_len": 1, "kv_len": 64, "num_heads": 8,
    ...                "num_kv_heads": 2, "head_dim": 16, "dtype": "bf16", "time_s": 1e-5})
    ('decode', 2, 1, 64, 8, 2, 16)
    """
    return tuple(
        row[k] for k in ("phase", "batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim")
    )


def _attn_row(phase: str, b: int, ql: int, kvl: int, head: HeadConfig, t: Timing) -> Row:
    return {
        "phase": phase,
        "batch": b,
        "q_len": ql,
        "kv_len": kvl,
        "num_heads": head.num_heads,
        "num_kv_heads": head.num_kv_heads,
        "head_dim": head.head_dim,
        "dtype": "bf16",
        "time_s": t.time_s,
    }


def bench_mla_decode(ctx: BenchContext, model: ModelShape, cases: Iterable[tuple[int, int]]) -> list[Row]:
    """Absorbed-MLA decode as ``bmm -> softmax -> bmm`` over the shared latent cache.

    All ``num_heads`` query heads attend to one latent "KV head" of ``kv_lora_rank + qk_rope_head_dim``
    values (keys) whose first ``kv_lora_rank`` values are the values. Rows record ``num_kv_heads=1`` and
    ``head_dim = kv_lora_rank + qk_rope_head_dim``; the value width is in meta.json's notes.
    """
    if model.mla is None:
        return []
    torch = ctx.torch
    heads = model.num_heads
    dk = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
    dv = model.mla.kv_lora_rank
    scale = 1.0 / math.sqrt(model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim)
    rows: list[Row] = []
    head = HeadConfig(heads, 1, dk)
    for b, kvl in cases:
        if ctx.out_of_time():
            ctx.notes["mla_stopped_early"] = True
            break
        nrot = rotation_count(b * kvl * dk * 2, ctx.l2_bytes, cap=8)
        q = _randn(ctx, nrot, b, heads, dk)
        lat = _randn(ctx, nrot, b, kvl, dk)

        def op(i: int, q: Any = q, lat: Any = lat, nrot: int = nrot) -> object:
            c = lat[i % nrot]
            s = torch.bmm(q[i % nrot], c.transpose(1, 2)) * scale
            p = torch.softmax(s, dim=-1, dtype=torch.float32).to(torch.bfloat16)
            return torch.bmm(p, c[..., :dv])

        t = ctx.time(op)
        rows.append(_attn_row("decode", b, 1, kvl, head, t))
        del q, lat
    ctx.notes["mla_decode"] = {
        "model": model.name,
        "kernel": "torch.bmm -> softmax(fp32) -> torch.bmm (absorbed MLA, latent shared by all heads)",
        "num_heads": heads,
        "qk_dim": dk,
        "v_dim": dv,
    }
    torch.cuda.empty_cache()
    return rows


def bench_memcpy(ctx: BenchContext, sizes: Iterable[int]) -> list[Row]:
    """Device-to-device ``dst.copy_(src)``; bandwidth counts bytes read plus bytes written."""
    torch = ctx.torch
    rows: list[Row] = []
    for nbytes in sizes:
        nrot = rotation_count(2 * nbytes, ctx.l2_bytes, cap=16)
        src = torch.randint(0, 255, (nrot, nbytes), device="cuda", dtype=torch.uint8)
        dst = torch.empty_like(src)
        t = ctx.time(partial(_copy_op, src, dst, nrot))
        rows.append({"bytes": nbytes, "time_s": t.time_s, "gbps": copy_gbps(nbytes, t.time_s)})
        del src, dst
    torch.cuda.empty_cache()
    return rows


def _copy_op(src: Any, dst: Any, nrot: int, i: int) -> object:
    return dst[i % nrot].copy_(src[i % nrot])


def rope_inplace_free(torch: Any, x: Any, cos: Any, sin: Any) -> Any:
    """Rotate-half RoPE over the last axis (unfused torch ops, as a plain implementation runs it)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def bench_elementwise(
    ctx: BenchContext, cases: Iterable[tuple[str, int, int]], *, head_dim: int = 128
) -> list[Row]:
    """``rmsnorm`` (``F.rms_norm``), ``silu_mul`` (``silu(a) * b``), ``rope`` (rotate-half) and ``add``."""
    torch = ctx.torch
    fn = torch.nn.functional
    rows: list[Row] = []
    for op_name, tokens, hidden in cases:
        width = 2 * hidden if op_name in ("silu_mul", "add") else hidden
        nrot = rotation_count(tokens * width * 2 * 2, ctx.l2_bytes, cap=16)
        x = _randn(ctx, nrot, tokens, width)
        op: Callable[[int], object]
        if op_name == "rmsnorm":
            op = partial(_rmsnorm_op, fn, x, _randn(ctx, hidden), nrot, hidden)
        elif op_name == "silu_mul":
            op = partial(_silu_mul_op, fn, x, nrot, hidden)
        elif op_name == "rope":
            cos = _randn(ctx, tokens, 1, head_dim // 2)
            sin = _randn(ctx, tokens, 1, head_dim // 2)
            op = partial(_rope_op, torch, x, nrot, (cos, sin), hidden // head_dim)
        else:
            op = partial(_add_op, x, nrot, hidden)
        t = ctx.time(op)
        rows.append({"op": op_name, "tokens": tokens, "hidden": hidden, "time_s": t.time_s})
    torch.cuda.empty_cache()
    return rows


def _rmsnorm_op(fn: Any, x: Any, w: Any, nrot: int, hidden: int, i: int) -> object:
    return fn.rms_norm(x[i % nrot], (hidden,), w, 1e-5)


def _silu_mul_op(fn: Any, x: Any, nrot: int, hidden: int, i: int) -> object:
    xi = x[i % nrot]
    return fn.silu(xi[:, :hidden]) * xi[:, hidden:]


def _rope_op(torch: Any, x: Any, nrot: int, cos_sin: tuple[Any, Any], heads: int, i: int) -> object:
    xi = x[i % nrot]
    return rope_inplace_free(torch, xi.view(xi.shape[0], heads, -1), *cos_sin)


def _add_op(x: Any, nrot: int, hidden: int, i: int) -> object:
    xi = x[i % nrot]
    return xi[:, :hidden] + xi[:, hidden:]


def kernel_summary(notes: dict[str, Any]) -> dict[str, Any]:
    """Counters in ``notes`` as plain dicts sorted by count (for meta.json)."""
    out: dict[str, Any] = {}
    for key, value in notes.items():
        if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            out[key] = dict(Counter(value).most_common())
        else:
            out[key] = value
    return out

"""A random-weight Llama-shaped layer stack for whole forward-step timings (torch, written here).

Each layer is what an inference engine runs: RMSNorm, fused QKV projection, rotate-half RoPE, SDPA
with grouped-query attention, O projection, residual add, RMSNorm, fused gate/up projection,
``silu(gate) * up``, down projection, residual add. Embedding lookup first; final RMSNorm and the LM
head on the sampled tokens only (the last token of each prefill sequence and every decode token).

A step mixes prefill sequences (equal length, optionally attending to an earlier cached context) and
decode sequences (one token each, equal KV length). Decode attention reads per-layer KV caches; enough
distinct caches rotate across layers that small caches do not sit in L2 between layers. Decode and
mixed steps are replayed from a CUDA graph, as serving engines do; prefill steps run eagerly (they are
GPU-bound, launch gaps do not matter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.profile.grid import ModelShape, StepCase
from planner.profile.stats import rotation_count


@dataclass(frozen=True)
class StackWeights:
    """Random weights of the stack (torch tensors, typed Any so this module imports without torch)."""

    embed: Any
    lm_head: Any
    final_norm: Any
    layers: tuple[dict[str, Any], ...]


def build_weights(
    torch: Any, shape: ModelShape, *, num_layers: int, seed: int, device: str = "cuda", tp: int = 1
) -> StackWeights:
    """Random bf16 weights scaled ``1/sqrt(fan_in)`` so activations stay finite through the stack.

    With ``tp > 1`` these are one rank's Megatron-style shards: QKV and gate/up split by output
    (heads, FFN columns), O and down split by input, the LM head split by vocabulary rows.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    h, d = shape.hidden_size, shape.head_dim
    hq, hk, ffn = shape.num_heads // tp, max(1, shape.num_kv_heads // tp), shape.ffn_size // tp
    qkv = (hq + 2 * hk) * d

    def rand(*dims: int) -> Any:
        t = torch.randn(*dims, device=device, dtype=torch.bfloat16, generator=gen)
        return t.mul_(1.0 / math.sqrt(dims[-1]))

    def norm() -> Any:
        return 1.0 + 0.1 * torch.randn(h, device=device, dtype=torch.bfloat16, generator=gen)

    layers = tuple(
        {
            "n1": norm(),
            "qkv": rand(qkv, h),
            "o": rand(h, hq * d),
            "n2": norm(),
            "gu": rand(2 * ffn, h),
            "down": rand(h, ffn),
        }
        for _ in range(num_layers)
    )
    return StackWeights(rand(shape.vocab_size, h), rand(shape.vocab_size // tp, h), norm(), layers)


def linear_params(shape: ModelShape) -> int:
    """Weights of the per-layer linear layers of a dense GQA model, one layer.

    >>> from planner.profile.grid import LLAMA_8B
    >>> linear_params(LLAMA_8B)
    218103808
    """
    h, d = shape.hidden_size, shape.head_dim
    return (
        h * (shape.num_heads + 2 * shape.num_kv_heads) * d + shape.num_heads * d * h + 3 * h * shape.ffn_size
    )


@dataclass
class Stack:
    """The layer stack: call :meth:`runner` to get a zero-argument step function for a :class:`StepCase`."""

    torch: Any
    shape: ModelShape
    weights: StackWeights
    l2_bytes: int
    max_pos: int = 65536
    device: str = "cuda"
    tp: int = 1
    reduce: Callable[[Any], Any] | None = None
    """Tensor-parallel sum of partial outputs (after O and down projections), in place; None on one GPU."""
    gather: Callable[[Any], Any] | None = None
    """Tensor-parallel gather of vocabulary-split logits; None on one GPU."""

    def __post_init__(self) -> None:
        torch = self.torch
        d = self.shape.head_dim
        inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=self.device, dtype=torch.float32) / d))
        ang = torch.outer(torch.arange(self.max_pos, device=self.device, dtype=torch.float32), inv)
        self.cos = ang.cos().to(torch.bfloat16)
        self.sin = ang.sin().to(torch.bfloat16)

    def _rope(self, x: Any, pos: Any) -> Any:
        """Rotate-half RoPE of ``x`` (tokens, heads, dim) at positions ``pos`` (tokens,)."""
        cos = self.cos[pos].unsqueeze(1)
        sin = self.sin[pos].unsqueeze(1)
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return self.torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def _caches(self, seqs: int, length: int) -> list[tuple[Any, Any]]:
        """Distinct random KV caches (k, v), each ``seqs x kv_heads x length x head_dim``."""
        torch = self.torch
        hk, d = max(1, self.shape.num_kv_heads // self.tp), self.shape.head_dim
        per_layer = 2 * seqs * hk * length * d * 2
        n = min(len(self.weights.layers), rotation_count(per_layer, self.l2_bytes, cap=64))
        return [
            (
                torch.randn(seqs, hk, length, d, device=self.device, dtype=torch.bfloat16),
                torch.randn(seqs, hk, length, d, device=self.device, dtype=torch.bfloat16),
            )
            for _ in range(n)
        ]

    def step_fn(self, case: StepCase) -> Callable[[], Any]:
        """An eager step function for ``case`` with its inputs and caches allocated."""
        torch = self.torch
        fn = torch.nn.functional
        shape = self.shape
        tp = self.tp
        h, d = shape.hidden_size, shape.head_dim
        hq, hk = shape.num_heads // tp, max(1, shape.num_kv_heads // tp)
        group = hq // hk
        ffn = shape.ffn_size // tp
        reduce = self.reduce or (lambda t: t)
        gather = self.gather or (lambda t: t)
        s, n, ctx = case.prefill_seqs, case.prefill_len, case.prefill_ctx
        b, kvl = case.decode_seqs, case.decode_len
        ptok = s * n
        total = ptok + b
        ids = torch.randint(0, shape.vocab_size, (total,), device=self.device)
        pos_parts = []
        if ptok:
            pos_parts.append((torch.arange(n, device=self.device) + ctx).repeat(s))
        if b:
            pos_parts.append(torch.full((b,), kvl - 1, device=self.device, dtype=torch.long))
        pos = torch.cat(pos_parts)
        last = []
        if ptok:
            last.append(torch.arange(1, s + 1, device=self.device) * n - 1)
        if b:
            last.append(torch.arange(ptok, total, device=self.device))
        sample_idx = torch.cat(last)
        ctx_caches = self._caches(s, ctx + n) if ptok and ctx else []
        dec_caches = self._caches(b, kvl) if b else []
        mask = None
        if ptok and ctx:
            from torch.nn.attention.bias import causal_lower_right

            mask = causal_lower_right(n, ctx + n)
        sdpa = fn.scaled_dot_product_attention
        w = self.weights

        def attention(q: Any, k: Any, v: Any, layer: int) -> Any:
            outs = []
            if ptok:
                qp = q[:ptok].view(s, n, hq, d).transpose(1, 2)
                kp = k[:ptok].view(s, n, hk, d).transpose(1, 2)
                vp = v[:ptok].view(s, n, hk, d).transpose(1, 2)
                if ctx:
                    kc, vc = ctx_caches[layer % len(ctx_caches)]
                    kc[:, :, ctx:] = kp
                    vc[:, :, ctx:] = vp
                    o = sdpa(qp, kc, vc, attn_mask=mask, enable_gqa=True)
                else:
                    o = sdpa(qp, kp, vp, is_causal=True, enable_gqa=True)
                outs.append(o.transpose(1, 2).reshape(ptok, hq * d))
            if b:
                kc, vc = dec_caches[layer % len(dec_caches)]
                kc[:, :, kvl - 1] = k[ptok:]
                vc[:, :, kvl - 1] = v[ptok:]
                qd = q[ptok:].view(b, hk, group, d)
                o = sdpa(qd, kc, vc)
                outs.append(o.reshape(b, hq * d))
            return outs[0] if len(outs) == 1 else torch.cat(outs)

        def step() -> Any:
            x = w.embed[ids]
            for i, lw in enumerate(w.layers):
                y = fn.rms_norm(x, (h,), lw["n1"], 1e-5)
                qkv = fn.linear(y, lw["qkv"])
                q = qkv[:, : hq * d].view(total, hq, d)
                k = qkv[:, hq * d : (hq + hk) * d].view(total, hk, d)
                v = qkv[:, (hq + hk) * d :].view(total, hk, d)
                q = self._rope(q, pos)
                k = self._rope(k, pos)
                a = attention(q, k, v, i)
                x = x + reduce(fn.linear(a, lw["o"]))
                y = fn.rms_norm(x, (h,), lw["n2"], 1e-5)
                gu = fn.linear(y, lw["gu"])
                x = x + reduce(fn.linear(fn.silu(gu[:, :ffn]) * gu[:, ffn:], lw["down"]))
            xs = fn.rms_norm(x[sample_idx], (h,), w.final_norm, 1e-5)
            return gather(fn.linear(xs, w.lm_head))

        return step

    def runner(self, case: StepCase, *, graph: bool) -> tuple[Callable[[], Any], str]:
        """A zero-argument step function and how it runs (``graph`` or ``eager``)."""
        torch = self.torch
        step = self.step_fn(case)
        if not graph:
            return step, "eager"
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                step()
            torch.cuda.synchronize()
        except Exception:
            torch.cuda.synchronize()
            return step, "eager(graph capture failed)"

        def replay() -> Any:
            g.replay()
            return None

        replay.graph = g  # type: ignore[attr-defined]
        return replay, "graph"

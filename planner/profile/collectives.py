"""Multi-GPU measurements: NCCL collectives, tensor-parallel steps and an expert-parallel MoE layer.

One process per GPU (``torch.multiprocessing``), ``torch.distributed`` over NCCL, on every GPU of
one host. Three sections, each written as soon as it finishes (a run cut short keeps what it
measured), each with its own share of the time budget:

``collectives``
    all-reduce, all-gather and all-to-all over message sizes from 4 KiB to 1 GiB, on groups of
    2, 4 and 8 GPUs (as many as the host has). Sizes follow nccl-tests: the all-reduce buffer, the
    gathered output, and the bytes each rank sends in all-to-all. Timed with CUDA events around
    back-to-back calls on rank 0 (every rank runs the same calls, so they stay in step).
``tp_steps``
    whole forward steps of Llama-3.1-8B and -70B-shaped stacks (random weights, all layers) at TP 2
    and 4: the single-GPU stack of :mod:`planner.profile.llama` with Megatron shards and an NCCL
    all-reduce after the O and down projections; decode and mixed steps replayed from CUDA graphs
    (collectives captured too), prefill eager, as serving engines run them.
``ep_moe``
    a DeepSeek-V3-shaped MoE layer under expert parallelism: router, top-8 routing, token dispatch
    with ``all_to_all_single`` (split sizes exchanged first, as engines without DeepEP do), the local
    experts' SwiGLU GEMMs, and the combine all-to-all, each part timed.

NVLink multicast stays off (``NCCL_NVLS_ENABLE=0`` and friends): on shared hosts a program using it
can take the GPUs out of service, so the variables are forced in every worker, whatever the caller set.

The topology NCCL reports (its INIT/GRAPH debug lines: rings, channels, P2P transport) and
``nvidia-smi topo -m`` are kept in ``collectives_meta.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planner.profile.grid import LLAMA_8B, REFERENCE_MODELS, ModelShape, StepCase
from planner.profile.stats import median

SAFE_ENV: dict[str, str] = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
"""Multicast off, always (see the module docstring)."""

COLLECTIVE_SIZES: tuple[int, ...] = tuple(4096 * 4**i for i in range(10))
"""4 KiB, 16 KiB, ... 1 GiB."""

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "all_to_all")

TP_MODELS: tuple[tuple[ModelShape, int], ...] = (
    (LLAMA_8B, 32),
    (next(m for m in REFERENCE_MODELS if m.name == "Llama-3.1-70B"), 80),
)
"""(shape, layers): whole models, so the measured step is the step the planner predicts."""

TP_CASES: tuple[StepCase, ...] = (
    StepCase("prefill", 1, 512),
    StepCase("prefill", 1, 2048),
    StepCase("prefill", 4, 1024),
    StepCase("prefill", 1, 8192),
    StepCase("prefill", 1, 2048, 6144),
    StepCase("decode", decode_seqs=1, decode_len=1024),
    StepCase("decode", decode_seqs=8, decode_len=2048),
    StepCase("decode", decode_seqs=32, decode_len=2048),
    StepCase("decode", decode_seqs=64, decode_len=4096),
    StepCase("decode", decode_seqs=128, decode_len=2048),
    StepCase("decode", decode_seqs=256, decode_len=1024),
    StepCase("mixed", 1, 512, 0, 32, 1024),
    StepCase("mixed", 1, 2048, 0, 64, 2048),
)

MOE_TOKENS_PER_GPU: tuple[int, ...] = (64, 256, 1024, 4096)
"""Tokens each EP rank routes per layer: decode batches to prefill chunks."""


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' bus-bandwidth factor: the share of the message each link carries.

    >>> bus_factor("all_reduce", 4), bus_factor("all_gather", 4)
    (1.5, 0.75)
    """
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    return (n - 1) / n


def inner_calls(nbytes: int) -> int:
    """Back-to-back calls per timed sample: enough to cover ~5 ms, at most 100 (same on every rank).

    >>> inner_calls(4096), inner_calls(1 << 30)
    (100, 1)
    """
    est = 20e-6 + nbytes / 100e9
    return max(1, min(100, int(5e-3 / est)))


@dataclass(frozen=True)
class MultiOptions:
    """What the multi-GPU run measures.

    Attributes:
        out: data folder (tables go to ``profiles/<GPU>/`` and ``validation/<GPU>/``).
        budget_s: wall-clock budget for all sections.
        sections: any of ``collectives``, ``tp_steps``, ``ep_moe``.
        quick: small sizes and cases (smoke runs, CPU tests with gloo).
        backend: ``nccl`` on GPUs; ``gloo`` runs the collectives section on CPUs for tests.
        world: processes (0: every visible GPU).
        seed: random weights and routing.
    """

    out: Path
    budget_s: float = 420.0
    sections: tuple[str, ...] = ("collectives", "ep_moe", "tp_steps")
    quick: bool = False
    backend: str = "nccl"
    world: int = 0
    seed: int = 20260101


SHARES = {"collectives": 0.25, "ep_moe": 0.2, "tp_steps": 0.55}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_multi(options: MultiOptions, *, log: Callable[[str], None] = print) -> list[Path]:
    """Spawn one worker per GPU, run the sections, return the files rank 0 wrote."""
    import torch
    import torch.multiprocessing as mp

    for k, v in SAFE_ENV.items():
        os.environ[k] = v
    world = options.world or torch.cuda.device_count()
    if world < 2:
        raise RuntimeError(f"the multi-GPU profile needs at least 2 processes/GPUs, found {world}")
    scratch = options.out / "_multi_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["NCCL_DEBUG"] = "INFO"
    os.environ["NCCL_DEBUG_SUBSYS"] = "INIT,GRAPH,ENV"
    os.environ["NCCL_DEBUG_FILE"] = str(scratch / "nccl.%p.log")
    port = _free_port()
    log(f"fleetwise profile --multi: {world} processes, backend {options.backend}, sections "
        f"{', '.join(options.sections)}")
    mp.spawn(_worker, args=(world, port, options, str(scratch)), nprocs=world, join=True)
    written = json.loads((scratch / "written.json").read_text())
    return [Path(p) for p in written]


@dataclass
class _Ctx:
    torch: Any
    dist: Any
    rank: int
    world: int
    options: MultiOptions
    device: Any
    groups: dict[int, Any]
    deadline: float
    log: Callable[[str], None]


def _worker(rank: int, world: int, port: int, options: MultiOptions, scratch: str) -> None:
    import torch
    import torch.distributed as dist

    for k, v in SAFE_ENV.items():
        os.environ[k] = v
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    gpu = options.backend == "nccl"
    device = torch.device("cuda", rank) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"timeout": _dt.timedelta(seconds=300)}
    if gpu:
        kwargs["device_id"] = device
    dist.init_process_group(options.backend, rank=rank, world_size=world, **kwargs)
    sizes = [g for g in (2, 4, 8, 16) if g <= world]
    groups = {g: (dist.new_group(list(range(g))) if g < world else dist.group.WORLD) for g in sizes}
    started = time.perf_counter()

    def log(msg: str) -> None:
        if rank == 0:
            print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    ctx = _Ctx(torch, dist, rank, world, options, device, groups, started + options.budget_s, log)
    facts = _facts(torch, world) if rank == 0 else {}
    written: list[str] = []
    notes: dict[str, Any] = {}
    total_share = sum(SHARES[s] for s in options.sections) or 1.0
    t_sec = started
    for section in options.sections:
        budget = options.budget_s * SHARES[section] / total_share
        sec_deadline = min(ctx.deadline, t_sec + budget)
        log(f"{section} (budget {budget:.0f} s)")
        try:
            rows = SECTION_FNS[section](ctx, sec_deadline)
        except Exception as exc:  # one broken section must not lose the others' data
            notes[f"{section}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"  {section} FAILED: {notes[f'{section}_error']}")
            rows = []
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        dist.barrier()
        t_sec = time.perf_counter()
        if rank == 0 and rows:
            from planner.profile.tables import write_table

            key = facts["catalog_gpu"]
            folder = "profiles" if section == "collectives" else "validation"
            path = write_table(options.out / folder / key, section, rows)
            written.append(str(path))
            log(f"  wrote {len(rows)} rows to {path}")
    if rank == 0:
        facts["notes"] = notes
        facts["nccl"] = _nccl_topology(Path(scratch))
        facts["seconds"] = round(time.perf_counter() - started, 1)
        key = facts["catalog_gpu"]
        meta = options.out / "profiles" / key / "collectives_meta.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(facts, indent=1, default=str))
        written.append(str(meta))
        (Path(scratch) / "written.json").write_text(json.dumps(written))
    dist.barrier()
    dist.destroy_process_group()


def _facts(torch: Any, world: int) -> dict[str, Any]:
    from planner.profile.tables import catalog_gpu_key

    facts: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "world": world,
        "torch": str(torch.__version__),
        "env": {k: os.environ.get(k) for k in SAFE_ENV},
    }
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        facts.update(gpu_name=name, catalog_gpu=catalog_gpu_key(name), cuda=str(torch.version.cuda),
                     nccl=".".join(str(x) for x in torch.cuda.nccl.version()))
        try:
            facts["nvidia_smi_topo"] = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True,
                                                      text=True, timeout=30, check=False).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            facts["nvidia_smi_topo"] = f"unavailable: {exc}"
    else:
        facts.update(gpu_name="cpu", catalog_gpu="CPU-gloo")
    return facts


def _nccl_topology(scratch: Path) -> dict[str, Any]:
    """The lines of NCCL's debug log that describe the topology (rank 0's file, deduplicated)."""
    keep = ("Channel", "Ring", "Tree", "via P2P", "via SHM", "NVLS", "comm 0x", "NCCL version",
            "Connected all", "CollNet", "Pattern", "nvls", "P2P/")
    lines: list[str] = []
    for f in sorted(scratch.glob("nccl.*.log"))[:1]:
        for line in f.read_text(errors="replace").splitlines():
            if any(k in line for k in keep):
                text = line.split("NCCL INFO", 1)[-1].strip()
                if text not in lines:
                    lines.append(text)
    return {"lines": lines[:400], "files": len(list(scratch.glob("nccl.*.log")))}


def _time_calls(ctx: _Ctx, fn: Callable[[], object], inner: int, reps: int) -> float:
    """Median seconds per call over ``reps`` samples of ``inner`` back-to-back calls (all ranks call)."""
    torch = ctx.torch
    gpu = ctx.device.type == "cuda"
    for _ in range(2):
        fn()
    samples: list[float] = []
    for _ in range(reps):
        if gpu:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(inner):
                fn()
            b.record()
            b.synchronize()
            samples.append(a.elapsed_time(b) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    return median(samples)


def _graph_of(ctx: _Ctx, call: Callable[[], object], inner: int) -> Callable[[], object]:
    """``inner`` back-to-back calls captured in one CUDA graph (warmed up on a side stream first)."""
    torch = ctx.torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            call()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(inner):
            call()
    torch.cuda.synchronize()

    def replay() -> object:
        g.replay()
        return None

    return replay


def _collective_call(ctx: _Ctx, op: str, count: int, dtype: Any, group: Any) -> Callable[[], object]:
    """A zero-argument call of ``op`` over ``count`` elements (nccl-tests' size convention)."""
    torch, dist = ctx.torch, ctx.dist
    n = dist.get_world_size(group)
    out = torch.empty(count, device=ctx.device, dtype=dtype)
    if op == "all_reduce":
        out.copy_(torch.randn(count, device=ctx.device))
        return lambda: dist.all_reduce(out, group=group)
    if op == "all_gather":
        part = torch.randn(count // n, device=ctx.device).to(dtype)
        return lambda: dist.all_gather_into_tensor(out, part, group=group)
    inp = torch.randn(count, device=ctx.device).to(dtype)
    return lambda: dist.all_to_all_single(out, inp, group=group)


def _collectives(ctx: _Ctx, deadline: float) -> list[dict[str, Any]]:
    torch, dist = ctx.torch, ctx.dist
    sizes = COLLECTIVE_SIZES[:4] if ctx.options.quick else COLLECTIVE_SIZES
    dtype = torch.bfloat16 if ctx.device.type == "cuda" else torch.float32
    el = torch.tensor([], dtype=dtype).element_size()
    rows: list[dict[str, Any]] = []
    for n, group in sorted(ctx.groups.items()):
        member = ctx.rank < n
        for op in OPS:
            for nbytes in sizes:
                flag = torch.tensor([1.0 if time.perf_counter() < deadline else 0.0], device=ctx.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)  # every rank stops at the same size
                if flag.item() < 1.0:
                    return rows
                if member:
                    count = max(n, nbytes // el // n * n)
                    call = _collective_call(ctx, op, count, dtype, group)
                    inner = inner_calls(nbytes)
                    reps = 3 if ctx.options.quick else 7
                    timed = [("eager", _time_calls(ctx, call, inner, reps))]
                    if ctx.device.type == "cuda":
                        # inside a CUDA graph, as engines run decode steps: no host launch cost per call
                        replay = _graph_of(ctx, call, inner)
                        timed.append(("graph", _time_calls(ctx, replay, 1, reps) / inner))
                        del replay
                    real = count * el
                    if ctx.rank == 0:
                        for mode, t in timed:
                            alg = real / t / 1e9
                            rows.append({"op": op, "gpus": n, "bytes": int(real), "mode": mode, "time_s": t,
                                         "algbw_gbps": alg, "busbw_gbps": alg * bus_factor(op, n)})
                    del call
                dist.barrier()
            ctx.log(f"  {op} x{n}: done")
    return rows


def _tp_steps(ctx: _Ctx, deadline: float) -> list[dict[str, Any]]:
    from planner.profile.llama import Stack, build_weights

    torch, dist = ctx.torch, ctx.dist
    rows: list[dict[str, Any]] = []
    props = torch.cuda.get_device_properties(ctx.device)
    l2 = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
    tps = [g for g in sorted(ctx.groups) if g <= 4]
    models = TP_MODELS[:1] if ctx.options.quick else TP_MODELS
    cases = TP_CASES[:3] if ctx.options.quick else TP_CASES
    for shape, layers in models:
        for tp in tps:
            group = ctx.groups[tp]
            member = ctx.rank < tp
            flag = torch.tensor([1.0 if time.perf_counter() < deadline else 0.0], device=ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if flag.item() < 1.0:
                return rows
            if member:
                weights = build_weights(torch, shape, num_layers=layers, seed=ctx.options.seed + ctx.rank,
                                        device=str(ctx.device), tp=tp)

                def reduce(t: Any, group: Any = group) -> Any:
                    dist.all_reduce(t, group=group)
                    return t

                def gather(t: Any, group: Any = group, tp: int = tp) -> Any:
                    # concatenated along rows (the form every backend accepts); the cost is the same
                    out = torch.empty((tp * t.shape[0], *t.shape[1:]), device=t.device, dtype=t.dtype)
                    dist.all_gather_into_tensor(out, t.contiguous(), group=group)
                    return out

                stack = Stack(torch, shape, weights, l2, device=str(ctx.device), tp=tp, reduce=reduce,
                              gather=gather)
                for case in cases:
                    # decode and mixed steps from CUDA graphs (as engines run them); prefill both ways:
                    # eager is how engines run it, the graph shows the GPU time without launch gaps
                    for graph in ((False, True) if case.kind == "prefill" else (True,)):
                        fn, mode = stack.runner(case, graph=graph)
                        t = _time_calls(ctx, fn, 3 if case.kind != "prefill" else 1, 9)
                        if ctx.rank == 0:
                            rows.append({"model": shape.name, "layers": layers, "tp": tp, "kind": case.kind,
                                         "prefill_tokens": case.prefill_tokens,
                                         "prefill_pairs": case.prefill_pairs, "decode_seqs": case.decode_seqs,
                                         "decode_kv": case.decode_kv, "time_s": t, "mode": mode})
                        del fn
                        torch.cuda.synchronize()
                        dist.barrier(group=group)
                del stack, weights
                torch.cuda.empty_cache()
            dist.barrier()
            ctx.log(f"  {shape.name} TP{tp}: {len([r for r in rows if r['tp'] == tp])} rows so far")
    return rows


def _sync(ctx: _Ctx) -> None:
    if ctx.device.type == "cuda":
        ctx.torch.cuda.synchronize()


def _mark(ctx: _Ctx) -> Any:
    """A point in the stream: a recorded CUDA event on GPUs, a wall-clock reading on CPUs."""
    if ctx.device.type == "cuda":
        e = ctx.torch.cuda.Event(enable_timing=True)
        e.record()
        return e
    return time.perf_counter()


def _elapsed(ctx: _Ctx, a: Any, b: Any, last: Any) -> float:
    """Seconds between two marks (waits for ``last`` on GPUs)."""
    if ctx.device.type == "cuda":
        last.synchronize()
        return float(a.elapsed_time(b)) / 1e3
    return float(b - a)


def _ep_moe(ctx: _Ctx, deadline: float) -> list[dict[str, Any]]:
    torch, dist = ctx.torch, ctx.dist
    fn = torch.nn.functional
    shape = next(m for m in REFERENCE_MODELS if m.name == "DeepSeek-V3")
    assert shape.moe is not None
    h, n_exp, f, k = shape.hidden_size, shape.moe.num_experts, shape.moe.expert_ffn_size, 8
    if ctx.options.quick:  # a scaled-down layer: smoke runs and CPU tests
        h, n_exp, f = 512, 32, 256
    rows: list[dict[str, Any]] = []
    gen = torch.Generator(device=ctx.device)
    gen.manual_seed(ctx.options.seed + ctx.rank)
    tokens_list = MOE_TOKENS_PER_GPU[:2] if ctx.options.quick else MOE_TOKENS_PER_GPU
    for ep, group in sorted(ctx.groups.items()):
        member = ctx.rank < ep
        flag = torch.tensor([1.0 if time.perf_counter() < deadline else 0.0], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() < 1.0:
            return rows
        if member:
            local = n_exp // ep
            layers = 2 if ep <= 2 else 3
            s = 1 / math.sqrt(h)
            w_router = torch.randn(n_exp, h, device=ctx.device, generator=gen).to(torch.bfloat16) * s
            w_gu = [torch.randn(local, 2 * f, h, device=ctx.device, generator=gen, dtype=torch.bfloat16) * s
                    for _ in range(layers)]
            w_dn = [torch.randn(local, h, f, device=ctx.device, generator=gen, dtype=torch.bfloat16)
                    * (1 / math.sqrt(f)) for _ in range(layers)]
            grouped = hasattr(torch, "_grouped_mm")
            for tokens in tokens_list:
                x = torch.randn(tokens, h, device=ctx.device, generator=gen, dtype=torch.bfloat16)
                parts: dict[str, list[float]] = {"dispatch": [], "experts": [], "combine": [], "total": []}
                kernel = "grouped_mm" if grouped else "loop"
                for rep in range(6):
                    ev: list[Any] = [None] * 4
                    times = {"dispatch": 0.0, "experts": 0.0, "combine": 0.0}
                    dist.barrier(group=group)
                    _sync(ctx)
                    t_start = time.perf_counter()
                    for li in range(layers):
                        ev[0] = _mark(ctx)
                        logits = fn.linear(x, w_router)
                        wts, idx = torch.topk(logits.float().softmax(-1), k, dim=-1)
                        flat = idx.reshape(-1)
                        dest = flat // local
                        order = torch.argsort(dest, stable=True)
                        send_counts = torch.bincount(dest, minlength=ep)
                        recv_counts = torch.empty_like(send_counts)
                        dist.all_to_all_single(recv_counts, send_counts, group=group)
                        sc, rc = send_counts.tolist(), recv_counts.tolist()
                        send_x = x.repeat_interleave(k, dim=0)[order]
                        send_e = (flat[order] % local).to(torch.int32)
                        recv_x = torch.empty(sum(rc), h, device=ctx.device, dtype=torch.bfloat16)
                        recv_e = torch.empty(sum(rc), device=ctx.device, dtype=torch.int32)
                        dist.all_to_all_single(recv_x, send_x, rc, sc, group=group)
                        dist.all_to_all_single(recv_e, send_e, rc, sc, group=group)
                        ev[1] = _mark(ctx)
                        eo = torch.argsort(recv_e, stable=True)
                        xe = recv_x[eo]
                        counts = torch.bincount(recv_e, minlength=local)
                        if grouped:
                            try:
                                offs = torch.cumsum(counts, 0).to(torch.int32)
                                gu = torch._grouped_mm(xe, w_gu[li].transpose(1, 2), offs=offs)
                                act = fn.silu(gu[:, :f]) * gu[:, f:]
                                ye = torch._grouped_mm(act, w_dn[li].transpose(1, 2), offs=offs)
                            except Exception:
                                grouped, kernel = False, "loop"
                        if not grouped:
                            outs, start = [], 0
                            for e, c in enumerate(counts.tolist()):
                                seg = xe[start:start + c]
                                gu = fn.linear(seg, w_gu[li][e])
                                outs.append(fn.linear(fn.silu(gu[:, :f]) * gu[:, f:], w_dn[li][e]))
                                start += c
                            ye = torch.cat(outs)
                        y_back = torch.empty_like(ye)
                        y_back[eo] = ye
                        ev[2] = _mark(ctx)
                        ret = torch.empty(sum(sc), h, device=ctx.device, dtype=torch.bfloat16)
                        dist.all_to_all_single(ret, y_back, sc, rc, group=group)
                        out = torch.zeros(tokens, h, device=ctx.device, dtype=torch.float32)
                        src_tok = order // k
                        w_sel = wts.reshape(-1)[order]
                        out.index_add_(0, src_tok, ret.float() * w_sel[:, None])
                        x = out.to(torch.bfloat16)
                        ev[3] = _mark(ctx)
                        times["dispatch"] += _elapsed(ctx, ev[0], ev[1], ev[3])
                        times["experts"] += _elapsed(ctx, ev[1], ev[2], ev[3])
                        times["combine"] += _elapsed(ctx, ev[2], ev[3], ev[3])
                    total = time.perf_counter() - t_start
                    if rep >= 1:  # first repetition warms up NCCL buffers and kernels
                        for key in ("dispatch", "experts", "combine"):
                            parts[key].append(times[key] / layers)
                        parts["total"].append(total / layers)
                if ctx.rank == 0:
                    rows.append({"model": shape.name, "ep": ep, "tokens_per_gpu": tokens, "top_k": k,
                                 "local_experts": local, "layers": layers,
                                 "dispatch_s": median(parts["dispatch"]),
                                 "experts_s": median(parts["experts"]),
                                 "combine_s": median(parts["combine"]), "total_s": median(parts["total"]),
                                 "a2a_bytes_per_gpu": int(tokens * k * h * 2 * (ep - 1) / ep),
                                 "expert_kernel": kernel})
            del w_gu, w_dn, w_router
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
        dist.barrier()
        ctx.log(f"  EP{ep}: done")
    return rows


SECTION_FNS: dict[str, Callable[[_Ctx, float], list[dict[str, Any]]]] = {
    "collectives": _collectives,
    "tp_steps": _tp_steps,
    "ep_moe": _ep_moe,
}


def options_dict(options: MultiOptions) -> dict[str, Any]:
    """JSON-safe view of the options (for the meta file)."""
    d = asdict(options)
    d["out"] = str(options.out)
    return d


def main_multi(argv: Sequence[str] | None = None) -> int:
    """``python -m planner.profile.collectives``: the multi-GPU sections (argparse, stdlib only)."""
    import argparse

    from planner.profile.runner import DEFAULT_OUT

    p = argparse.ArgumentParser(prog="python -m planner.profile.collectives", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument("--only", default="", help="comma-separated: collectives, ep_moe, tp_steps")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backend", default="nccl", choices=("nccl", "gloo"))
    p.add_argument("--world", type=int, default=0)
    a = p.parse_args(list(argv) if argv is not None else None)
    sections = tuple(s.strip() for s in a.only.split(",") if s.strip()) or tuple(SECTION_FNS)
    unknown = set(sections) - set(SECTION_FNS)
    if unknown:
        print(f"error: --only: unknown section(s) {sorted(unknown)} (expected {', '.join(SECTION_FNS)})")
        return 2
    opts = MultiOptions(out=a.out, budget_s=a.budget_s, sections=tuple(sections), quick=a.quick,
                        backend=a.backend, world=a.world)
    for path in run_multi(opts):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_multi())

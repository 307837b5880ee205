"""Measure a vLLM engine under open-loop trace load: per request, per engine step and per power sample.

Runs where vLLM, torch and NVML are installed (the GPU host), with random weights (``load_format=
"dummy"``) from a local ``config.json`` of the model's architecture, no tokenizer, prompts as token ids.
The engine is vLLM's V1 ``LLMEngine`` built with the OpenAI server's usage context, so its scheduler
defaults (batch-token budget, CUDA-graph sizes, async scheduling, chunked prefill) are those operators
run; the engine core runs in its own process and steps on its own, as behind ``vllm serve``.

The driver is open-loop: each request is added when the wall clock passes its trace timestamp, whatever
the engine is doing, and its TTFT and TPOT are measured from that timestamp, as a client would see them.
Levels are fractions of a capacity measured first by a burst (every request of a window at once).

Outputs (one folder per run): ``requests.parquet`` (one row per request with each token's arrival time),
``steps.parquet`` (vLLM's scheduler and iteration statistics per engine step: running, waiting, KV use,
prefix-cache queries and hits, prefill and decode tokens and requests, elapsed time, preemptions),
``power.parquet`` (NVML every 50 ms) and ``meta.json`` (engine version and arguments, resolved scheduler
config, GPU, driver, levels and their time windows).

Usage on the GPU host::

    python -m planner.profile.vllm_run --model llama-3.1-8b --workload azure-conv \\
        --levels 0.1,0.3,0.5,0.7,0.9,1.1 --out /tmp/vr/llama8b-conv
    python -m planner.profile.vllm_run --attention --out /tmp/vr/attn
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from planner.profile.nvml import Sample, Sampler, nvml_reader
from planner.profile.timing import event_time
from planner.profile.vllm_workload import Window, load

WORKLOADS = Path(__file__).resolve().parents[1] / "perf" / "data" / "validation" / "workloads"

# Public Hugging Face configs of each architecture (shapes only; weights are random).
HF_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
    "qwen3-32b": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 5120,
        "intermediate_size": 25600,
        "num_hidden_layers": 64,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "attention_bias": False,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "qwen3-30b-a3b": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "attention_bias": False,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_dir(name: str) -> str:
    """A temporary folder holding the architecture's ``config.json``."""
    d = tempfile.mkdtemp(prefix=f"vr-{name}-")
    Path(d, "config.json").write_text(json.dumps(HF_CONFIGS[name], indent=1))
    return d


class Collector:
    """What the stat logger sees per engine step, and finished-request statistics by request id."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.finished: dict[str, dict[str, Any]] = {}

    def factory(self) -> Any:
        from vllm.v1.metrics.loggers import StatLoggerBase

        sink = self

        class Logger(StatLoggerBase):  # type: ignore[misc]
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
                *args: Any,
                **kwargs: Any,
            ) -> None:
                sink.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

        return Logger

    def record(self, s: Any, it: Any) -> None:
        row: dict[str, Any] = {"t": time.perf_counter()}
        if s is not None:
            row["running"] = getattr(s, "num_running_reqs", -1)
            row["waiting"] = getattr(s, "num_waiting_reqs", -1)
            row["kv_usage"] = float(getattr(s, "kv_cache_usage", math.nan))
            row["step_counter"] = getattr(s, "step_counter", -1)
            pc = getattr(s, "prefix_cache_stats", None)
            row["prefix_queries"] = getattr(pc, "queries", 0) if pc is not None else 0
            row["prefix_hits"] = getattr(pc, "hits", 0) if pc is not None else 0
            d = getattr(s, "iteration_details", None)
            if d is not None:
                row["iteration"] = d.iteration_index
                row["ctx_requests"] = d.num_ctx_requests
                row["ctx_tokens"] = d.num_ctx_tokens
                row["gen_requests"] = d.num_generation_requests
                row["gen_tokens"] = d.num_generation_tokens
                row["elapsed_ms"] = float(d.elapsed_ms)
        if it is not None:
            row["iter_gen_tokens"] = getattr(it, "num_generation_tokens", 0)
            pts = getattr(it, "prompt_token_stats", None)
            row["iter_prompt_computed"] = getattr(pts, "computed", 0) if pts is not None else 0
            row["iter_prompt_cached"] = getattr(pts, "local_cache_hit", 0) if pts is not None else 0
            row["preempted"] = getattr(it, "num_preempted_reqs", 0)
            for f in getattr(it, "finished_requests", []) or []:
                rid = getattr(f, "request_id", None)
                if rid is not None:
                    self.finished[str(rid)] = {
                        "queued_time_s": float(getattr(f, "queued_time", math.nan)),
                        "prefill_time_s": float(getattr(f, "prefill_time", math.nan)),
                        "decode_time_s": float(getattr(f, "decode_time", math.nan)),
                        "cached_tokens": int(getattr(f, "num_cached_tokens", 0)),
                    }
        self.steps.append(row)


class Driver:
    """An engine plus the bookkeeping of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        from vllm import EngineArgs, LLMEngine
        from vllm.usage.usage_lib import UsageContext

        self.args = args
        self.vocab = HF_CONFIGS[args.model]["vocab_size"]
        self.collector = Collector()
        kwargs: dict[str, Any] = {
            "model": model_dir(args.model),
            "load_format": "dummy",
            "skip_tokenizer_init": True,
            "max_model_len": args.max_model_len,
            "enable_prefix_caching": not args.no_prefix_caching,
            "disable_log_stats": False,
            "enable_logging_iteration_details": True,
            "seed": 0,
            "gpu_memory_utilization": args.gpu_memory_utilization,
        }
        if args.quantization:
            kwargs["quantization"] = args.quantization
        if args.kv_cache_dtype:
            kwargs["kv_cache_dtype"] = args.kv_cache_dtype
        self.engine_kwargs = {k: v for k, v in kwargs.items() if k != "model"}
        t0 = time.perf_counter()
        eargs = EngineArgs(**kwargs)
        self.engine = LLMEngine.from_engine_args(
            eargs,
            usage_context=UsageContext.OPENAI_API_SERVER,
            stat_loggers=[self.collector.factory()],
        )
        self.startup_s = time.perf_counter() - t0
        self.rng = np.random.default_rng(args.seed)
        self.next_id = 0
        self.requests: list[dict[str, Any]] = []

    def resolved_config(self) -> dict[str, Any]:
        cfg = getattr(self.engine, "vllm_config", None)
        if cfg is None:
            return {}
        out: dict[str, Any] = {}

        def grab(obj: Any, names: list[str], prefix: str) -> None:
            for n in names:
                v = getattr(obj, n, None)
                if v is not None:
                    out[prefix + n] = v if isinstance(v, (int, float, str, bool, list)) else str(v)

        grab(
            cfg.scheduler_config,
            [
                "max_num_seqs",
                "max_num_batched_tokens",
                "enable_chunked_prefill",
                "async_scheduling",
                "long_prefill_token_threshold",
                "max_num_partial_prefills",
                "policy",
            ],
            "scheduler.",
        )
        grab(
            cfg.cache_config,
            [
                "block_size",
                "num_gpu_blocks",
                "cache_dtype",
                "enable_prefix_caching",
                "gpu_memory_utilization",
            ],
            "cache.",
        )
        grab(
            cfg.compilation_config,
            ["cudagraph_capture_sizes", "cudagraph_mode", "mode", "level"],
            "compilation.",
        )
        grab(cfg.model_config, ["dtype", "max_model_len", "quantization"], "model.")
        grab(
            getattr(cfg, "parallel_config", None), ["tensor_parallel_size", "data_parallel_size"], "parallel."
        )
        return out

    def params(self, out_tokens: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            max_tokens=out_tokens,
            min_tokens=out_tokens,
            ignore_eos=True,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
            temperature=1.0,
            top_p=1.0,
        )

    def prompt(self, n: int) -> Any:
        from vllm.inputs import TokensPrompt

        ids = self.rng.integers(1000, self.vocab - 1000, size=n).tolist()
        return TokensPrompt(prompt_token_ids=ids)

    def run_window(
        self, window: Window, *, rate_rps: float, level: float, label: str, max_tokens_out: int
    ) -> dict[str, Any]:
        """Replay ``window`` open-loop at ``rate_rps`` (``inf``: all at once) until every request ends."""
        n = len(window)
        scale = 0.0 if math.isinf(rate_rps) else 1.0 / rate_rps
        arrivals = [a * scale for a in window.arrival_s]
        ins = [
            min(v, self.args.max_model_len - min(o, max_tokens_out) - 8)
            for v, o in zip(window.input_tokens, window.output_tokens, strict=True)
        ]
        outs = [min(o, max_tokens_out) for o in window.output_tokens]
        prompts = [self.prompt(v) for v in ins]
        state: dict[str, dict[str, Any]] = {}
        engine = self.engine
        t0 = time.perf_counter()
        i = 0
        while i < n or engine.has_unfinished_requests():
            now = time.perf_counter() - t0
            while i < n and arrivals[i] <= now:
                rid = f"{label}-{self.next_id}"
                self.next_id += 1
                added = time.perf_counter() - t0
                engine.add_request(rid, prompts[i], self.params(outs[i]))
                state[rid] = {
                    "request_id": rid,
                    "window": window.name,
                    "level": level,
                    "label": label,
                    "arrival_s": arrivals[i],
                    "added_s": added,
                    "input_tokens": ins[i],
                    "output_tokens": outs[i],
                    "token_times": [],
                    "tokens": 0,
                    "finish_s": math.nan,
                }
                i += 1
            if engine.has_unfinished_requests():
                outputs = engine.step()
                tnow = time.perf_counter() - t0
                for o in outputs:
                    st = state.get(o.request_id)
                    if st is None:
                        continue
                    k = sum(len(c.token_ids) for c in o.outputs)
                    if k:
                        st["token_times"].extend([tnow] * k)
                        st["tokens"] += k
                    if o.finished:
                        st["finish_s"] = tnow
                        m = getattr(o, "metrics", None)
                        if m is not None:
                            for f in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts"):
                                st["vllm_" + f] = float(getattr(m, f, math.nan))
            elif i < n:
                time.sleep(max(0.0, min(0.05, arrivals[i] - (time.perf_counter() - t0))))
        t1 = time.perf_counter()
        rows = []
        for st in state.values():
            tt = st["token_times"]
            st["ttft_s"] = tt[0] - st["arrival_s"] if tt else math.nan
            st["tpot_s"] = (tt[-1] - tt[0]) / (len(tt) - 1) if len(tt) > 1 else math.nan
            st["e2e_s"] = st["finish_s"] - st["arrival_s"]
            st["t0_perf"] = t0
            fin = self.collector.finished.get(st["request_id"], {})
            st.update(fin)
            rows.append(st)
        self.requests.extend(rows)
        done_out = sum(r["tokens"] for r in rows)
        span = t1 - t0
        return {
            "label": label,
            "level": level,
            "window": window.name,
            "rate_rps": rate_rps,
            "requests": n,
            "t0_perf": t0,
            "t1_perf": t1,
            "seconds": span,
            "output_tokens": done_out,
        }


def capacity_from_burst(rows: list[dict[str, Any]], frac: float = 0.8) -> float:
    """Requests per second a burst completed, up to ``frac`` of it finished (the tail excluded)."""
    fin = sorted(r["finish_s"] for r in rows if math.isfinite(r["finish_s"]))
    if not fin:
        return math.nan
    k = max(1, int(len(fin) * frac))
    return float(k / fin[k - 1])


def write_outputs(out: Path, drv: Driver | None, sampler: Sampler | None, meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    if drv is not None and drv.requests:
        cols = sorted({k for r in drv.requests for k in r})
        table = {c: [r.get(c) for r in drv.requests] for c in cols}
        pq.write_table(pa.table(table), out / "requests.parquet.tmp")
        os.replace(out / "requests.parquet.tmp", out / "requests.parquet")
    if drv is not None and drv.collector.steps:
        cols = sorted({k for r in drv.collector.steps for k in r})
        table = {c: [r.get(c) for r in drv.collector.steps] for c in cols}
        pq.write_table(pa.table(table), out / "steps.parquet.tmp")
        os.replace(out / "steps.parquet.tmp", out / "steps.parquet")
    if sampler is not None:
        ss = sampler.snapshot()
        if ss:
            names = [f.name for f in dataclasses.fields(Sample)]
            pq.write_table(
                pa.table({n: [getattr(s, n) for s in ss] for n in names}), out / "power.parquet.tmp"
            )
            os.replace(out / "power.parquet.tmp", out / "power.parquet")
    (out / "meta.json.tmp").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(out / "meta.json.tmp", out / "meta.json")


def run_engine(args: argparse.Namespace) -> int:
    out = Path(args.out)
    meta: dict[str, Any] = {
        "argv": sys.argv,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": [],
        "environment": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")},
    }
    got = nvml_reader(0)
    sampler = Sampler(got[0], period_s=0.05).start() if got else None
    meta["gpu"] = got[1] if got else {}
    drv: Driver | None = None
    try:
        import torch
        import vllm

        meta["versions"] = {"vllm": vllm.__version__, "torch": torch.__version__, "cuda": torch.version.cuda}
        meta["gpu"]["torch_name"] = torch.cuda.get_device_name(0)
        # what gpu_memory_utilization is a fraction of (the catalog's cuda_memory_gib)
        meta["gpu"]["cuda_total_gib"] = round(torch.cuda.mem_get_info(0)[1] / 2**30, 3)
        log(f"starting engine {args.model} {args.quantization or 'bf16'} prefix={not args.no_prefix_caching}")
        drv = Driver(args)
        meta["engine"] = "vllm"
        meta["engine_args"] = drv.engine_kwargs
        meta["usage_context"] = "OPENAI_API_SERVER"
        meta["model"] = args.model
        meta["hf_config"] = HF_CONFIGS[args.model]
        meta["startup_s"] = drv.startup_s
        meta["resolved"] = drv.resolved_config()
        log(f"engine up in {drv.startup_s:.1f}s: {meta['resolved']}")
        runs: list[dict[str, Any]] = []
        meta["runs"] = runs
        # Warm-up (not analysed): a few short requests, then idle power of a GPU holding a live engine.
        warm = Window(
            "warmup",
            tuple(0.0 for _ in range(16)),
            tuple(256 for _ in range(16)),
            tuple(16 for _ in range(16)),
        )
        runs.append(drv.run_window(warm, rate_rps=math.inf, level=-1.0, label="warmup", max_tokens_out=16))
        t_idle = time.perf_counter()
        time.sleep(args.idle_s)
        meta["idle_window_perf"] = [t_idle, time.perf_counter()]
        specs = [(args.workload, args.levels)] + [tuple(a.split(":", 1)) for a in args.also]
        meta["workloads"] = {}
        for workload, level_text in specs:
            windows = load(WORKLOADS / f"{workload}.json")
            cap = args.capacity_rps
            if not cap:
                r = drv.run_window(
                    windows["probe"],
                    rate_rps=math.inf,
                    level=0.0,
                    label=f"{workload}/burst",
                    max_tokens_out=args.max_output,
                )
                rows = [x for x in drv.requests if x["label"] == f"{workload}/burst"]
                cap = capacity_from_burst(rows)
                r["capacity_rps"] = cap
                r["workload"] = workload
                runs.append(r)
                log(f"{workload} burst: {r['seconds']:.1f}s, capacity {cap:.2f} req/s")
                write_outputs(out, drv, sampler, meta)
            meta["workloads"][workload] = {"capacity_rps": cap, "levels": level_text}
            levels = [float(x) for x in level_text.split(",") if x]
            for k, lv in enumerate(levels):
                time.sleep(args.gap_s)
                r = drv.run_window(
                    windows[f"w{k + 1}"],
                    rate_rps=lv * cap,
                    level=lv,
                    label=f"{workload}/L{lv:g}",
                    max_tokens_out=args.max_output,
                )
                r["workload"] = workload
                runs.append(r)
                log(f"{workload} level {lv}: {r['seconds']:.1f}s")
                write_outputs(out, drv, sampler, meta)
    except Exception as exc:
        meta["errors"].append(f"{type(exc).__name__}: {exc}")
        meta["traceback"] = traceback.format_exc()
        log(traceback.format_exc())
    finally:
        if sampler is not None:
            sampler.stop()
        write_outputs(out, drv, sampler, meta)
    return 1 if meta["errors"] else 0


def time_ms(fn: Any, reps: int = 20, warm: int = 3) -> float:
    import torch

    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = [event_time(torch, fn) * 1e3 for _ in range(reps)]
    return float(np.median(np.asarray(times, dtype=np.float64)))


def run_attention(args: argparse.Namespace) -> int:
    """Time vLLM's FlashAttention-3 (the kernel its Hopper backend runs) on the profile's attention grid.

    Rows follow the shipped ``attention.parquet`` schema (one layer; ``phase``, ``batch``, ``q_len``,
    ``kv_len``, heads, ``dtype``, ``time_s``), so the same calibration fits them. Decode reads a paged
    cache (16-token blocks) as the engine does; prefill is causal over ``batch`` equal sequences.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    block = 16
    d = 128
    lens = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)

    def add(phase: str, batch: int, q_len: int, kv_len: int, hq: int, hkv: int, dtype: str, fn: Any) -> None:
        try:
            ms, err = time_ms(fn), ""
        except Exception as exc:
            ms, err = math.nan, f"{type(exc).__name__}: {exc}"[:200]
        rows.append(
            {
                "phase": phase,
                "batch": batch,
                "q_len": q_len,
                "kv_len": kv_len,
                "num_heads": hq,
                "num_kv_heads": hkv,
                "head_dim": d,
                "dtype": dtype,
                "time_s": ms / 1e3,
                "error": err,
            }
        )

    for hq, hkv, dtypes in (
        (32, 8, ("bf16", "fp8")),
        (64, 8, ("bf16",)),
        (32, 4, ("bf16",)),
        (16, 2, ("bf16",)),
    ):
        for dtype_name in dtypes:
            kv_dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float8_e4m3fn
            for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                for ctx in lens:
                    if batch * ctx > 2_200_000:
                        continue
                    nblk = (ctx + block - 1) // block
                    kc = torch.randn(batch * nblk, block, hkv, d, device=dev, dtype=torch.bfloat16).to(
                        kv_dtype
                    )
                    vc = torch.randn_like(kc, dtype=torch.bfloat16).to(kv_dtype)
                    q = torch.randn(batch, hq, d, device=dev, dtype=torch.bfloat16)
                    if dtype_name == "fp8":
                        q = q.to(torch.float8_e4m3fn)
                    bt = torch.arange(batch * nblk, device=dev, dtype=torch.int32).view(batch, nblk)
                    cu_q = torch.arange(batch + 1, device=dev, dtype=torch.int32)
                    seqused = torch.full((batch,), ctx, device=dev, dtype=torch.int32)
                    outb = torch.empty(batch, hq, d, device=dev, dtype=torch.bfloat16)
                    kw: dict[str, Any] = {}
                    if dtype_name == "fp8":
                        one = torch.ones(batch, hkv, device=dev, dtype=torch.float32)
                        kw = {"q_descale": one, "k_descale": one, "v_descale": one}

                    def call(
                        q: Any = q,
                        kc: Any = kc,
                        vc: Any = vc,
                        cu_q: Any = cu_q,
                        ctx: int = ctx,
                        seqused: Any = seqused,
                        bt: Any = bt,
                        outb: Any = outb,
                        kw: Any = kw,
                    ) -> None:
                        flash_attn_varlen_func(
                            q,
                            kc,
                            vc,
                            max_seqlen_q=1,
                            cu_seqlens_q=cu_q,
                            max_seqlen_k=ctx,
                            seqused_k=seqused,
                            causal=True,
                            block_table=bt,
                            out=outb,
                            fa_version=3,
                            **kw,
                        )

                    add("decode", batch, 1, ctx, hq, hkv, dtype_name, call)
                    del kc, vc
            log(f"decode {hq}/{hkv} {dtype_name}: {len(rows)} rows")
        for batch in (1, 4):
            for seq in lens:
                if batch * seq > 65536:
                    continue
                q = torch.randn(batch * seq, hq, d, device=dev, dtype=torch.bfloat16)
                k = torch.randn(batch * seq, hkv, d, device=dev, dtype=torch.bfloat16)
                v = torch.randn_like(k)
                cu = torch.arange(0, batch * seq + 1, seq, device=dev, dtype=torch.int32)

                def pcall(q: Any = q, k: Any = k, v: Any = v, cu: Any = cu, seq: int = seq) -> None:
                    flash_attn_varlen_func(
                        q,
                        k,
                        v,
                        max_seqlen_q=seq,
                        cu_seqlens_q=cu,
                        max_seqlen_k=seq,
                        cu_seqlens_k=cu,
                        causal=True,
                        fa_version=3,
                    )

                add("prefill", batch, seq, seq, hq, hkv, "bf16", pcall)
        log(f"prefill {hq}/{hkv}: {len(rows)} rows")
    pq.write_table(pa.Table.from_pylist(rows), out / "attention.parquet")
    got = nvml_reader(0)
    meta = {
        "gpu": got[1] if got else {},
        "torch_name": torch.cuda.get_device_name(0),
        "cuda_total_gib": round(torch.cuda.mem_get_info(0)[1] / 2**30, 3),
        "kernel": "vllm.vllm_flash_attn.flash_attn_varlen_func(fa_version=3)",
        "block_size": block,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": sorted({r["error"] for r in rows if r["error"]}),
    }
    (out / "attention_meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m planner.profile.vllm_run", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model", default="llama-3.1-8b", choices=sorted(HF_CONFIGS))
    p.add_argument("--workload", default="azure-conv")
    p.add_argument("--levels", default="0.1,0.3,0.5,0.7,0.9,1.1")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        help="WORKLOAD:LEVELS replayed after the first on the same engine",
    )
    p.add_argument("--capacity-rps", type=float, default=0.0, help="skip the burst and use this capacity")
    p.add_argument("--quantization", default="")
    p.add_argument("--kv-cache-dtype", default="")
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--max-model-len", type=int, default=16384)
    p.add_argument("--max-output", type=int, default=2048)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--gap-s", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attention", action="store_true", help="time the FA3 kernel instead of the engine")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return run_attention(args) if args.attention else run_engine(args)


if __name__ == "__main__":
    sys.exit(main())

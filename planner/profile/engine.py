"""End-to-end validation against a real engine: transformers' continuous batching (paged attention).

A random-weight Llama-shaped model (built from its config, nothing downloaded) serves an open-loop
Poisson trace at several load levels. Each request's time to first token, time per output token and
end-to-end latency come from the engine's own per-token timestamps (``record_timestamps=True``), and
NVML power is sampled throughout. The simulator replays the same requests through its engine model and
is judged against these numbers.

Load levels are fractions of a capacity measured first with a saturating burst (which also warms the
engine up: ``warmup()`` is never called, since after ``start()`` it allocates a second KV cache).
Lengths follow a lognormal shaped like the Azure LLM conversation trace (input median about 1,000
tokens, output median about 130), capped so each level stays short. EOS is disabled (random weights
could emit it at any time), so every request generates exactly its drawn output length.
"""

from __future__ import annotations

import importlib
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.profile.grid import ModelShape
from planner.profile.micro import Row
from planner.profile.nvml import Sampler


@dataclass(frozen=True)
class LengthModel:
    """Lognormal request lengths (medians and log-space sigmas), clipped to ``[lo, hi]``."""

    input_median: float = 1000.0
    input_sigma: float = 0.9
    input_lo: int = 16
    input_hi: int = 4096
    output_median: float = 130.0
    output_sigma: float = 0.8
    output_lo: int = 4
    output_hi: int = 256


@dataclass(frozen=True)
class Request:
    """One request of the replayed trace: arrival offset (s) and lengths."""

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int


def draw_requests(
    rng: np.random.Generator, *, n: int, rate_rps: float, lengths: LengthModel, start_id: int = 0
) -> list[Request]:
    """``n`` requests with Poisson arrivals at ``rate_rps`` (first at 0) and lognormal lengths.

    >>> reqs = draw_requests(np.random.default_rng(0), n=200, rate_rps=4.0, lengths=LengthModel())
    >>> reqs[0].arrival_s, len(reqs), all(16 <= r.input_tokens <= 4096 for r in reqs)
    (0.0, 200, True)
    >>> 30 < reqs[-1].arrival_s < 70
    True
    """
    gaps = rng.exponential(1.0 / rate_rps, size=n)
    gaps[0] = 0.0
    arrivals = np.cumsum(gaps)
    ins = np.clip(
        np.round(rng.lognormal(math.log(lengths.input_median), lengths.input_sigma, n)),
        lengths.input_lo,
        lengths.input_hi,
    )
    outs = np.clip(
        np.round(rng.lognormal(math.log(lengths.output_median), lengths.output_sigma, n)),
        lengths.output_lo,
        lengths.output_hi,
    )
    return [Request(start_id + i, float(arrivals[i]), int(ins[i]), int(outs[i])) for i in range(n)]


def request_metrics(created: float, timestamps: Sequence[float]) -> tuple[float, float, float]:
    """``(ttft_s, tpot_s, e2e_s)`` from the submit time and the per-token timestamps (same clock).

    TPOT is the mean gap between output tokens after the first (NaN for single-token outputs).

    >>> request_metrics(10.0, [10.5, 10.6, 10.7])
    (0.5, 0.1, 0.7)
    """
    if not timestamps:
        return math.nan, math.nan, math.nan
    ttft = timestamps[0] - created
    e2e = timestamps[-1] - created
    tpot = (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1) if len(timestamps) > 1 else math.nan
    return round(ttft, 12), round(tpot, 12), round(e2e, 12)


def llama_config(shape: ModelShape, *, max_position: int = 131072) -> Any:
    """A transformers ``LlamaConfig`` of ``shape`` (Llama-3.1 RoPE base, untied embeddings, bf16)."""
    transformers = importlib.import_module("transformers")
    return transformers.LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.ffn_size,
        num_hidden_layers=shape.num_layers or 32,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=max_position,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )


@dataclass(frozen=True)
class ValidationResult:
    """Rows of ``engine_requests``, ``engine_tokens`` and ``engine_power``, and ``engine_meta.json``."""

    requests: list[Row]
    tokens: list[Row]
    power: list[Row]
    meta: dict[str, Any]


@dataclass
class EngineRun:
    """State of one validation run (results gathered by a collector thread)."""

    manager: Any
    results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_collector(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    out = self.manager.get_result(timeout=0.1)
                except queue.Empty:
                    continue
                except Exception as exc:  # keep collecting; the error is reported in engine_meta.json
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.1)
                    continue
                if out is None:
                    continue
                if out.is_finished():
                    self.results[str(out.request_id)] = out

        self._thread = threading.Thread(target=loop, name="cb-collector", daemon=True)
        self._thread.start()

    def stop_collector(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def wait_for(self, ids: Sequence[str], deadline: float, clock: Callable[[], float]) -> bool:
        """Wait until every id has a finished result or the deadline passes; True if all finished."""
        while clock() < deadline:
            if all(i in self.results for i in ids):
                return True
            if not self.manager.is_running():
                self.errors.append("generation thread stopped")
                return False
            time.sleep(0.05)
        return all(i in self.results for i in ids)


def replay_level(
    run: EngineRun,
    requests: Sequence[Request],
    *,
    level: float,
    rate: float,
    vocab: int,
    rng: np.random.Generator,
    deadline: float,
    clock: Callable[[], float] = time.perf_counter,
    prefix: str = "",
) -> tuple[list[Row], list[Row], float, float]:
    """Submit ``requests`` at their arrival offsets and wait for them.

    Returns the request rows, the per-token rows (``t_s`` of every output token from the level's start,
    from which step boundaries can be read), and the level's wall window.
    """
    prompts = [rng.integers(3, vocab, size=r.input_tokens).tolist() for r in requests]
    t0 = clock()
    ids: list[str] = []
    for req, prompt in zip(requests, prompts, strict=True):
        wait = t0 + req.arrival_s - clock()
        if wait > 0:
            time.sleep(wait)
        if clock() > deadline:
            break
        rid = f"{prefix}{req.request_id}"
        run.manager.add_request(
            prompt, request_id=rid, max_new_tokens=req.output_tokens, record_timestamps=True, eos_token_id=-1
        )
        ids.append(rid)
    finished_all = run.wait_for(ids, deadline, clock)
    t1 = clock()
    rows: list[Row] = []
    tokens: list[Row] = []
    for req in requests[: len(ids)]:
        out = run.results.get(f"{prefix}{req.request_id}")
        if out is None:
            continue
        stamps = list(out.timestamps or [])
        ttft, tpot, e2e = request_metrics(out.created_time, stamps)
        rows.append(
            {
                "load_level": level,
                "rate_rps": rate,
                "request_id": req.request_id,
                "arrival_s": float(out.created_time - t0),
                "input_tokens": req.input_tokens,
                "output_tokens": len(out.generated_tokens),
                "ttft_s": ttft,
                "tpot_s": tpot,
                "e2e_s": e2e,
            }
        )
        tokens += [
            {"load_level": level, "request_id": req.request_id, "token_index": j, "t_s": ts - t0}
            for j, ts in enumerate(stamps)
        ]
    if not finished_all:
        run.errors.append(
            f"level {level}: {len(ids) - len(rows)} of {len(ids)} requests unfinished by the deadline"
        )
    return rows, tokens, t0, t1


def burst_capacity(tokens: Sequence[Row], rows: Sequence[Row], *, quantile: float = 0.8) -> float:
    """Output tokens per second of a saturating burst, up to when ``quantile`` of its requests finished.

    Counting only until most requests are done keeps the lone long request of the tail (a batch of
    one) from dragging the estimate down.

    >>> toks = [{"t_s": 0.1 * i} for i in range(1, 11)]
    >>> rs = [{"arrival_s": 0.0, "e2e_s": 1.0}]
    >>> round(burst_capacity(toks, rs), 6)
    10.0
    """
    ends = sorted(r["arrival_s"] + r["e2e_s"] for r in rows if math.isfinite(r["e2e_s"]))
    if not ends or not tokens:
        return math.nan
    t_end = ends[min(len(ends) - 1, int(quantile * len(ends)))]
    count = sum(1 for t in tokens if t["t_s"] <= t_end + 1e-9)
    return count / t_end if t_end > 0 else math.nan


def mean_output_tokens(lengths: LengthModel, *, samples: int = 200_000, seed: int = 0) -> float:
    """Mean output length of the (clipped, rounded) length model, by sampling.

    >>> 130 < mean_output_tokens(LengthModel()) < 160
    True
    """
    draws = draw_requests(np.random.default_rng(seed), n=samples, rate_rps=1.0, lengths=lengths)
    return float(np.mean([r.output_tokens for r in draws]))


def engine_config_facts(manager: Any) -> dict[str, Any]:
    """The engine's resolved configuration: KV blocks, block size, batch limits, graphs, attention."""
    facts: dict[str, Any] = {}
    bp = getattr(manager, "batch_processor", None)
    cache = getattr(bp, "cache", None)
    for key in ("num_blocks", "block_size", "max_batch_tokens", "num_pages", "max_blocks_per_request"):
        value = getattr(cache, key, None)
        if isinstance(value, int | float | str | bool):
            facts[key] = value
    cfg = getattr(manager, "continuous_batching_config", None)
    for key in (
        "max_requests_per_batch",
        "max_memory_percent",
        "use_cuda_graph",
        "use_async_batching",
        "allow_block_sharing",
        "scheduler_type",
        "max_batch_tokens",
        "num_blocks",
        "block_size",
    ):
        value = getattr(cfg, key, None)
        if isinstance(value, tuple):
            value = list(value)
        if value is not None:
            facts.setdefault(key, value)
    model = getattr(manager, "model", None)
    facts["attn_implementation"] = str(getattr(getattr(model, "config", None), "_attn_implementation", ""))
    return facts


def run_validation(
    *,
    torch: Any,
    shape: ModelShape,
    sampler: Sampler | None,
    deadline: float,
    levels: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    probe_requests: int = 48,
    probe_seconds: float = 75.0,
    level_seconds: float = 45.0,
    max_requests: int = 300,
    min_requests: int = 5,
    capacity_rps: float | None = None,
    lengths: LengthModel = LengthModel(),
    seed: int = 20260101,
    device: str = "cuda",
    num_layers: int | None = None,
    num_blocks: int | None = None,
    max_batch_tokens: int | None = 8192,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
) -> ValidationResult:
    """Serve a saturating burst, then Poisson traces at ``levels`` x the capacity the burst showed."""
    transformers = importlib.import_module("transformers")
    cb_module = importlib.import_module("transformers.generation.configuration_utils")
    GenerationConfig = transformers.GenerationConfig
    LlamaForCausalLM = transformers.LlamaForCausalLM
    ContinuousBatchingConfig = cb_module.ContinuousBatchingConfig

    rng = np.random.default_rng(seed)
    config = llama_config(shape)
    if num_layers is not None:
        config.num_hidden_layers = num_layers
    t_build = clock()
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.eval()
    log(f"  engine model built in {clock() - t_build:.1f} s ({config.num_hidden_layers} layers)")
    gen = GenerationConfig(max_new_tokens=lengths.output_hi, do_sample=False, eos_token_id=-1, pad_token_id=2)
    cb_config = ContinuousBatchingConfig(
        allow_block_sharing=False, num_blocks=num_blocks, max_batch_tokens=max_batch_tokens
    )
    manager = model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb_config)
    manager.start()
    run = EngineRun(manager)
    run.start_collector()
    meta: dict[str, Any] = {
        "engine": "transformers continuous batching (init_continuous_batching, paged attention)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model_shape": {
            "name": shape.name,
            "num_layers": config.num_hidden_layers,
            "hidden_size": shape.hidden_size,
            "num_heads": shape.num_heads,
            "num_kv_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim,
            "ffn_size": shape.ffn_size,
            "vocab_size": shape.vocab_size,
            "dtype": "bf16",
            "weights": "random (from config, nothing downloaded)",
        },
        "lengths": lengths.__dict__,
        "seed": seed,
        "levels": [],
    }
    req_rows: list[Row] = []
    token_rows: list[Row] = []
    power_rows: list[Row] = []

    def keep_power(level: float, t0: float, t1: float) -> None:
        if sampler is not None:
            for smp in sampler.window(t0, t1):
                power_rows.append(
                    {
                        "load_level": level,
                        "t_s": smp.t - t0,
                        "power_w": smp.power_w,
                        "sm_clock_mhz": smp.sm_clock_mhz,
                    }
                )

    try:
        probe = draw_requests(rng, n=probe_requests, rate_rps=1e6, lengths=lengths, start_id=0)
        rows, toks, p0, p1 = replay_level(
            run,
            probe,
            level=0.0,
            rate=math.nan,
            vocab=shape.vocab_size,
            rng=rng,
            deadline=min(deadline, clock() + probe_seconds),
            clock=clock,
            prefix="probe-",
        )
        meta["engine_config"] = engine_config_facts(manager)
        if not manager.is_running():
            raise RuntimeError(f"the engine's generation thread died during the probe: {run.errors}")
        req_rows += rows
        token_rows += toks
        keep_power(0.0, p0, p1)
        tok_rate = burst_capacity(toks, rows)
        mean_out = mean_output_tokens(lengths)
        capacity = tok_rate / mean_out if math.isfinite(tok_rate) and tok_rate > 0 else 0.5
        if capacity_rps is not None:  # a capacity measured by an earlier run keeps load levels comparable
            capacity = capacity_rps
        meta["capacity_probe"] = {
            "requests": len(probe),
            "finished": len(rows),
            "seconds": p1 - p0,
            "output_tok_per_s_to_p80": tok_rate,
            "mean_output_tokens": mean_out,
            "capacity_rps": capacity,
            "capacity_given": capacity_rps is not None,
            "note": "load_level 0 rows are this burst: every request submitted at t=0",
        }
        log(
            f"  engine burst: {len(rows)}/{len(probe)} in {p1 - p0:.1f} s, {tok_rate:.0f} tok/s "
            f"-> capacity {capacity:.2f} req/s"
        )
        next_id = 1000
        for i, level in enumerate(levels):
            now = clock()
            left = deadline - now
            remaining = len(levels) - i
            if left < 20.0:
                meta.setdefault("skipped_levels", []).append(level)
                continue
            rate = level * capacity
            share = left / remaining
            budget = min(level_seconds, share * 0.55)
            n = int(min(max_requests, max(min_requests, round(rate * budget))))
            if n / rate > share * 0.7:  # never let arrivals outrun the level's share of the budget
                n = max(1, int(rate * share * 0.7))
            reqs = draw_requests(rng, n=n, rate_rps=rate, lengths=lengths, start_id=next_id)
            next_id += n
            rows, toks, t0, t1 = replay_level(
                run,
                reqs,
                level=level,
                rate=rate,
                vocab=shape.vocab_size,
                rng=rng,
                deadline=min(deadline, now + share),
                clock=clock,
            )
            req_rows += rows
            token_rows += toks
            keep_power(level, t0, t1)
            ttft = float(np.median([r["ttft_s"] for r in rows])) if rows else math.nan
            tpot = float(np.nanmedian([r["tpot_s"] for r in rows])) if rows else math.nan
            meta["levels"].append(
                {"level": level, "rate_rps": rate, "submitted": n, "finished": len(rows), "seconds": t1 - t0}
            )
            log(
                f"  engine level {level}: {rate:.2f} req/s, {len(rows)}/{n} done in {t1 - t0:.0f} s, "
                f"TTFT p50 {ttft * 1e3:.0f} ms, TPOT p50 {tpot * 1e3:.1f} ms"
            )
            time.sleep(1.0)
    finally:
        run.stop_collector()
        try:
            manager.stop(block=True, timeout=60, hard_stop=True)
        except Exception as exc:
            run.errors.append(f"stop: {exc}"[:200])
        meta["errors"] = run.errors
    return ValidationResult(req_rows, token_rows, power_rows, meta)

"""The series each serving engine exports, for the live reader (``pools.yaml``: ``engine:``).

Sources (names are facts of each engine, checked 2026-12-07): the Gateway API Inference Extension's
model-server protocol (``docs/proposals/003-model-server-protocol``: queued and running requests and KV
utilisation for vLLM, trtllm-serve and SGLang), vLLM's V1 metrics logger
(``../shared/design/algorithms-and-numbers.md`` B10) and SGLang's production-metrics reference
(``docs/references/production_metrics.md``: ``sglang:prompt_tokens_total``,
``sglang:generation_tokens_total``, ``sglang:time_to_first_token_seconds``,
``sglang:inter_token_latency_seconds``). trtllm-serve's counters and histograms are not in the
inference-extension contract and their names change between releases, so a ``trtllm`` pool is read from
the contract's gauges only; policies that need token rates or latency histograms say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Engine(StrEnum):
    """Serving engines whose metrics the live autoscaler reads."""

    VLLM = "vllm"
    SGLANG = "sglang"
    TRTLLM = "trtllm"


@dataclass(frozen=True)
class EngineMetrics:
    """Series names of one engine; where a tuple holds two, the first (newer) name wins per replica.

    Attributes:
        running, waiting: gauges of requests in the batch and in the queue.
        kv: gauge(s) of KV-cache use, 0..1.
        prompt_tokens, generation_tokens: counters (with their ``_total``); empty: not exported.
        ttft, itl: histogram base names (``_bucket``/``_sum``/``_count`` follow); empty: not exported.
    """

    running: str
    waiting: str
    kv: tuple[str, ...]
    prompt_tokens: str = ""
    generation_tokens: str = ""
    ttft: tuple[str, ...] = ()
    itl: tuple[str, ...] = ()


ENGINE_METRICS: dict[Engine, EngineMetrics] = {
    Engine.VLLM: EngineMetrics(
        running="vllm:num_requests_running", waiting="vllm:num_requests_waiting",
        kv=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prompt_tokens="vllm:prompt_tokens_total", generation_tokens="vllm:generation_tokens_total",
        ttft=("vllm:time_to_first_token_seconds",),
        itl=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")),
    Engine.SGLANG: EngineMetrics(
        running="sglang:num_running_reqs", waiting="sglang:num_queue_reqs", kv=("sglang:token_usage",),
        prompt_tokens="sglang:prompt_tokens_total", generation_tokens="sglang:generation_tokens_total",
        ttft=("sglang:time_to_first_token_seconds",),
        itl=("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds")),
    Engine.TRTLLM: EngineMetrics(
        running="trtllm_num_requests_running", waiting="trtllm_num_requests_waiting",
        kv=("trtllm_kv_cache_utilization",)),
}
"""Each engine's series (see the module docstring for sources)."""

"""vLLM's Prometheus metric names that deploy/ may query, as vLLM documents them.

Sources (facts, not code):
- vLLM "Production Metrics", https://docs.vllm.ai/en/stable/usage/metrics/ (the V1 engine's names:
  ``vllm:kv_cache_usage_perc``, ``vllm:inter_token_latency_seconds``, ...);
- the same page for v0.7, https://docs.vllm.ai/en/v0.7.0/serving/metrics.html (the older
  ``vllm:gpu_cache_usage_perc`` and ``vllm:time_per_output_token_seconds``, still served by many fleets).

Counters are exposed with ``_total``; histograms as ``_bucket``, ``_sum`` and ``_count``. Only families
fleetwise's manifests, rules or dashboard read, or that the live autoscaler reads, are listed: a name
outside this list in a query is a typo or an undocumented series, and tests/deploy fails on it.
"""

from __future__ import annotations

_GAUGES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",  # V1 name
    "vllm:gpu_cache_usage_perc",  # v0 name of the same gauge
)
_COUNTERS = (
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:num_preemptions",
)
_HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",  # V1 name
    "vllm:time_per_output_token_seconds",  # v0 name of the same histogram
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
)


def vllm_sample_names() -> frozenset[str]:
    """Every series name the listed vLLM families expose.

    >>> "vllm:time_to_first_token_seconds_bucket" in vllm_sample_names()
    True
    >>> "vllm:prompt_tokens" in vllm_sample_names()
    False
    """
    out = set(_GAUGES)
    out.update(f"{c}_total" for c in _COUNTERS)
    out.update(f"{h}{s}" for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count"))
    return frozenset(out)

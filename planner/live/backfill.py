"""Recorded vLLM requests as the Prometheus history vLLM would have left behind (OpenMetrics text).

Why: reconstructing a trace or calibrating from telemetry must be tested against a Prometheus that holds
real history, and a real history needs the requests that produced it to check against. The vLLM runs
recorded on the GPU machine (``planner/perf/data/validation/<GPU>/vllm-*/``) have every request's
arrival, lengths, queueing, first token and finish; this module replays them into the series vLLM's
V1 metrics logger exports, at a scrape interval, with timestamps, so ``promtool tsdb
create-blocks-from openmetrics`` can load them into a real Prometheus.

When vLLM records what (``vllm/v1/metrics``): a prompt's tokens count when its first token is out;
each generated token as it is out; TTFT is observed at the first token; the length, end-to-end and
success series at the finish. Tokens between the first and the last are spread evenly here (the per-token
times are not needed for any of these series' scrapes to within one interval).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from planner.live.promql import (
    CACHE_CONFIG,
    E2E_NAME,
    GENERATION_TOKENS,
    ITL_NAMES,
    KV_NAMES,
    PREFIX_HITS,
    PREFIX_QUERIES,
    PROMPT_TOKENS,
    REQUEST_GENERATION,
    REQUEST_PROMPT,
    RUNNING,
    TTFT_NAME,
    WAITING,
)
from planner.sim.config import (
    VLLM_E2E_BUCKETS_S,
    VLLM_ITL_BUCKETS_S,
    VLLM_TTFT_BUCKETS_S,
    vllm_length_buckets,
)


def concat_levels(requests: pl.DataFrame, gap_s: float = 20.0) -> pl.DataFrame:
    """One timeline of a validation run's load levels (each level's arrivals start at 0 in the file),
    in level order, each starting ``gap_s`` after the previous level's last finish."""
    parts = []
    t = 0.0
    for _, level in sorted(requests.partition_by("load_level", as_dict=True).items()):
        part = level.sort("arrival_s").with_columns(pl.col("arrival_s") - pl.col("arrival_s").min() + t)
        parts.append(part)
        t = float((part["arrival_s"] + part["e2e_s"]).to_numpy().max()) + gap_s
    return pl.concat(parts).sort("arrival_s")


def _label_text(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _samples(
    series: str, lab: str, values: NDArray[Any], stamp: NDArray[np.float64], fmt: str = ".0f"
) -> list[str]:
    """One series' samples, one per scrape: ``series{labels} value timestamp``."""
    return [f"{series}{lab} {v:{fmt}} {stamp[k]:.3f}" for k, v in enumerate(values)]


def _histogram(
    name: str,
    labels: dict[str, str],
    bounds: Sequence[float],
    below: Callable[[float], NDArray[np.float64]],
    count: NDArray[np.float64],
    total: NDArray[np.float64],
    stamp: NDArray[np.float64],
) -> list[str]:
    """A histogram's series at each scrape: ``below(le)`` the cumulative count at or under ``le``."""
    lines: list[str] = []
    for le in (*bounds, float("inf")):
        lab = _label_text({**labels, "le": "+Inf" if le == float("inf") else f"{le:g}"})
        lines += _samples(f"{name}_bucket", lab, below(le), stamp)
    lab = _label_text(labels)
    return (
        lines
        + _samples(f"{name}_count", lab, count, stamp)
        + _samples(f"{name}_sum", lab, total, stamp, ".6g")
    )


def _weighted_below(
    weight: NDArray[np.float64], value: NDArray[np.float64]
) -> Callable[[float], NDArray[np.float64]]:
    """``below(le)`` per scrape of observations of ``value`` counted ``weight`` times at each scrape
    (``weight``: scrapes x observations, cumulative)."""

    def below(le: float) -> NDArray[np.float64]:
        out: NDArray[np.float64] = (weight * (value <= le)).sum(axis=1)
        return out

    return below


def _observed(
    name: str,
    bounds: Sequence[float],
    obs_t: NDArray[np.float64],
    obs_v: NDArray[np.float64],
    times: NDArray[np.float64],
    labels: dict[str, str],
    stamp: NDArray[np.float64],
) -> list[str]:
    """A histogram of observations ``obs_v`` made at ``obs_t`` (each once), as scraped at ``times``."""
    order = np.argsort(obs_t)
    v_sorted = obs_v[order]
    seen = np.searchsorted(obs_t[order], times, side="right")  # observations at or before each scrape

    def below(le: float) -> NDArray[np.float64]:
        out: NDArray[np.float64] = np.concatenate([[0.0], np.cumsum(v_sorted <= le)])[seen]
        return out

    count = np.arange(obs_t.size + 1, dtype=np.float64)[seen]
    total = np.concatenate([[0.0], np.cumsum(v_sorted)])[seen]
    return _histogram(name, labels, bounds, below, count, total, stamp)


def vllm_exposition(
    requests: pl.DataFrame,
    *,
    start_unix_s: float,
    scrape_s: float = 5.0,
    pods: int = 2,
    model: str = "model",
    server: Mapping[str, str] | None = None,
    kv_tokens: int = 0,
    max_model_len: int = 16384,
    legacy_names: bool = False,
) -> str:
    """OpenMetrics text (with timestamps) of what ``pods`` vLLM replicas serving ``requests`` exposed.

    Args:
        requests: ``arrival_s``, ``input_tokens``, ``output_tokens``, ``ttft_s``, ``e2e_s``, ``queued_s``
            (and ``cached_tokens`` when known), seconds from the history's start.
        start_unix_s: the Unix time of ``arrival_s == 0``.
        scrape_s: the scrape interval.
        pods: replicas; request ``i`` is served by replica ``i mod pods``.
        model: the ``model_name`` label.
        server: labels of ``vllm:cache_config_info`` (block_size, num_gpu_blocks, ...).
        kv_tokens: KV capacity per replica in tokens (0: no KV-usage gauge).
        max_model_len: the top of the length histograms' buckets.
        legacy_names: the KV and inter-token-latency series under vLLM's older names
            (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``).
    """
    kv_name, itl_name = (KV_NAMES[1], ITL_NAMES[1]) if legacy_names else (KV_NAMES[0], ITL_NAMES[0])
    end = float((requests["arrival_s"] + requests["e2e_s"]).to_numpy().max()) + 2 * scrape_s
    times = np.arange(0.0, end + scrape_s, scrape_s)
    stamp = start_unix_s + times
    arr = requests["arrival_s"].to_numpy().astype(np.float64)
    inp = requests["input_tokens"].to_numpy().astype(np.float64)
    out = requests["output_tokens"].to_numpy().astype(np.float64)
    first = arr + requests["ttft_s"].to_numpy()
    fin = arr + requests["e2e_s"].to_numpy()
    sched = arr + requests["queued_s"].to_numpy()
    cached = (
        requests["cached_tokens"].to_numpy().astype(np.float64)
        if "cached_tokens" in requests.columns
        else np.zeros(arr.size)
    )
    pod_of = np.arange(arr.size) % pods
    lengths = vllm_length_buckets(max_model_len)
    fam: dict[str, tuple[str, list[str]]] = {}

    def add(name: str, kind: str, lines: list[str]) -> None:
        fam.setdefault(name, (kind, []))[1].extend(lines)

    for p in range(pods):
        m = pod_of == p
        labels = {"model_name": model, "engine": "0", "pod": f"vllm-{p}"}
        lab = _label_text(labels)
        a, f, e, s, i, o = arr[m], first[m], fin[m], sched[m], inp[m], out[m]
        tt = times[:, None]
        prompt = ((f <= tt) * i).sum(axis=1)
        frac = np.clip((tt - f) / np.maximum(e - f, 1e-9), 0.0, 1.0)
        gen = np.where(tt >= f, 1.0 + np.floor(frac * (o - 1)), 0.0).sum(axis=1)
        running = ((s <= tt) & (tt < e)).sum(axis=1)
        waiting = ((a <= tt) & (tt < s)).sum(axis=1)
        queries = ((s <= tt) * i).sum(axis=1)
        hits = ((s <= tt) * cached[m]).sum(axis=1)
        for total, values in (
            (PROMPT_TOKENS, prompt),
            (GENERATION_TOKENS, gen),
            (PREFIX_QUERIES, queries),
            (PREFIX_HITS, hits),
        ):
            add(total.removesuffix("_total"), "counter", _samples(total, lab, values, stamp))
        add(RUNNING, "gauge", _samples(RUNNING, lab, running, stamp, ""))
        add(WAITING, "gauge", _samples(WAITING, lab, waiting, stamp, ""))
        if kv_tokens > 0:
            live = (s <= tt) & (tt < e)
            held = (live * (i + np.where(tt >= f, 1.0 + frac * (o - 1), 0.0))).sum(axis=1) / kv_tokens
            add(kv_name, "gauge", _samples(kv_name, lab, np.minimum(held, 1.0), stamp, ".6f"))
        hists = (
            (TTFT_NAME, VLLM_TTFT_BUCKETS_S, f, f - a),
            (E2E_NAME, VLLM_E2E_BUCKETS_S, e, e - a),
            (REQUEST_PROMPT, lengths, e, i),
            (REQUEST_GENERATION, lengths, e, o),
        )
        for name, bounds, when, value in hists:
            add(name, "histogram", _observed(name, bounds, when, value, times, labels, stamp))
        # one inter-token latency per token after the first, at the request's mean, observed as each
        # token comes out (evenly between the first token and the finish)
        itl = (e - f) / np.maximum(o - 1.0, 1.0)
        seen = (o - 1.0) * frac  # tokens after the first out by each scrape
        add(
            itl_name,
            "histogram",
            _histogram(
                itl_name,
                labels,
                VLLM_ITL_BUCKETS_S,
                _weighted_below(seen, itl),
                seen.sum(axis=1),
                (seen * itl).sum(axis=1),
                stamp,
            ),
        )
        if server:
            info = _label_text({**labels, **server})
            add(
                CACHE_CONFIG,
                "gauge",
                _samples(CACHE_CONFIG, info, np.ones(times.size, dtype=np.int64), stamp, ""),
            )
    text: list[str] = []
    for name, (kind, lines) in fam.items():
        text += [f"# TYPE {name} {kind}", *lines]
    return "\n".join([*text, "# EOF"]) + "\n"

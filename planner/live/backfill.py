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

from collections.abc import Mapping, Sequence

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


def _hist_lines(
    name: str,
    bounds: Sequence[float],
    obs_t: NDArray[np.float64],
    obs_v: NDArray[np.float64],
    times: NDArray[np.float64],
    labels: dict[str, str],
    stamp: NDArray[np.float64],
    weight: NDArray[np.float64] | None = None,
) -> list[str]:
    """A histogram's cumulative series at each scrape: observation ``i`` of value ``obs_v[i]`` at
    ``obs_t[i]``, counted ``weight[i]`` times (default once)."""
    w = np.ones(obs_t.size) if weight is None else weight
    order = np.argsort(obs_t)
    t_sorted = obs_t[order]
    v_sorted = obs_v[order]
    w_sorted = w[order]
    seen = np.searchsorted(t_sorted, times, side="right")  # observations at or before each scrape
    csum = np.concatenate([[0.0], np.cumsum(v_sorted * w_sorted)])
    ccount = np.concatenate([[0.0], np.cumsum(w_sorted)])
    lines: list[str] = []
    for le in (*bounds, float("inf")):
        mark = np.concatenate([[0.0], np.cumsum((v_sorted <= le) * w_sorted)])
        lab = _label_text({**labels, "le": "+Inf" if le == float("inf") else f"{le:g}"})
        lines += [f"{name}_bucket{lab} {mark[k]:.0f} {stamp[i]:.3f}" for i, k in enumerate(seen)]
    lab = _label_text(labels)
    lines += [f"{name}_count{lab} {ccount[k]:.0f} {stamp[i]:.3f}" for i, k in enumerate(seen)]
    lines += [f"{name}_sum{lab} {csum[k]:.6g} {stamp[i]:.3f}" for i, k in enumerate(seen)]
    return lines


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
        add(
            PROMPT_TOKENS.removesuffix("_total"),
            "counter",
            [f"{PROMPT_TOKENS}{lab} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(prompt)],
        )
        add(
            GENERATION_TOKENS.removesuffix("_total"),
            "counter",
            [f"{GENERATION_TOKENS}{lab} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(gen)],
        )
        queries = ((s <= tt) * i).sum(axis=1)
        hits = ((s <= tt) * cached[m]).sum(axis=1)
        add(
            PREFIX_QUERIES.removesuffix("_total"),
            "counter",
            [f"{PREFIX_QUERIES}{lab} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(queries)],
        )
        add(
            PREFIX_HITS.removesuffix("_total"),
            "counter",
            [f"{PREFIX_HITS}{lab} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(hits)],
        )
        add(RUNNING, "gauge", [f"{RUNNING}{lab} {v} {stamp[k]:.3f}" for k, v in enumerate(running)])
        add(WAITING, "gauge", [f"{WAITING}{lab} {v} {stamp[k]:.3f}" for k, v in enumerate(waiting)])
        if kv_tokens > 0:
            live = (s <= tt) & (tt < e)
            held = (live * (i + np.where(tt >= f, 1.0 + frac * (o - 1), 0.0))).sum(axis=1) / kv_tokens
            add(
                kv_name,
                "gauge",
                [f"{kv_name}{lab} {min(v, 1.0):.6f} {stamp[k]:.3f}" for k, v in enumerate(held)],
            )
        hists = (
            (TTFT_NAME, VLLM_TTFT_BUCKETS_S, f, f - a),
            (E2E_NAME, VLLM_E2E_BUCKETS_S, e, e - a),
            (REQUEST_PROMPT, lengths, e, i),
            (REQUEST_GENERATION, lengths, e, o),
        )
        for name, bounds, when, value in hists:
            add(name, "histogram", _hist_lines(name, bounds, when, value, times, labels, stamp))
        # one inter-token latency per token after the first, at the request's mean, observed as each
        # token comes out (evenly between the first token and the finish)
        itl = (e - f) / np.maximum(o - 1.0, 1.0)
        seen = (o - 1.0) * frac  # tokens after the first out by each scrape
        lines: list[str] = []
        for le in (*VLLM_ITL_BUCKETS_S, float("inf")):
            lab_le = _label_text({**labels, "le": "+Inf" if le == float("inf") else f"{le:g}"})
            cum = (seen * (itl <= le)).sum(axis=1)
            lines += [f"{itl_name}_bucket{lab_le} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(cum)]
        lines += [f"{itl_name}_count{lab} {v:.0f} {stamp[k]:.3f}" for k, v in enumerate(seen.sum(axis=1))]
        lines += [
            f"{itl_name}_sum{lab} {v:.6g} {stamp[k]:.3f}" for k, v in enumerate((seen * itl).sum(axis=1))
        ]
        add(itl_name, "histogram", lines)
        if server:
            info = _label_text({**labels, **server})
            add(CACHE_CONFIG, "gauge", [f"{CACHE_CONFIG}{info} 1 {stamp[k]:.3f}" for k in range(times.size)])
    text: list[str] = []
    for name, (kind, lines) in fam.items():
        text += [f"# TYPE {name} {kind}", *lines]
    return "\n".join([*text, "# EOF"]) + "\n"

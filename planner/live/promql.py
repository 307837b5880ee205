"""A small client of Prometheus' HTTP API that reads one vLLM pool's metrics with PromQL.

Why our own: the autoscaler needs a dozen instant queries (``GET /api/v1/query``), nothing more, and the
standard library does that without another dependency. The reader accepts vLLM's old and new names,
preferring the new one where a replica exposes both:

* the gauges come in one query (``{__name__=~"vllm:num_requests_running|...|vllm:gpu_cache_usage_perc"}``),
  one evaluation, so replicas coming and going between queries cannot look like missing series;
* histograms join the names with PromQL ``or``, which keeps the left side's series and adds the right
  side's only for label sets the left lacks (set operators ignore ``__name__`` when matching)::

    sum by (pod, le) (vllm:inter_token_latency_seconds_bucket{sel}
                      or vllm:time_per_output_token_seconds_bucket{sel})

Counters and histogram buckets are read per replica (``sum by (pod)``), not summed over the pool: when a
replica goes away its counters leave the sum, and only per-replica values let the controller tell that
from a decrease (:class:`planner.live.controller.CounterBook`).

>>> selector_text((("model_name", 'my "m"'), ("namespace", "prod")))
'{model_name="my \\\\"m\\\\"",namespace="prod"}'
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.live.config import PoolSpec
from planner.live.engines import ENGINE_METRICS, Engine
from traces.errors import InputError

_VLLM = ENGINE_METRICS[Engine.VLLM]
KV_NAMES: tuple[str, ...] = _VLLM.kv
"""New and old name of vLLM's KV-cache usage gauge (0..1)."""
ITL_NAMES: tuple[str, ...] = _VLLM.itl
"""New and old name of vLLM's inter-token latency histogram."""
TTFT_NAME = _VLLM.ttft[0]
RUNNING = _VLLM.running
WAITING = _VLLM.waiting
PROMPT_TOKENS = _VLLM.prompt_tokens
GENERATION_TOKENS = _VLLM.generation_tokens

REQUEST_PROMPT = "vllm:request_prompt_tokens"
"""Histogram of prompt lengths, observed when a request finishes."""
REQUEST_GENERATION = "vllm:request_generation_tokens"
"""Histogram of generated lengths, observed when a request finishes."""
E2E_NAME = "vllm:e2e_request_latency_seconds"
"""Histogram of arrival-to-finish latency, observed when a request finishes."""
CACHE_CONFIG = "vllm:cache_config_info"
"""Constant-1 gauge whose labels carry the KV-cache configuration (block_size, num_gpu_blocks, ...)."""
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"

COUNTER_KEYS: tuple[str, ...] = ("prompt_tokens", "generation_tokens", "ttft_sum", "ttft_count", "itl_sum",
                                 "itl_count")
"""Counter keys of :attr:`PoolReading.counters` besides the histogram buckets (``ttft_le:<le>``,
``itl_le:<le>``)."""


class PromQueryError(InputError):
    """Prometheus could not be asked, or refused the query (unreachable, HTTP error, bad PromQL)."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant-vector result: its labels, the evaluation time and the value."""

    labels: tuple[tuple[str, str], ...]
    t_s: float
    value: float

    def label(self, name: str) -> str:
        """A label's value (``""`` when absent, as in PromQL)."""
        return next((v for k, v in self.labels if k == name), "")


Fetch = Callable[[str, float], bytes]
"""``fetch(url, timeout_s) -> body``; injected so tests and the CLI can swap the transport."""


def urllib_fetch(url: str, timeout_s: float) -> bytes:
    """GET ``url`` with the standard library; an HTTP error's body is returned (Prometheus explains there).

    Raises:
        PromQueryError: connection refused, DNS failure or timeout.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return body
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PromQueryError(f"cannot reach Prometheus: {reason}", path=url.split("/api/", maxsplit=1)[0],
                             field="--prometheus-url", expected="a reachable Prometheus server") from None


@dataclass(frozen=True)
class PromClient:
    """Instant queries against ``base_url`` (e.g. ``http://prometheus:9090``).

    Attributes:
        base_url: the server's root URL.
        timeout_s: per-request timeout.
        fetch: the transport (default :func:`urllib_fetch`).
    """

    base_url: str
    timeout_s: float = 5.0
    fetch: Fetch = urllib_fetch

    def api(self, endpoint: str, args: dict[str, str], what: str) -> dict[str, Any]:
        """``GET /api/v1/<endpoint>``: the answer's ``data``.

        Raises:
            PromQueryError: unreachable server, non-JSON answer, or a Prometheus error (``what`` failed).
        """
        url = self.base_url.rstrip("/") + f"/api/v1/{endpoint}?" + urllib.parse.urlencode(args)
        raw = self.fetch(url, self.timeout_s)
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PromQueryError("answer is not JSON", path=self.base_url, field="--prometheus-url",
                                 expected=f"a Prometheus server (its /api/v1/{endpoint})") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            err = doc.get("error", "unknown error") if isinstance(doc, dict) else "unknown error"
            raise PromQueryError(f"{what} failed: {err}", path=self.base_url, field="query",
                                 expected="valid PromQL" if endpoint == "query"
                                 else "valid PromQL over a range Prometheus accepts")
        data: dict[str, Any] = doc.get("data") or {}
        return data

    def query(self, expr: str) -> list[Sample]:
        """Evaluate ``expr`` now; an instant vector (or a scalar, as one unlabelled sample).

        Raises:
            PromQueryError: unreachable server, non-JSON answer, or a Prometheus error (bad PromQL).
        """
        data = self.api("query", {"query": expr}, f"query {expr!r}")
        kind = data.get("resultType")
        res = data.get("result")
        if kind == "scalar" and isinstance(res, list):
            return [Sample((), float(res[0]), float(res[1]))]
        if kind != "vector" or not isinstance(res, list):
            raise PromQueryError(f"query {expr!r} returned {kind}", path=self.base_url, field="query",
                                 expected="an instant vector")
        out = []
        for s in res:
            t, v = s["value"]
            out.append(Sample(tuple(sorted(s.get("metric", {}).items())), float(t), float(v)))
        return out


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and its samples (Unix seconds, values), in time order."""

    labels: tuple[tuple[str, str], ...]
    t_s: tuple[float, ...]
    values: tuple[float, ...]

    def label(self, name: str) -> str:
        """A label's value (``""`` when absent, as in PromQL)."""
        return next((v for k, v in self.labels if k == name), "")


def query_range(client: PromClient, expr: str, start_s: float, end_s: float,
                step_s: float) -> list[RangeSeries]:
    """Evaluate ``expr`` at every ``step_s`` from ``start_s`` to ``end_s`` (``GET /api/v1/query_range``).

    Raises:
        PromQueryError: unreachable server, non-JSON answer, or a Prometheus error (bad PromQL, too many
            points: Prometheus refuses more than 11,000 per series).
    """
    args = {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
    data = client.api("query_range", args, f"range query {expr!r}")
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise PromQueryError(f"range query {expr!r} returned {data.get('resultType')}", path=client.base_url,
                             field="query", expected="a range vector")
    out = []
    for s in data["result"]:
        pts = s.get("values", [])
        out.append(RangeSeries(tuple(sorted(s.get("metric", {}).items())), tuple(float(t) for t, _ in pts),
                               tuple(float(v) for _, v in pts)))
    return out


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def selector_text(selector: tuple[tuple[str, str], ...]) -> str:
    """PromQL label matchers ``{k="v",...}`` with values escaped."""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in selector) + "}"


@dataclass(frozen=True)
class PoolReading:
    """One read of a pool's vLLM metrics (per replica; nothing summed that could hide a reset).

    Attributes:
        pool: the pool's name.
        eval_s: when Prometheus evaluated the queries (Unix seconds).
        newest_sample_s: timestamp of the newest ``num_requests_running`` sample (None: no series).
        pods: replica names (value of the pool's replica label), sorted.
        running, waiting, kv_cache_usage_perc: per pod (NaN where a pod lacks the series).
        counters: ``(key, pod, value)`` for the keys in :data:`COUNTER_KEYS` plus ``ttft_le:<le>`` and
            ``itl_le:<le>`` histogram buckets (cumulative since the pod started).
        ttft_buckets_s, itl_buckets_s: the finite ``le`` bounds seen, ascending.
        names: the metric names the pool exposes for the renamed series (new or old).
        spec_replicas: the Deployment's replicas from ``replicas_query`` (None without one).
        pending: requests queued at the gateway from ``pending_query`` (0 without one).
        ready_replicas: ready replicas from ``ready_query`` (None without one).
    """

    pool: str
    eval_s: float
    newest_sample_s: float | None
    pods: tuple[str, ...]
    running: tuple[float, ...]
    waiting: tuple[float, ...]
    kv_cache_usage_perc: tuple[float, ...]
    counters: tuple[tuple[str, str, float], ...] = ()
    ttft_buckets_s: tuple[float, ...] = ()
    itl_buckets_s: tuple[float, ...] = ()
    names: tuple[str, ...] = ()
    spec_replicas: float | None = None
    pending: float = 0.0
    ready_replicas: float | None = None


def _hist(client: PromClient, base: tuple[str, ...] | str, sel: str, label: str, key: str,
          out: list[tuple[str, str, float]]) -> tuple[float, ...]:
    """Bucket, sum and count counters of one histogram (old/new names joined by ``or``) per pod."""
    names = (base,) if isinstance(base, str) else base
    les: set[float] = set()
    for suffix in ("bucket", "sum", "count"):
        expr = " or ".join(f"{n}_{suffix}{sel}" for n in names)
        group = f"{label}, le" if suffix == "bucket" else label
        for s in client.query(f"sum by ({group}) ({expr})"):
            if suffix == "bucket":
                le = float(s.label("le"))
                if math.isinf(le):
                    continue
                les.add(le)
                out.append((f"{key}_le:{le:g}", s.label(label), s.value))
            else:
                out.append((f"{key}_{suffix}", s.label(label), s.value))
    return tuple(sorted(les))


def read_pool(client: PromClient, pool: PoolSpec) -> PoolReading:
    """Read one pool's series from Prometheus, under its engine's names (:mod:`planner.live.engines`).

    Raises:
        PromQueryError: Prometheus unreachable or a query refused.
    """
    sel = selector_text(pool.selector)
    lab = pool.replica_label
    # One query for every gauge: one evaluation, so a replica that comes or goes between two queries cannot
    # look like a replica with a missing series.
    m = ENGINE_METRICS[Engine(pool.engine)]
    wanted = "|".join(re.escape(n) for n in (m.running, m.waiting, *m.kv))
    gauges = client.query("{" + f'__name__=~"{wanted}",' + selector_text(pool.selector)[1:])
    by_name: dict[str, dict[str, float]] = {}
    for s in gauges:
        by_name.setdefault(s.label("__name__"), {})[s.label(lab)] = s.value
    running = by_name.get(m.running, {})
    wait = by_name.get(m.waiting, {})
    kv: dict[str, float] = {}
    for name in reversed(m.kv):  # the first (newer) name wins per replica
        kv.update(by_name.get(name, {}))
    run = [s for s in gauges if s.label("__name__") == m.running]
    stamps = client.query(f"timestamp({m.running}{sel})")
    pods = tuple(sorted(running))
    counters: list[tuple[str, str, float]] = []
    for key, name in (("prompt_tokens", m.prompt_tokens), ("generation_tokens", m.generation_tokens)):
        if not name:
            continue
        for s in client.query(f"sum by ({lab}) ({name}{sel})"):
            counters.append((key, s.label(lab), s.value))
    ttft_b = _hist(client, m.ttft, sel, lab, "ttft", counters) if m.ttft else ()
    itl_b = _hist(client, m.itl, sel, lab, "itl", counters) if m.itl else ()
    names = tuple(n for n in m.kv if n in by_name)
    spec = None
    if pool.replicas_query:
        r = client.query(pool.replicas_query)
        spec = sum(s.value for s in r) if r else None
    pending = 0.0
    if pool.pending_query:
        pending = sum(s.value for s in client.query(pool.pending_query))
    ready = None
    if pool.ready_query:
        rr = client.query(pool.ready_query)
        ready = sum(s.value for s in rr) if rr else None
    nan = float("nan")
    return PoolReading(
        pool=pool.name,
        eval_s=max((s.t_s for s in run), default=max((s.t_s for s in stamps), default=nan)),
        newest_sample_s=max((s.value for s in stamps), default=None),
        pods=pods,
        running=tuple(running[p] for p in pods),
        waiting=tuple(wait.get(p, nan) for p in pods),
        kv_cache_usage_perc=tuple(kv.get(p, nan) for p in pods),
        counters=tuple(counters),
        ttft_buckets_s=ttft_b,
        itl_buckets_s=itl_b,
        names=names,
        spec_replicas=spec,
        pending=pending,
        ready_replicas=ready,
    )

"""The types every autoscaling policy shares: what it sees (:class:`ScalingContext`) and what it returns.

Why a module of its own: the policies (HPA, KEDA, Ray Serve, Dynamo, WVA, ours) import these types, and
:mod:`planner.autoscale.context` imports the policies to build the :data:`POLICIES` map; keeping the types
here breaks that cycle.

The context carries exactly what a live autoscaler can read from vLLM's Prometheus endpoint (the metric
names of ``vllm/v1/metrics/loggers.py``) plus the deployment's own replica counts, so the
same policy code runs against the replay simulator and, later, against live Prometheus data.

>>> ctx = ScalingContext(now_s=0.0, replicas=2, running=(3, 1), waiting=(0, 2),
...                      kv_cache_usage_perc=(0.2, 0.1))
>>> in_system(ctx), ready_count(ctx)
(6, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class ScalingContext:
    """What a policy sees at a control tick.

    Per-replica tuples have one entry per *listed* replica (a pod that exists: serving, or started but not
    yet ready); replicas asked for but not yet listed are counted in ``starting``.

    Attributes:
        now_s: the tick's time (trace or injected clock; policies never read a wall clock).
        replicas: the replica count currently asked for (Kubernetes ``spec.replicas``): listed plus starting.
        running: ``vllm:num_requests_running`` per listed replica.
        waiting: ``vllm:num_requests_waiting`` per listed replica.
        kv_cache_usage_perc: ``vllm:kv_cache_usage_perc`` (0..1) per listed replica.
        ttft_buckets_s: upper bounds (``le``) of the ``vllm:time_to_first_token_seconds`` histogram.
        ttft_counts: cumulative counts per bucket (Prometheus ``_bucket``: observations <= ``le``,
            since start).
        itl_buckets_s: upper bounds of ``vllm:inter_token_latency_seconds``.
        itl_counts: its cumulative counts per bucket.
        state: the state the policy returned last time (None on the first tick). Policies accept only their
            own state type and start fresh on anything else.
        ready: per listed replica, whether it passed readiness (``()``: all ready). Not-ready replicas are
            Kubernetes' "unready pods" (pending, loading weights).
        scraped: per listed replica, whether its metrics were read this tick (``()``: all were). A ready
            replica whose scrape failed is a "missing metrics" pod in HPA's terms.
        starting: replicas asked for that are not listed yet (node provisioning, image pull).
        pending_at_router: requests held at the gateway because no replica can take them (the only load
            signal when the deployment is at zero replicas).
        requests_total: counter of requests received (frontend ``requests_total``).
        prompt_tokens_total: ``vllm:prompt_tokens_total``.
        generation_tokens_total: ``vllm:generation_tokens_total``.
        ttft_sum_s, ttft_count: the TTFT histogram's ``_sum`` and ``_count``.
        itl_sum_s, itl_count: the ITL histogram's ``_sum`` and ``_count``.
    """

    now_s: float
    replicas: int
    running: tuple[int, ...]
    waiting: tuple[int, ...]
    kv_cache_usage_perc: tuple[float, ...]
    ttft_buckets_s: tuple[float, ...] = ()
    ttft_counts: tuple[int, ...] = ()
    itl_buckets_s: tuple[float, ...] = ()
    itl_counts: tuple[int, ...] = ()
    state: object | None = None
    ready: tuple[bool, ...] = ()
    scraped: tuple[bool, ...] = ()
    starting: int = 0
    pending_at_router: int = 0
    requests_total: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    ttft_sum_s: float = 0.0
    ttft_count: int = 0
    itl_sum_s: float = 0.0
    itl_count: int = 0


@dataclass(frozen=True)
class ScalingDecision(Generic[S]):
    """The desired replica count and the policy's next state (its own frozen type)."""

    desired_replicas: int
    state: S


PolicyFn = Callable[[ScalingContext], ScalingDecision[Any]]
"""A policy: a pure function of the context (parameters bound with ``functools.partial``)."""


def own_state(ctx: ScalingContext, cls: type[T], fresh: Callable[[], T]) -> T:
    """The policy's previous state when ``ctx.state`` is of its type, else a fresh one.

    Why: the simulator (and a live exporter) hands back whatever the last decision returned; a policy
    swapped in mid-run, or the first tick's ``None``, must start clean rather than misread another
    policy's state.
    """
    return ctx.state if isinstance(ctx.state, cls) else fresh()


def is_ready(ctx: ScalingContext, i: int) -> bool:
    """Whether listed replica ``i`` passed readiness."""
    return bool(ctx.ready[i]) if ctx.ready else True


def is_scraped(ctx: ScalingContext, i: int) -> bool:
    """Whether listed replica ``i``'s metrics were read this tick."""
    return bool(ctx.scraped[i]) if ctx.scraped else True


def ready_count(ctx: ScalingContext) -> int:
    """Listed replicas that are ready (serving)."""
    return sum(1 for i in range(len(ctx.running)) if is_ready(ctx, i))


def in_system(ctx: ScalingContext) -> int:
    """Requests running or waiting on any replica, plus those held at the router."""
    return sum(ctx.running) + sum(ctx.waiting) + ctx.pending_at_router


def clamp(n: int, lo: int, hi: int) -> int:
    """``n`` bounded to ``[lo, hi]``."""
    return max(lo, min(hi, n))

"""The live autoscaler: the simulator's policies on Prometheus readings, behind guards, on a clock.

The core is one pure function per pool and tick::

    step(state, reading, now_s, *, pool, stale_after_s) -> (state, decision)

It calls the SAME policy function as the simulator (``POLICIES[name]`` bound to the pool's parameters in
:mod:`planner.live.config`), on the same :class:`~planner.contracts.scaling.ScalingContext`, then applies the
guards a live cluster needs and a simulator does not:

1. **input checks**: a read that is missing (Prometheus unreachable, no series while replicas should
   exist, a replica lacking a series), stale (newest sample older than ``stale_after_s``) or absurd
   (negative, NaN or infinite values, KV usage above 1.05, more replicas reported than ``max_replicas``)
   does not reach the policy: the last decision is held, ``fleetwise_input_healthy`` drops to 0 and
   ``fleetwise_bad_input_total{reason}`` counts it. Holding never moves towards zero: with no previous
   decision the desired series is simply not exported (KEDA/HPA then keep the current scale);
2. **bounds**: ``[min_replicas, max_replicas]`` of the pool;
3. **ramp limits**: at most ``max_step_up`` more / ``max_step_down`` fewer replicas than the previous
   decision per tick, always (even when the policy asks for a jump).

Counters and histogram buckets come per replica; :class:`CounterBook` turns them into pool totals that
never go backwards when a replica leaves or restarts (Prometheus' ``increase`` logic, per replica), so
rate-based policies (MPC, Dynamo) see the monotone counters they see in the simulator.

:class:`Controller` is the runner: an injected clock, one tick every ``interval_s``, each tick's result
published as an exporter :class:`~planner.live.exporter.Snapshot`.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from planner.contracts.scaling import ScalingContext
from planner.live.config import LiveConfig, PoolSpec
from planner.live.exporter import (
    Count,
    Current,
    Desired,
    PodValue,
    PoolValue,
    Snapshot,
    SnapshotHolder,
    Solve,
)
from planner.live.promql import PoolReading, PromClient, PromQueryError, read_pool
from planner.live.replica_health import ReplicaHealth, replica_health

KV_MAX = 1.05
"""KV-cache usage above this is absurd (vLLM reports a fraction in 0..1; a little slack for rounding)."""

POD_FORGET_S = 900.0
"""A replica's last counter values are kept this long after it was last seen (a scrape gap must not make
its whole history count again when it reappears)."""


class BadInput(StrEnum):
    """Why a read was rejected (the ``reason`` label of ``fleetwise_bad_input_total``)."""

    UNREACHABLE = "unreachable"
    MISSING = "missing"
    STALE = "stale"
    ABSURD = "absurd"
    POLICY_ERROR = "policy_error"
    READ_ERROR = "read_error"
    """Reading the pool raised something other than a Prometheus query error (a malformed answer)."""
    INTERNAL_ERROR = "internal_error"
    """The tick itself failed (a bug): the last decision is held and the loop goes on."""


@dataclass(frozen=True)
class CounterBook:
    """Monotone pool totals from per-replica counters.

    Attributes:
        last: ``(key, pod, value, seen_s)``: each replica's last raw value and when it was seen.
        totals: ``(key, total)``: the pool's cumulative count.
    """

    last: tuple[tuple[str, str, float, float], ...] = ()
    totals: tuple[tuple[str, float], ...] = ()

    def total(self, key: str) -> float:
        """The pool total of ``key`` (0 when never seen)."""
        return next((v for k, v in self.totals if k == key), 0.0)


def accumulate(book: CounterBook, counters: tuple[tuple[str, str, float], ...], now_s: float) -> CounterBook:
    """Add one read's per-replica counters to the book.

    The first read sets the totals to the sum over replicas (counts since they started, as the simulator's
    counters). Afterwards a replica adds its increase; a value below its last one is a restart and adds the
    whole new value; a replica never seen before adds its whole value (it started since the last read).

    >>> b = accumulate(CounterBook(), (("gen", "a", 10.0), ("gen", "b", 5.0)), 0.0)
    >>> b = accumulate(b, (("gen", "a", 12.0),), 1.0)          # b left: the total does not drop
    >>> b = accumulate(b, (("gen", "a", 1.0), ("gen", "c", 3.0)), 2.0)  # a restarted, c is new
    >>> b.total("gen")
    21.0
    """
    first = not book.last
    last = {(k, p): (v, t) for k, p, v, t in book.last if now_s - t <= POD_FORGET_S}
    totals = dict(book.totals)
    for k, p, v in counters:
        prev = last.get((k, p))
        if prev is None:
            inc = v
        elif v >= prev[0]:
            inc = v - prev[0]
        else:
            inc = v
        totals[k] = totals.get(k, 0.0) + (v if first else inc)
        last[(k, p)] = (v, now_s)
    return CounterBook(last=tuple((k, p, v, t) for (k, p), (v, t) in sorted(last.items())),
                       totals=tuple(sorted(totals.items())))


@dataclass(frozen=True)
class PoolState:
    """What the controller remembers about one pool between ticks.

    Attributes:
        desired: the last decision exported (None: none yet).
        policy_state: the policy's own state from its last decision.
        book: monotone counter totals.
        healthy: whether the last read passed the checks.
        staleness_s: age of the newest sample at the last read (NaN: none seen).
        current: replicas listed (exposing metrics) at the last good read.
        bad_input: counts per :class:`BadInput` reason.
        actions_up, actions_down: changes of ``desired``.
        last_reason: why the last read was rejected (None when healthy).
        replicas: per-pod health from the straggler detector (:mod:`planner.live.replica_health`).
    """

    desired: int | None = None
    policy_state: object | None = None
    book: CounterBook = field(default_factory=CounterBook)
    healthy: bool = False
    staleness_s: float = float("nan")
    current: int | None = None
    bad_input: tuple[tuple[str, int], ...] = ()
    actions_up: int = 0
    actions_down: int = 0
    last_reason: BadInput | None = None
    replicas: ReplicaHealth = field(default_factory=ReplicaHealth)

    def bad_count(self, reason: BadInput) -> int:
        """Reads rejected for ``reason`` so far."""
        return next((n for r, n in self.bad_input if r == reason.value), 0)


@dataclass(frozen=True)
class LiveDecision:
    """One pool's outcome of a tick.

    Attributes:
        pool: the pool.
        desired: replicas to export (None: nothing decided yet, the series is left out).
        policy_desired: what the policy asked before bounds and ramp (None when it was not called).
        held: the last decision was kept because the input was bad.
        reason: why, when held.
        ramp_limited: the ramp limit cut the change.
    """

    pool: str
    desired: int | None
    policy_desired: int | None = None
    held: bool = False
    reason: BadInput | None = None
    ramp_limited: bool = False


def _finite_nonneg(xs: tuple[float, ...]) -> bool:
    return all(math.isfinite(x) and x >= 0 for x in xs)


def check_reading(reading: PoolReading, state: PoolState, now_s: float, *, pool: PoolSpec,
                  stale_after_s: float, max_requests: float = math.inf) -> BadInput | None:
    """Why ``reading`` must not reach the policy (None: it may).

    ``max_requests`` is the plausibility limit on one replica's running + waiting requests (a scrape
    that reports 1e12 waiting requests is broken, not busy).

    >>> from planner.live.config import parse_config
    >>> p = parse_config({"pools": {"a": {"selector": {"m": "x"}, "max_replicas": 4}}}, source="-").pools[0]
    >>> r = PoolReading("a", 100.0, 99.0, ("p0",), (3.0,), (1.0,), (1.2,))
    >>> check_reading(r, PoolState(), 100.0, pool=p, stale_after_s=3.0)
    <BadInput.ABSURD: 'absurd'>
    """
    n = len(reading.pods)
    if n == 0:
        if state.desired == 0 and reading.spec_replicas in (None, 0.0):
            return None  # scaled to zero on purpose: nothing to read, the gateway queue is the signal
        return BadInput.MISSING
    if any(math.isnan(x) for x in reading.waiting + reading.kv_cache_usage_perc):
        return BadInput.MISSING
    if reading.newest_sample_s is None or now_s - reading.newest_sample_s > stale_after_s:
        return BadInput.STALE
    if reading.ready_replicas is not None and math.isfinite(reading.ready_replicas) and (
            n < reading.ready_replicas):
        return BadInput.MISSING  # a partial scrape: the missing replicas' load is unknown, not zero
    values = reading.running + reading.waiting + reading.kv_cache_usage_perc + (reading.pending,)
    if not _finite_nonneg(values) or not _finite_nonneg(tuple(v for _, _, v in reading.counters)):
        return BadInput.ABSURD
    if max(reading.kv_cache_usage_perc) > KV_MAX:
        return BadInput.ABSURD
    if any(r + w > max_requests for r, w in zip(reading.running, reading.waiting, strict=False)):
        return BadInput.ABSURD
    if n > pool.max_replicas or (reading.spec_replicas is not None
                                 and not 0 <= reading.spec_replicas <= pool.max_replicas):
        return BadInput.ABSURD
    return None


def explain(reading: PoolReading | None, reason: BadInput, now_s: float, *, stale_after_s: float,
            max_requests: float = math.inf) -> str:
    """What in ``reading`` made it ``reason``: the pod, series and value, for the log line.

    >>> r = PoolReading("a", 100.0, 90.0, ("p0", "p1"), (3.0, 2.0), (1.0, 9e12), (0.2, 0.3))
    >>> explain(r, BadInput.ABSURD, 100.0, stale_after_s=3.0, max_requests=1e5)
    'pod p1: running + waiting = 9e+12 > 100000'
    >>> explain(r, BadInput.STALE, 100.0, stale_after_s=3.0)
    'newest sample 10 s old (limit 3 s)'
    """
    if reading is None:
        return ""
    pods = reading.pods
    if reason is BadInput.MISSING:
        if not pods:
            return "no replica exposes vllm:* series"
        if reading.ready_replicas is not None and len(pods) < reading.ready_replicas:
            return f"{len(pods)} replicas expose vllm:* series of {reading.ready_replicas:g} ready"
        for name, vals in (("waiting", reading.waiting),
                           ("kv_cache_usage_perc", reading.kv_cache_usage_perc)):
            for pod, v in zip(pods, vals, strict=False):
                if math.isnan(v):
                    return f"pod {pod}: no {name} sample"
        return ""
    if reason is BadInput.STALE:
        if reading.newest_sample_s is None:
            return "no sample timestamp"
        return f"newest sample {now_s - reading.newest_sample_s:.0f} s old (limit {stale_after_s:g} s)"
    if reason is BadInput.ABSURD:
        for name, vals in (("running", reading.running), ("waiting", reading.waiting),
                           ("kv_cache_usage_perc", reading.kv_cache_usage_perc)):
            for pod, v in zip(pods, vals, strict=False):
                if not math.isfinite(v) or v < 0 or (name == "kv_cache_usage_perc" and v > KV_MAX):
                    return f"pod {pod}: {name} = {v:g}"
        for pod, r, w in zip(pods, reading.running, reading.waiting, strict=False):
            if r + w > max_requests:
                return f"pod {pod}: running + waiting = {r + w:g} > {max_requests:g}"
        for key, pod, v in reading.counters:
            if not math.isfinite(v) or v < 0:
                return f"pod {pod}: counter {key} = {v:g}"
        if not (math.isfinite(reading.pending) and reading.pending >= 0):
            return f"pending = {reading.pending:g}"
        return f"{len(pods)} replicas listed, spec {reading.spec_replicas}"
    return ""


def build_context(reading: PoolReading, book: CounterBook, *, replicas: int, now_s: float,
                  policy_state: object | None) -> ScalingContext:
    """The :class:`ScalingContext` a policy sees, from a checked reading and the counter totals.

    ``replicas`` is the count asked for (the Deployment's spec); listed replicas are those exposing
    metrics, all ready (vLLM serves ``/metrics`` only once up), and the rest are ``starting``. The policy's
    replica count is the spec even when more pods are listed: Prometheus lags a scale-down by up to a scrape,
    and a policy that holds "the current count" against the lagging list would undo every scale-down (HPA's
    ``currentReplicas`` is the scale subresource's spec for the same reason).
    ``requests_total`` is the TTFT histogram's count (vLLM has no arrival counter; this counts requests that
    started, which lags arrivals by their TTFT).
    """
    listed = len(reading.pods)
    total = book.total
    return ScalingContext(
        now_s=now_s,
        replicas=replicas,
        running=tuple(round(x) for x in reading.running),
        waiting=tuple(round(x) for x in reading.waiting),
        kv_cache_usage_perc=reading.kv_cache_usage_perc,
        ttft_buckets_s=reading.ttft_buckets_s,
        ttft_counts=tuple(int(total(f"ttft_le:{le:g}")) for le in reading.ttft_buckets_s),
        itl_buckets_s=reading.itl_buckets_s,
        itl_counts=tuple(int(total(f"itl_le:{le:g}")) for le in reading.itl_buckets_s),
        state=policy_state,
        starting=max(0, replicas - listed),
        pending_at_router=round(reading.pending),
        requests_total=int(total("ttft_count")),
        prompt_tokens_total=int(total("prompt_tokens")),
        generation_tokens_total=int(total("generation_tokens")),
        ttft_sum_s=total("ttft_sum"),
        ttft_count=int(total("ttft_count")),
        itl_sum_s=total("itl_sum"),
        itl_count=int(total("itl_count")),
    )


def _bump(counts: tuple[tuple[str, int], ...], key: str) -> tuple[tuple[str, int], ...]:
    d = dict(counts)
    d[key] = d.get(key, 0) + 1
    return tuple(sorted(d.items()))


def _hold(state: PoolState, reading: PoolReading | None, reason: BadInput, now_s: float,
          pool: PoolSpec) -> tuple[PoolState, LiveDecision]:
    desired = state.desired
    if desired is None and reading is not None and reading.spec_replicas is not None and reason is not (
            BadInput.ABSURD) and math.isfinite(reading.spec_replicas):
        # nothing decided yet: hold what the cluster runs, within the bounds (they always apply)
        desired = max(pool.min_replicas, min(pool.max_replicas, int(reading.spec_replicas)))
    stale = (now_s - reading.newest_sample_s if reading is not None and reading.newest_sample_s is not None
             else state.staleness_s)
    st = replace(state, desired=desired, healthy=False, staleness_s=stale,
                 bad_input=_bump(state.bad_input, reason.value), last_reason=reason)
    return st, LiveDecision(pool.name, desired, held=True, reason=reason)


def apply_limits(raw: int, previous: int, pool: PoolSpec) -> tuple[int, bool]:
    """Bounds, then the ramp limit around ``previous``; returns ``(desired, ramp_limited)``.

    >>> from planner.live.config import parse_config
    >>> p = parse_config({"pools": {"a": {"selector": {"m": "x"}, "max_replicas": 20, "max_step_up": 3}}},
    ...                  source="-").pools[0]
    >>> apply_limits(50, 2, p), apply_limits(0, 5, p)
    ((5, True), (4, True))
    """
    bounded = max(pool.min_replicas, min(pool.max_replicas, raw))
    ramped = max(previous - pool.max_step_down, min(previous + pool.max_step_up, bounded))
    return ramped, ramped != bounded


def step(state: PoolState, reading: PoolReading | None, now_s: float, *, pool: PoolSpec,
         stale_after_s: float, max_requests: float = math.inf,
         read_failed: BadInput = BadInput.UNREACHABLE) -> tuple[PoolState, LiveDecision]:
    """One control tick of one pool (pure).

    Args:
        state: the pool's state after the previous tick (``PoolState()`` at start).
        reading: this tick's read, or None when Prometheus could not be asked.
        now_s: the tick's time (injected clock; Unix seconds when comparing with sample timestamps).
        pool: the pool's frozen config with its bound policy.
        stale_after_s: samples older than this are stale.
        max_requests: plausibility limit on one replica's running + waiting requests.
        read_failed: the reason recorded when ``reading`` is None.

    Returns:
        The next state and the decision (held on bad input).
    """
    if reading is None:
        return _hold(state, None, read_failed, now_s, pool)
    bad = check_reading(reading, state, now_s, pool=pool, stale_after_s=stale_after_s,
                        max_requests=max_requests)
    if bad is not None:
        return _hold(state, reading, bad, now_s, pool)
    book = accumulate(state.book, reading.counters, now_s)
    listed = len(reading.pods)
    spec = (int(reading.spec_replicas) if reading.spec_replicas is not None
            else state.desired if state.desired is not None else listed)
    ctx = build_context(reading, book, replicas=spec, now_s=now_s, policy_state=state.policy_state)
    try:
        decision = pool.policy(ctx)
        raw = int(decision.desired_replicas)
    except Exception:  # a policy bug must hold the fleet, not crash the autoscaler
        return _hold(state, reading, BadInput.POLICY_ERROR, now_s, pool)
    previous = state.desired if state.desired is not None else ctx.replicas
    desired, limited = apply_limits(raw, previous, pool)
    up = state.actions_up + (1 if state.desired is not None and desired > state.desired else 0)
    down = state.actions_down + (1 if state.desired is not None and desired < state.desired else 0)
    stale = now_s - reading.newest_sample_s if reading.newest_sample_s is not None else 0.0
    st = replace(state, desired=desired, policy_state=decision.state, book=book, healthy=True,
                 staleness_s=stale, current=listed, actions_up=up, actions_down=down, last_reason=None,
                 replicas=replica_health(state.replicas, reading.counters))
    return st, LiveDecision(pool.name, desired, policy_desired=raw, ramp_limited=limited)


def snapshot(config: LiveConfig, states: dict[str, PoolState], *, durations_s: dict[str, float],
             now_s: float) -> Snapshot:
    """The exporter snapshot of the controller: decisions, observations, health, counters.

    Every ``reason`` and ``direction`` is exported from the start (at 0), so ``rate()``/``increase()`` see
    the first increment.
    """
    desired: list[Desired] = []
    current: list[Current] = []
    stale: list[PoolValue] = []
    healthy: list[PoolValue] = []
    bad: list[Count] = []
    actions: list[Count] = []
    solves: list[Solve] = []
    slow: list[PodValue] = []
    itl: list[PodValue] = []
    for p in config.pools:
        s = states.get(p.name, PoolState())
        flagged = set(s.replicas.slow)
        for pod, v in s.replicas.itl_s:
            slow.append(PodValue(p.name, pod, 1.0 if pod in flagged else 0.0))
            if not math.isnan(v):
                itl.append(PodValue(p.name, pod, v))
        if s.desired is not None:
            desired.append(Desired(p.name, p.role, p.model, p.gpu, float(s.desired)))
        if s.current is not None:
            current.append(Current(p.name, p.role, float(s.current)))
        if not math.isnan(s.staleness_s):
            stale.append(PoolValue(p.name, s.staleness_s))
        healthy.append(PoolValue(p.name, 1.0 if s.healthy else 0.0))
        bad.extend(Count(p.name, r.value, float(s.bad_count(r))) for r in BadInput)
        actions.extend((Count(p.name, "up", float(s.actions_up)),
                        Count(p.name, "down", float(s.actions_down))))
        errors = (BadInput.POLICY_ERROR, BadInput.READ_ERROR, BadInput.INTERNAL_ERROR)
        status = "feasible" if s.healthy else "error" if s.last_reason in errors else "unknown"
        solves.append(Solve(f"{p.policy_name}/{p.name}", status, durations_s.get(p.name), now_s))
    return Snapshot(desired=tuple(desired), current=tuple(current), staleness_s=tuple(stale),
                    healthy=tuple(healthy), bad_input=tuple(bad), scaling_actions=tuple(actions),
                    solves=tuple(solves), replica_slow=tuple(slow), replica_itl_s=tuple(itl))


Reader = Callable[[PoolSpec], PoolReading]
"""``read(pool) -> reading``; raises :class:`~planner.live.promql.PromQueryError` when it cannot."""


class Controller:
    """The runner: reads every pool, steps it, publishes the snapshot; once, or every ``interval_s``.

    Args:
        config: the validated ``pools.yaml``.
        read: how to read a pool (``functools.partial(read_pool, PromClient(url))`` in production).
        clock: Unix time now (injected; the CLI passes ``time.time``).
        holder: where snapshots are published for the exporter.
        log: where warnings go.
    """

    def __init__(self, config: LiveConfig, read: Reader, *, clock: Callable[[], float],
                 holder: SnapshotHolder | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
        self.config = config
        self._read = read
        self._clock = clock
        self.holder = holder or SnapshotHolder()
        self._log = log
        self.states: dict[str, PoolState] = {p.name: PoolState() for p in config.pools}
        self._durations: dict[str, float] = {}
        self._warned: dict[str, set[str]] = {}
        self.last_tick_s: float | None = None
        self.failing_since_s: float | None = None
        self.interval_s: float | None = None

    @classmethod
    def for_prometheus(cls, config: LiveConfig, url: str, *, clock: Callable[[], float],
                       holder: SnapshotHolder | None = None, timeout_s: float = 5.0) -> Controller:
        """A controller reading ``url``'s HTTP API."""
        client = PromClient(url, timeout_s=timeout_s)
        return cls(config, lambda p: read_pool(client, p), clock=clock, holder=holder)

    def tick(self) -> list[LiveDecision]:
        """Read, step and publish every pool once. Never raises: a failing read or step holds the pool's
        last decision with a reason, logged once per distinct error."""
        out = []
        for p in self.config.pools:
            t0 = self._clock()
            failed = BadInput.UNREACHABLE
            try:
                reading: PoolReading | None = self._read(p)
            except PromQueryError as exc:
                self._warn(p.name, f"Prometheus: {exc}")
                reading = None
            except Exception as exc:  # a malformed answer (bad bucket label, truncated body...): hold
                self._warn(p.name, f"reading failed: {type(exc).__name__}: {exc}")
                reading, failed = None, BadInput.READ_ERROR
            now = self._clock()
            try:
                self.states[p.name], d = step(self.states[p.name], reading, now, pool=p,
                                              stale_after_s=self.config.stale_after_s,
                                              max_requests=self.config.max_requests_per_replica,
                                              read_failed=failed)
            except Exception as exc:  # a bug in a tick must not stop the loop: hold, say why
                self._warn(p.name, f"tick failed: {type(exc).__name__}: {exc}")
                reading = None
                self.states[p.name], d = _hold(self.states[p.name], None, BadInput.INTERNAL_ERROR, now, p)
            self._durations[p.name] = self._clock() - t0
            if d.held and d.reason is not None:
                try:
                    why = explain(reading, d.reason, now, stale_after_s=self.config.stale_after_s,
                                  max_requests=self.config.max_requests_per_replica)
                except Exception:  # explaining must not be what breaks the loop
                    why = ""
                self._warn(p.name, f"{d.reason} input{': ' + why if why else ''}, holding {d.desired}",
                           key=f"held:{d.reason}")
            else:
                self._warned.pop(p.name, None)
            out.append(d)
        now = self._clock()
        self.last_tick_s = now
        if all(d.held for d in out):
            self.failing_since_s = now if self.failing_since_s is None else self.failing_since_s
        else:
            self.failing_since_s = None
        self.holder.set(snapshot(self.config, self.states, durations_s=self._durations, now_s=now))
        return out

    def _warn(self, pool: str, message: str, *, key: str | None = None) -> None:
        """Log ``message`` for ``pool`` once per ``key`` (default: the message) while the pool stays
        unhealthy (a healthy tick re-arms it)."""
        seen = self._warned.setdefault(pool, set())
        k = message if key is None else key
        if k not in seen:
            seen.add(k)
            self._log(f"warning: pool {pool}: {message}")

    def health(self, now_s: float) -> tuple[bool, str]:
        """Liveness: ``(ok, reason)``. Fails when no tick ended for three intervals (the loop is stuck or
        dead) or every pool has been held for longer than ``unhealthy_deadline_s`` (a restart may help;
        the alert rule fires either way)."""
        every = self.interval_s or self.config.interval_s
        if self.last_tick_s is None:
            return True, "starting"
        if now_s - self.last_tick_s > 3 * every + 30.0:
            return False, f"no control tick for {now_s - self.last_tick_s:.0f} s"
        held_s = 0.0 if self.failing_since_s is None else now_s - self.failing_since_s
        if held_s > self.config.unhealthy_deadline_s:
            return False, f"every pool held for {held_s:.0f} s"
        return True, "ok"

    def run(self, stop: threading.Event, *, interval_s: float | None = None,
            on_tick: Callable[[list[LiveDecision]], None] | None = None) -> None:
        """Tick every ``interval_s`` (default: the config's) until ``stop`` is set.

        Ticks keep a fixed cadence; a tick that overruns is followed at once by the next, not by a burst.
        """
        every = interval_s or self.config.interval_s
        self.interval_s = every
        next_t = self._clock()
        while not stop.is_set():
            try:
                decisions = self.tick()
                if on_tick is not None:
                    on_tick(decisions)
            except Exception as exc:  # last line of defence: the loop outlives any tick
                self._warn("*", f"control loop: {type(exc).__name__}: {exc}")
            next_t += every
            wait = next_t - self._clock()
            if wait < 0:
                next_t = self._clock()
                wait = 0.0
            if stop.wait(wait):
                break

"""Test support (not shipped): a simulated vLLM fleet behind a real ``/metrics`` endpoint.

The fleet is the closed-loop replay's engine (:mod:`planner.autoscale.engine`, the same numba kernels and
the same replica life cycle as :mod:`planner.autoscale.loop`: cold starts drawn from a seeded
distribution, least-loaded draining on scale-down, a gateway queue while no replica is ready), advanced to
"now" on a clock that may run faster than real time. Prometheus scrapes it like a vLLM Deployment:

* per ready replica (label ``pod``, plus ``model_name``): ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` (or the old ``vllm:gpu_cache_usage_perc``);
  counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:request_success_total``;
  histograms ``vllm:time_to_first_token_seconds`` and ``vllm:inter_token_latency_seconds`` (or the old
  ``vllm:time_per_output_token_seconds``) with ``_bucket``/``_sum``/``_count`` and the bounds of
  :data:`planner.autoscale.loop.TTFT_BUCKETS_S` / :data:`~planner.autoscale.loop.ITL_BUCKETS_S`.
* A replica that starts gets a new pod name, and its counters start at 0; a replica that drains or is
  still loading exposes nothing (vLLM serves ``/metrics`` only while its server is up).

Per-replica counters and histograms are computed from the request records (which pod served each
request): TTFT observations are exact; an inter-token-latency observation is counted when its request
finishes, each at the request's mean inter-token time (the engine keeps the exact ITL histogram only for
the whole fleet).

The replica count comes from outside, as KEDA would apply it: :func:`desired_from_metrics` reads
``fleetwise_desired_replicas`` from fleetwise's ``/metrics``, and :func:`drive` applies it every poll.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import polars as pl
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from planner.autoscale import engine as E  # noqa: N812 (field constants read as E.PI_*)
from planner.autoscale.coldstart import DEFAULT_COLD_START, ColdStartDistribution
from planner.autoscale.loop import ITL_BUCKETS_S, TTFT_BUCKETS_S
from planner.live.names import DESIRED_REPLICAS
from planner.perf.api import ReplicaPerf
from planner.sim.config import EngineConfig
from traces.errors import InputError
from traces.schema import RequestTrace


@dataclass(frozen=True)
class Workload:
    """Requests to replay: arrival times (simulated seconds from 0, sorted) and lengths."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def from_trace(cls, trace: RequestTrace) -> Workload:
        """The requests of a canonical trace."""
        df = trace.df
        return cls(df["arrival_s"].to_numpy().astype(np.float64),
                   df["input_tokens"].to_numpy().astype(np.int64),
                   df["output_tokens"].to_numpy().astype(np.int64))

    @classmethod
    def from_steps(cls, steps: tuple[tuple[float, float], ...], duration_s: float, *, input_tokens: int,
                   output_tokens: int, seed: int, spread: float = 0.5) -> Workload:
        """Poisson arrivals at a piecewise-constant rate.

        Args:
            steps: ``(start_s, requests_per_s)``, ascending starts; the first rate holds from 0.
            duration_s: last arrival before this.
            input_tokens, output_tokens: mean lengths; each request's is uniform in ``mean x (1 +- spread)``.
            seed: seeds arrivals and lengths.
            spread: relative half-width of the length distribution.

        >>> w = Workload.from_steps(((0.0, 2.0), (50.0, 10.0)), 100.0, input_tokens=100, output_tokens=10,
        ...                         seed=1)
        >>> bool(0.15 < (w.arrival_s < 50).sum() / (w.arrival_s >= 50).sum() < 0.25)
        True
        """
        if not steps or any(r < 0 for _, r in steps) or not duration_s > 0:
            raise InputError("bad rate steps", field="steps",
                             expected="(start_s, rate >= 0) pairs, duration > 0")
        if input_tokens < 1 or output_tokens < 1 or not 0 <= spread < 1:
            raise InputError("bad lengths", field="input_tokens/output_tokens/spread",
                             expected="lengths >= 1, 0 <= spread < 1")
        rng = np.random.default_rng(seed)
        parts = []
        bounds = [s for s, _ in steps[1:]] + [duration_s]
        start = 0.0
        for (_, rate), end in zip(steps, bounds, strict=True):
            n = rng.poisson(rate * max(0.0, end - start))
            parts.append(np.sort(rng.uniform(start, end, n)))
            start = end
        arr = np.concatenate(parts) if parts else np.zeros(0)
        n = arr.size

        def lengths(mean: int) -> np.ndarray:
            lo, hi = max(1, round(mean * (1 - spread))), max(1, round(mean * (1 + spread)))
            return rng.integers(lo, hi + 1, n).astype(np.int64)

        return cls(arr, lengths(input_tokens), lengths(output_tokens))


@dataclass(frozen=True)
class FleetConfig:
    """The simulated fleet's options.

    Attributes:
        model_name: the ``model_name`` label (vLLM's served model name).
        initial_replicas: replicas ready at time 0.
        max_replicas: slots (scale-ups beyond are ignored, as a full node pool).
        cold_start: time from scale-up to ready, simulated seconds.
        engine: per-replica scheduler limits.
        seed: seeds the cold-start draws.
        legacy_names: expose vLLM's old names (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``).
    """

    model_name: str = "sim-model"
    initial_replicas: int = 1
    max_replicas: int = 32
    cold_start: ColdStartDistribution = DEFAULT_COLD_START
    engine: EngineConfig = field(default_factory=EngineConfig)
    seed: int = 0
    legacy_names: bool = False


class SimFleet:
    """A fleet of simulated vLLM replicas advanced on demand (not thread-safe by itself: :func:`drive` and
    the collector share :attr:`lock`).

    Args:
        workload: the requests.
        perf: one replica's performance model.
        config: options.

    Raises:
        InputError: the replica has no KV room, or a request asks for no output.
    """

    def __init__(self, workload: Workload, perf: ReplicaPerf, *, config: FleetConfig) -> None:
        if workload.output_tokens.size and int(workload.output_tokens.min()) < 1:
            raise InputError("a request asks for no output token", field="output_tokens", expected=">= 1")
        kvcap = int(perf.kv_capacity_tokens)
        if kvcap < 1:
            raise InputError("the replica has no room for KV cache", field="kv_capacity_tokens",
                             expected="a model/GPU layout that leaves memory for the KV cache")
        if not 0 <= config.initial_replicas <= config.max_replicas:
            raise InputError("initial replicas out of range", field="initial_replicas",
                             expected="0 <= initial_replicas <= max_replicas")
        self.lock = threading.Lock()
        self.config = config
        self.w = workload
        self._gpus = int(perf.gpus)
        self._kvcap = kvcap
        n = workload.arrival_s.size
        slots = config.max_replicas * 2 + 4
        self._a = E.new_arrays(n, slots, config.engine.max_num_seqs)
        ci = self._a["ci"]
        ci[E.C_MBT] = config.engine.max_batched_tokens
        ci[E.C_MAXSEQ] = config.engine.max_num_seqs
        ci[E.C_KVCAP] = kvcap
        self._tb = np.array(TTFT_BUCKETS_S)
        self._ib = np.array(ITL_BUCKETS_S)
        self._th = np.zeros(self._tb.size + 1, dtype=np.int64)
        self._ih = np.zeros(self._ib.size + 1, dtype=np.int64)
        self._kernel, self._kp = perf.kernel()
        self._alloc_t = np.full(slots, np.nan)
        self._ready_at = np.full(slots, np.inf)
        self._draws = config.cold_start.sample(np.random.default_rng(config.seed), 4096)
        self._starts = 0
        self._slot_pod = np.full(slots, -1, dtype=np.int64)
        self._req_pod = np.full(n, -1, dtype=np.int64)
        self._next_pod = 0
        self._i = 0
        self.t_s = 0.0
        self.gpu_s = 0.0
        self.timeline: list[tuple[float, int, int, int, int]] = []
        pi = self._a["pi"]
        for r in range(config.initial_replicas):
            pi[r, E.PI_STATE] = E.STATE_READY
            self._alloc_t[r] = 0.0
            self._new_pod(r)

    def _new_pod(self, r: int) -> None:
        self._slot_pod[r] = self._next_pod
        self._next_pod += 1

    @property
    def asked(self) -> int:
        """Replicas asked for: starting plus ready (the Deployment's spec.replicas)."""
        st = self._a["pi"][:, E.PI_STATE]
        return int(((st == E.STATE_STARTING) | (st == E.STATE_READY)).sum())

    def counts(self) -> tuple[int, int, int]:
        """``(ready, starting, draining)`` replicas now."""
        st = self._a["pi"][:, E.PI_STATE]
        return (int((st == E.STATE_READY).sum()), int((st == E.STATE_STARTING).sum()),
                int((st == E.STATE_DRAINING).sum()))

    def advance(self, t_s: float) -> None:
        """Run the fleet to simulated time ``t_s`` (no-op when already there)."""
        if t_s <= self.t_s:
            return
        a = self._a
        pi, pf, rq = a["pi"], a["pf"], a["rq"]
        w = self.w
        self._i = E.run_until(self._kernel, self._kp, t_s, self._i, w.arrival_s, w.input_tokens,
                              w.output_tokens, rq, a["rf"], pi, pf, a["run"], a["ci"], a["cf"], self._tb,
                              self._th, self._ib, self._ih, a["gate"])
        E.try_idle_stop(t_s, pi, pf)
        self._release()
        became = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_STARTING) & (self._ready_at <= t_s))
        if became.size:
            pi[became, E.PI_STATE] = E.STATE_READY
            self._ready_at[became] = np.inf
        E.dispatch_gateway(self._kernel, self._kp, t_s, w.input_tokens, w.output_tokens, rq, pi, pf, a["run"],
                           a["ci"], a["gate"])
        routed = (self._req_pod < 0) & (rq[:, E.RQ_REP] >= 0)
        self._req_pod[routed] = self._slot_pod[rq[routed, E.RQ_REP]]
        self.t_s = t_s
        ready, starting, draining = self.counts()
        self.timeline.append((t_s, self.asked, ready, starting, draining))

    def _release(self) -> None:
        pi, pf = self._a["pi"], self._a["pf"]
        freed = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_FREE) & ~np.isnan(self._alloc_t))
        for r in freed:
            self.gpu_s += max(0.0, float(pf[r, E.PF_STOP]) - float(self._alloc_t[r])) * self._gpus
            self._alloc_t[r] = np.nan

    def scale_to(self, desired: int) -> None:
        """Apply a replica count at the current time, as :func:`planner.autoscale.loop.run_policy` does."""
        pi = self._a["pi"]
        t = self.t_s
        desired = max(0, min(self.config.max_replicas, desired))
        cur = self.asked
        if desired > cur:
            free = np.flatnonzero((pi[:, E.PI_STATE] == E.STATE_FREE) & np.isnan(self._alloc_t))
            for r in free[: desired - cur]:
                pi[r, E.PI_STATE] = E.STATE_STARTING
                self._alloc_t[r] = t
                self._ready_at[r] = t + float(self._draws[self._starts % self._draws.size])
                self._starts += 1
                self._new_pod(int(r))
        elif desired < cur:
            drop = cur - desired
            starting = np.flatnonzero(pi[:, E.PI_STATE] == E.STATE_STARTING)
            starting = starting[np.argsort(-self._ready_at[starting], kind="stable")]
            for r in starting[:drop]:
                pi[r, E.PI_STATE] = E.STATE_FREE
                self.gpu_s += (t - float(self._alloc_t[r])) * self._gpus
                self._alloc_t[r] = np.nan
                self._ready_at[r] = np.inf
            drop -= min(drop, starting.size)
            if drop:
                ready = np.flatnonzero(pi[:, E.PI_STATE] == E.STATE_READY)
                load = pi[ready, E.PI_NRUN] + pi[ready, E.PI_NWAIT]
                for r in ready[np.argsort(load, kind="stable")][:drop]:
                    pi[r, E.PI_STATE] = E.STATE_DRAINING
            E.try_idle_stop(t, pi, self._a["pf"])
            self._release()

    def requests(self) -> pl.DataFrame:
        """One row per request of the workload: arrival, TTFT, TPOT, finish (NaN while unfinished)."""
        rf = self._a["rf"]
        w = self.w
        first, finish = rf[:, E.RF_FIRST], rf[:, E.RF_FINISH]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(w.output_tokens > 1, (finish - first) / np.maximum(w.output_tokens - 1, 1),
                            np.nan)
        return pl.DataFrame({"arrival_s": w.arrival_s, "ttft_s": first - w.arrival_s, "tpot_s": tpot,
                             "finish_s": finish, "rejected": self._a["rq"][:, E.RQ_PHASE] == 5})

    # ------------------------------------------------------------ exposition

    def families(self) -> list[Metric]:
        """The fleet's ``vllm:*`` families now (call under :attr:`lock`)."""
        a = self._a
        pi, rq, rf = a["pi"], a["rq"], a["rf"]
        w = self.w
        ready = np.flatnonzero(pi[:, E.PI_STATE] == E.STATE_READY)
        model = self.config.model_name
        legacy = self.config.legacy_names
        lab = ["model_name", "pod"]
        pods = [f"sim-{int(self._slot_pod[r])}" for r in ready]
        run = GaugeMetricFamily("vllm:num_requests_running", "Requests in the model's batch.", labels=lab)
        wait = GaugeMetricFamily("vllm:num_requests_waiting", "Requests waiting to be scheduled.", labels=lab)
        kv = GaugeMetricFamily("vllm:gpu_cache_usage_perc" if legacy else "vllm:kv_cache_usage_perc",
                               "KV-cache usage, 0..1.", labels=lab)
        for r, pod in zip(ready, pods, strict=True):
            run.add_metric([model, pod], float(pi[r, E.PI_NRUN]))
            wait.add_metric([model, pod], float(pi[r, E.PI_NWAIT]))
            kv.add_metric([model, pod], float(pi[r, E.PI_KV]) / self._kvcap)
        out: list[Metric] = [run, wait, kv]
        ids = self._slot_pod[ready]
        npods = int(self._next_pod)
        routed = self._req_pod >= 0
        rp = self._req_pod[routed]
        prompt = np.bincount(rp, weights=w.input_tokens[routed].astype(np.float64), minlength=npods)
        gen = np.bincount(rp, weights=rq[routed, E.RQ_GEN].astype(np.float64), minlength=npods)
        done = np.bincount(rp, weights=(rq[routed, E.RQ_PHASE] == 4).astype(np.float64), minlength=npods)
        for name, help_, vals in (("vllm:prompt_tokens", "Prefill tokens processed.", prompt),
                                  ("vllm:generation_tokens", "Generation tokens processed.", gen),
                                  ("vllm:request_success", "Requests finished.", done)):
            c = CounterMetricFamily(name, help_, labels=lab)
            for pid, pod in zip(ids, pods, strict=True):
                c.add_metric([model, pod], float(vals[pid]))
            out.append(c)
        first = rf[:, E.RF_FIRST]
        has_first = routed & ~np.isnan(first)
        ttft = first[has_first] - w.arrival_s[has_first]
        out.append(self._histogram("vllm:time_to_first_token_seconds", "Time to first token, s.",
                                   self._tb, self._req_pod[has_first], ttft, np.ones(ttft.size), ids, pods))
        finish = rf[:, E.RF_FINISH]
        fin = routed & ~np.isnan(finish) & (w.output_tokens > 1) & ~np.isnan(first)
        steps = (w.output_tokens[fin] - 1).astype(np.float64)
        mean_itl = (finish[fin] - first[fin]) / steps
        out.append(self._histogram(
            "vllm:time_per_output_token_seconds" if legacy else "vllm:inter_token_latency_seconds",
            "Time between output tokens, s.", self._ib, self._req_pod[fin], mean_itl, steps, ids, pods))
        return out

    def _histogram(self, name: str, help_: str, bounds: np.ndarray, pod_of: np.ndarray, x: np.ndarray,
                   weight: np.ndarray, ids: np.ndarray, pods: list[str]) -> HistogramMetricFamily:
        npods = int(self._next_pod)
        nb = bounds.size + 1
        idx = np.searchsorted(bounds, x, side="left")
        per = np.bincount(pod_of * nb + idx, weights=weight, minlength=npods * nb).reshape(npods, nb)
        cum = np.cumsum(per, axis=1)
        sums = np.bincount(pod_of, weights=x * weight, minlength=npods)
        h = HistogramMetricFamily(name, help_, labels=["model_name", "pod"])
        les = [f"{b:g}" for b in bounds] + ["+Inf"]
        for pid, pod in zip(ids, pods, strict=True):
            buckets = list(zip(les, (float(v) for v in cum[pid]), strict=True))
            h.add_metric([self.config.model_name, pod], buckets, float(sums[pid]))
        return h


class FleetCollector(Collector):
    """Serves a :class:`SimFleet`'s current series (takes the fleet's lock per scrape)."""

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterable[Metric]:
        """The fleet's families."""
        with self._fleet.lock:
            return self._fleet.families()


def fleet_registry(fleet: SimFleet) -> CollectorRegistry:
    """A fresh registry serving only the fleet's ``vllm:*`` series."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(fleet))
    return reg


def serve_text(registry: CollectorRegistry, *, port: int, host: str = "127.0.0.1"
               ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``registry`` on ``/metrics`` in the classic text format only, in a daemon thread.

    Why not prometheus-client's server: it answers Prometheus' OpenMetrics ``Accept`` header with names
    escaped to underscores (``vllm:num_requests_running`` becomes ``vllm_num_requests_running``), and the
    fleet must expose vLLM's names as Prometheus stores them from a real vLLM pod.

    Returns:
        ``(server, thread)``; ``server.server_port`` is the bound port, ``server.shutdown()`` stops it.

    Raises:
        InputError: the address cannot be bound.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="port",
                         expected="a free port") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="simfleet-metrics")
    thread.start()
    return server, thread


def parse_desired(text: str, pool: str) -> int | None:
    """``fleetwise_desired_replicas{pool=...}`` from an exposition (None when absent or not finite).

    >>> parse_desired('fleetwise_desired_replicas{pool="a",role="both",model="",gpu=""} 3.0\\n', "a")
    3
    """
    for fam in text_string_to_metric_families(text):
        if fam.name != DESIRED_REPLICAS.name:
            continue
        for s in fam.samples:
            if s.labels.get("pool") == pool and np.isfinite(s.value):
                return round(s.value)
    return None


def desired_from_metrics(url: str, pool: str, *, timeout_s: float = 2.0) -> Callable[[], int | None]:
    """A replica-count source reading fleetwise's ``/metrics`` at ``url`` (None when unreachable/absent,
    which :func:`drive` treats as "keep the current count", as KEDA does on a scaler error)."""

    def read() -> int | None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                text = resp.read().decode()
        except (OSError, ValueError):
            return None
        try:
            return parse_desired(text, pool)
        except ValueError:
            return None

    return read


def drive(fleet: SimFleet, stop: threading.Event, *, clock: Callable[[], float], speed: float,
          desired: Callable[[], int | None] | None, poll_s: float = 0.5, step_s: float = 0.05) -> None:
    """Advance ``fleet`` in (accelerated) real time until ``stop`` is set.

    Args:
        fleet: the fleet.
        stop: set it to end the loop.
        clock: wall time now (injected).
        speed: simulated seconds per wall second.
        desired: the replica-count source (None: the count never changes).
        poll_s: wall seconds between reads of ``desired``.
        step_s: wall seconds between advances.
    """
    t0 = clock()
    next_poll = t0
    while not stop.is_set():
        now = clock()
        if desired is not None and now >= next_poll:
            want = desired()
            next_poll = now + poll_s
            if want is not None:
                with fleet.lock:
                    fleet.scale_to(want)
        with fleet.lock:
            fleet.advance((now - t0) * speed)
        if stop.wait(step_s):
            break

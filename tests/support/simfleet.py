"""Test support (not shipped): a simulated vLLM fleet behind a real ``/metrics`` endpoint.

The fleet is one pool of the replay simulator (:mod:`planner.sim`: the same engine state
:class:`~planner.sim.state.ShardEngine` and the same replica life cycle, :mod:`planner.sim.lifecycle`:
cold starts drawn from a seeded distribution, newest starts cancelled first and least-loaded replicas
drained on scale-down), advanced to "now" on a clock that may run faster than real time. It keeps at
least one replica (the replay's bounds start at 1). Prometheus scrapes it like a vLLM Deployment:

* per ready replica (label ``pod``, plus ``model_name``): ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` (or the old ``vllm:gpu_cache_usage_perc``);
  counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:request_success_total``;
  histograms ``vllm:time_to_first_token_seconds`` and ``vllm:inter_token_latency_seconds`` (or the old
  ``vllm:time_per_output_token_seconds``) with ``_bucket``/``_sum``/``_count`` and the bounds of
  :data:`planner.sim.config.VLLM_TTFT_BUCKETS_S` / :data:`~planner.sim.config.VLLM_ITL_BUCKETS_S`.
  ``FleetConfig.names`` renames them as SGLang or trtllm-serve would (:mod:`planner.live.engines`).
* A replica that starts gets a new pod name (``sim-<instance>``), and its counters start at 0; a replica
  that drains or is still loading exposes nothing (vLLM serves ``/metrics`` only while its server is up).

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

from planner.live.engines import ENGINE_METRICS, Engine
from planner.live.names import DESIRED_REPLICAS
from planner.perf.api import ReplicaPerf
from planner.sim import engine as E  # noqa: N812 (field constants read as E.P_*)
from planner.sim.coldstart import FITTED_COLD_START, ColdStart
from planner.sim.config import (
    VLLM_ITL_BUCKETS_S,
    VLLM_TTFT_BUCKETS_S,
    AutoscaleConfig,
    EngineConfig,
    SimConfig,
)
from planner.sim.lifecycle import asked, become_ready, finish_drains, scale_to
from planner.sim.pool_run import DRAINING, SERVING, STARTING, build_runs
from planner.sim.pools import ClusterConfig, Pool
from planner.sim.result import tpot_s
from traces.errors import InputError
from traces.schema import RequestTrace, TraceMeta


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
        initial_replicas: replicas ready at time 0 (at least 1).
        max_replicas: the most replicas asked for at once (more are ignored, as a full node pool).
        cold_start: time from scale-up to ready, simulated seconds.
        engine: per-replica scheduler limits.
        seed: seeds the cold-start draws.
        legacy_names: expose vLLM's old names (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``).
        names: whose names the series carry (:data:`planner.live.engines.ENGINE_METRICS`: ``vllm``,
            ``sglang``, ``trtllm``; an engine without counters or histograms exposes the gauges only).
    """

    model_name: str = "sim-model"
    initial_replicas: int = 1
    max_replicas: int = 32
    cold_start: ColdStart = FITTED_COLD_START
    engine: EngineConfig = field(default_factory=EngineConfig)
    seed: int = 0
    legacy_names: bool = False
    names: str = "vllm"


class SimFleet:
    """A fleet of simulated vLLM replicas advanced on demand (not thread-safe by itself: :func:`drive` and
    the collector share :attr:`lock`).

    Args:
        workload: the requests.
        perf: one replica's performance model.
        config: options.

    Raises:
        InputError: the replica has no KV room, a request asks for no output, or the replica bounds are
            out of range.
    """

    def __init__(self, workload: Workload, perf: ReplicaPerf, *, config: FleetConfig) -> None:
        if workload.output_tokens.size and int(workload.output_tokens.min()) < 1:
            raise InputError("a request asks for no output token", field="output_tokens", expected=">= 1")
        if int(perf.kv_capacity_tokens) < 1:
            raise InputError("the replica has no room for KV cache", field="kv_capacity_tokens",
                             expected="a model/GPU layout that leaves memory for the KV cache")
        if not 1 <= config.initial_replicas <= config.max_replicas:
            raise InputError("initial replicas out of range", field="initial_replicas",
                             expected="1 <= initial_replicas <= max_replicas")
        self.lock = threading.Lock()
        self.config = config
        self.w = workload
        trace = RequestTrace(pl.DataFrame({
            "arrival_s": workload.arrival_s, "input_tokens": workload.input_tokens.astype(np.int32),
            "output_tokens": workload.output_tokens.astype(np.int32)}), TraceMeta("simfleet", "synthetic"))
        auto = AutoscaleConfig(policy=_no_policy, max_replicas=config.max_replicas,
                               cold_start=config.cold_start, seed=config.seed)
        pool = Pool("fleet", perf, SimConfig(replicas=config.initial_replicas, engine=config.engine,
                                             autoscale=auto))
        (self._run,) = build_runs(trace, [pool], ClusterConfig())
        self._instances = [config.initial_replicas]
        self._tb = np.array(VLLM_TTFT_BUCKETS_S)
        self._ib = np.array(VLLM_ITL_BUCKETS_S)
        n = workload.arrival_s.size
        self._req = self._run.rows  # engine row -> workload row
        self._req_pod = np.full(n, -1, dtype=np.int64)  # per engine row: the instance that served it
        self.t_s = 0.0
        self.timeline: list[tuple[float, int, int, int, int]] = []

    @property
    def asked(self) -> int:
        """Replicas asked for: starting plus ready (the Deployment's spec.replicas)."""
        return asked(self._run)

    def counts(self) -> tuple[int, int, int]:
        """``(ready, starting, draining)`` replicas now."""
        st = self._run.state
        return int((st == SERVING).sum()), int((st == STARTING).sum()), int((st == DRAINING).sum())

    @property
    def gpu_s(self) -> float:
        """GPU-seconds held so far (loading, serving, draining)."""
        total = 0.0
        for hist in self._run.history:
            for it in hist:
                total += max(0.0, min(it.t_stop, self.t_s) - it.t_request)
        return total * self._run.gpus

    def advance(self, t_s: float) -> None:
        """Run the fleet to simulated time ``t_s`` (no-op when already there)."""
        if t_s <= self.t_s:
            return
        r = self._run
        r.eng.run_until(t_s)
        self._note_routes()
        finish_drains(r)
        become_ready(r, t_s)
        self.t_s = t_s
        ready, starting, draining = self.counts()
        self.timeline.append((t_s, self.asked, ready, starting, draining))

    def _note_routes(self) -> None:
        rep = self._run.eng.rq[:, E.R_REP]
        new = np.flatnonzero((self._req_pod < 0) & (rep >= 0))
        for q in new:
            it = self._run.slot_inst[int(rep[q])]
            assert it is not None
            self._req_pod[q] = it.inst

    def scale_to(self, desired: int) -> None:
        """Apply a replica count at the current time (kept within 1 and ``max_replicas``)."""
        desired = max(1, min(self.config.max_replicas, desired))
        scale_to(self._run, desired, self.t_s, cold_start=self.config.cold_start,
                 next_instance=self._instances)

    def requests(self) -> pl.DataFrame:
        """One row per request of the workload: arrival, TTFT, TPOT, finish (NaN while unfinished)."""
        eng = self._run.eng
        n = self.w.arrival_s.size
        first = np.full(n, np.nan)
        finish = np.full(n, np.nan)
        rejected = np.zeros(n, dtype=bool)
        first[self._req] = eng.rf[:, E.F_FIRST]
        finish[self._req] = eng.rf[:, E.F_FINISH]
        rejected[self._req] = eng.rq[:, E.R_PHASE] == E.PH_REJECTED
        w = self.w
        tpot = tpot_s(first, finish, w.output_tokens)
        return pl.DataFrame({"arrival_s": w.arrival_s, "ttft_s": first - w.arrival_s, "tpot_s": tpot,
                             "finish_s": finish, "rejected": rejected})

    def _generated(self) -> np.ndarray:
        """Tokens generated so far per engine row (a decoding request counts its replica's steps)."""
        eng = self._run.eng
        rq = eng.rq
        rep = np.maximum(rq[:, E.R_REP], 0)
        decoding = rq[:, E.R_PHASE] == E.PH_DECODE
        return np.where(decoding, eng.pi[rep, E.P_X] - rq[:, E.R_C], rq[:, E.R_GEN])

    # ------------------------------------------------------------ exposition

    def families(self) -> list[Metric]:
        """The fleet's ``vllm:*`` families now (call under :attr:`lock`)."""
        r = self._run
        eng = r.eng
        pi, rq, rf = eng.pi, eng.rq, eng.rf
        ready = r.serving()
        model = self.config.model_name
        legacy = self.config.legacy_names
        lab = ["model_name", "pod"]
        ids = np.array([r.slot_inst[s].inst for s in ready], dtype=np.int64)  # type: ignore[union-attr]
        pods = [f"sim-{int(i)}" for i in ids]
        kv_use = eng.kv_usage()
        names = ENGINE_METRICS[Engine(self.config.names)]
        pick = 1 if legacy and len(names.kv) > 1 else 0
        run = GaugeMetricFamily(names.running, "Requests in the model's batch.", labels=lab)
        wait = GaugeMetricFamily(names.waiting, "Requests waiting to be scheduled.", labels=lab)
        kv = GaugeMetricFamily(names.kv[pick], "KV-cache usage, 0..1.", labels=lab)
        for s, pod in zip(ready, pods, strict=True):
            run.add_metric([model, pod], float(pi[s, E.P_NRUN]))
            wait.add_metric([model, pod], float(pi[s, E.P_NWAIT]))
            kv.add_metric([model, pod], float(kv_use[s]))
        out: list[Metric] = [run, wait, kv]
        npods = self._instances[0]
        routed = self._req_pod >= 0
        rp = self._req_pod[routed]
        prompt = np.bincount(rp, weights=eng.inp[routed].astype(np.float64), minlength=npods)
        gen = np.bincount(rp, weights=self._generated()[routed].astype(np.float64), minlength=npods)
        done = np.bincount(rp, weights=(rq[routed, E.R_PHASE] == E.PH_DONE).astype(np.float64),
                           minlength=npods)
        counters = [(names.prompt_tokens, "Prefill tokens processed.", prompt),
                    (names.generation_tokens, "Generation tokens processed.", gen)]
        if self.config.names == "vllm":
            counters.append(("vllm:request_success_total", "Requests finished.", done))
        for total, help_, vals in counters:
            if not total:
                continue
            c = CounterMetricFamily(total.removesuffix("_total"), help_, labels=lab)
            for pid, pod in zip(ids, pods, strict=True):
                c.add_metric([model, pod], float(vals[pid]))
            out.append(c)
        first = rf[:, E.F_FIRST]
        has_first = routed & ~np.isnan(first)
        ttft = first[has_first] - eng.arr[has_first]
        if names.ttft:
            out.append(self._histogram(names.ttft[0], "Time to first token, s.", self._tb,
                                       self._req_pod[has_first], ttft, np.ones(ttft.size), ids, pods))
        finish = rf[:, E.F_FINISH]
        fin = routed & ~np.isnan(finish) & (eng.out > 1) & ~np.isnan(first)
        steps = (eng.out[fin] - 1).astype(np.float64)
        mean_itl = (finish[fin] - first[fin]) / steps
        if names.itl:
            out.append(self._histogram(
                names.itl[min(pick, len(names.itl) - 1)], "Time between output tokens, s.", self._ib,
                self._req_pod[fin], mean_itl, steps, ids, pods))
        return out

    def _histogram(self, name: str, help_: str, bounds: np.ndarray, pod_of: np.ndarray, x: np.ndarray,
                   weight: np.ndarray, ids: np.ndarray, pods: list[str]) -> HistogramMetricFamily:
        npods = self._instances[0]
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


def _no_policy(ctx: object) -> object:
    """The fleet's pool has no policy of its own: its count comes from :meth:`SimFleet.scale_to`."""
    raise AssertionError("the simulated fleet is scaled from outside")

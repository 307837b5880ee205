"""The Prometheus exporter: a custom collector over a frozen :class:`Snapshot`, on its own registry.

Why a snapshot: the exporter is a surface, it holds no logic. Whatever produced the numbers (a plan JSON,
a replay summary, the live controller) turns them into one immutable :class:`Snapshot`; the collector
only renders it. Scrapes never see a half-updated state, because a new snapshot replaces the old one in
one assignment, and tests build a snapshot by hand and read it back with ``get_sample_value``.

Sources:

* :func:`load_results` reads a results folder: ``plan.json`` (``fleetwise plan --json > DIR/plan.json``)
  and/or ``summary.json`` (``fleetwise replay --out DIR``); :class:`ResultsSource` reloads it when a
  file's mtime or size changes.
* :mod:`planner.live.controller` builds snapshots of the live autoscaler's state.

Every family name comes from :mod:`planner.live.names` (the contract with ``deploy/``).

>>> reg = build_registry(lambda: Snapshot(desired=(Desired("chat", "both", "Llama-3.1-8B", "H100-SXM", 3),)))
>>> reg.get_sample_value("fleetwise_desired_replicas",
...                      {"pool": "chat", "role": "both", "model": "Llama-3.1-8B", "gpu": "H100-SXM"})
3.0
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from planner.live import names as N  # noqa: N812 (the names module reads as N.DESIRED_REPLICAS)
from traces.atomic import check_folder
from traces.errors import InputError

SOLVE_STATUSES: tuple[str, ...] = ("optimal", "feasible", "infeasible", "unknown", "error")
"""Values of the ``status`` label of ``fleetwise_last_solve_status`` (one is 1, the others 0)."""

PLAN_FILE = "plan.json"
REPLAY_FILE = "summary.json"


@dataclass(frozen=True)
class Desired:
    """Desired replicas of one pool and role."""

    pool: str
    role: str
    model: str
    gpu: str
    replicas: float


@dataclass(frozen=True)
class Current:
    """Replicas observed for one pool and role."""

    pool: str
    role: str
    replicas: float


@dataclass(frozen=True)
class PowerCap:
    """A recommended power cap."""

    scope: str
    id: str
    watts: float


@dataclass(frozen=True)
class Forecast:
    """Forecast demand at a horizon: requests/s, or tokens/s when ``kind`` is ``prompt``/``generation``."""

    pool: str
    quantile: str
    horizon_s: float
    value: float
    kind: str = "requests"


@dataclass(frozen=True)
class PoolValue:
    """A per-pool number (GPU-seconds, cost, staleness, health)."""

    pool: str
    value: float


@dataclass(frozen=True)
class PodValue:
    """A per-replica number (the straggler detector's flag, a pod's inter-token latency)."""

    pool: str
    pod: str
    value: float


@dataclass(frozen=True)
class SLOAttainment:
    """Predicted fraction of requests meeting their SLO, per pool and SLO class."""

    pool: str
    slo_class: str
    ratio: float


@dataclass(frozen=True)
class Solve:
    """The last solve of one solver (or policy): wall time, when it finished, its status."""

    solver: str
    status: str
    duration_s: float | None = None
    timestamp_s: float | None = None


@dataclass(frozen=True)
class Count:
    """A monotone counter value for one ``(pool, label)`` pair (``reason`` or ``direction``)."""

    pool: str
    label: str
    value: float


@dataclass(frozen=True)
class Snapshot:
    """Everything the exporter serves at one moment. Empty tuples export no series for that family."""

    desired: tuple[Desired, ...] = ()
    current: tuple[Current, ...] = ()
    power_caps: tuple[PowerCap, ...] = ()
    forecasts: tuple[Forecast, ...] = ()
    slo: tuple[SLOAttainment, ...] = ()
    gpu_seconds: tuple[PoolValue, ...] = ()
    cost_dollars: tuple[PoolValue, ...] = ()
    solves: tuple[Solve, ...] = ()
    staleness_s: tuple[PoolValue, ...] = ()
    healthy: tuple[PoolValue, ...] = ()
    bad_input: tuple[Count, ...] = ()
    scaling_actions: tuple[Count, ...] = ()
    replica_slow: tuple[PodValue, ...] = ()
    replica_itl_s: tuple[PodValue, ...] = ()


def merge(*snaps: Snapshot) -> Snapshot:
    """One snapshot with every series of ``snaps`` (e.g. plan results plus the live controller).

    >>> merge(Snapshot(desired=(Desired("a", "both", "", "", 1),)), Snapshot()).desired[0].pool
    'a'
    """
    out = Snapshot()
    for s in snaps:
        out = replace(out, **{f: getattr(out, f) + getattr(s, f) for f in Snapshot.__dataclass_fields__})
    return out


def package_version() -> str:
    """fleetwise's installed version (``unknown`` when run from a bare checkout)."""
    try:
        return version("fleetwise")
    except PackageNotFoundError:
        return "unknown"


def _gauge(m: N.MetricName) -> GaugeMetricFamily:
    return GaugeMetricFamily(m.name, m.help, labels=list(m.labels))


def _counter(m: N.MetricName) -> CounterMetricFamily:
    return CounterMetricFamily(m.name, m.help, labels=list(m.labels))


def _fmt(x: float) -> str:
    return f"{x:g}"


def families(snap: Snapshot, *, build_version: str) -> Iterator[Metric]:
    """The metric families of ``snap`` in :data:`planner.live.names.EXPORTED` order (empty ones left out).

    Args:
        snap: what to render.
        build_version: the ``version`` label of ``fleetwise_build_info``.
    """
    g = _gauge(N.DESIRED_REPLICAS)
    for d in snap.desired:
        g.add_metric([d.pool, d.role, d.model, d.gpu], float(d.replicas))
    yield g
    g = _gauge(N.CURRENT_REPLICAS)
    for cur in snap.current:
        g.add_metric([cur.pool, cur.role], float(cur.replicas))
    yield g
    g = _gauge(N.POWER_CAP)
    for p in snap.power_caps:
        g.add_metric([p.scope, p.id], p.watts)
    yield g
    g = _gauge(N.FORECAST_RATE)
    t = _gauge(N.FORECAST_TOKENS)
    for f in snap.forecasts:
        if f.kind == "requests":
            g.add_metric([f.pool, f.quantile, _fmt(f.horizon_s)], f.value)
        else:
            t.add_metric([f.pool, f.kind, f.quantile, _fmt(f.horizon_s)], f.value)
    yield g
    yield t
    g = _gauge(N.PREDICTED_SLO)
    for a in snap.slo:
        g.add_metric([a.pool, a.slo_class], a.ratio)
    yield g
    for m, vals in ((N.PLAN_GPU_SECONDS, snap.gpu_seconds), (N.PLAN_COST, snap.cost_dollars)):
        g = _gauge(m)
        for v in vals:
            g.add_metric([v.pool], v.value)
        yield g
    dur = _gauge(N.SOLVE_DURATION)
    ts = _gauge(N.SOLVE_TIMESTAMP)
    st = _gauge(N.SOLVE_STATUS)
    for s in snap.solves:
        if s.duration_s is not None:
            dur.add_metric([s.solver], s.duration_s)
        if s.timestamp_s is not None:
            ts.add_metric([s.solver], s.timestamp_s)
        for name in SOLVE_STATUSES:
            st.add_metric([s.solver, name], 1.0 if s.status == name else 0.0)
    yield dur
    yield ts
    yield st
    for m, vals in ((N.INPUT_STALENESS, snap.staleness_s), (N.INPUT_HEALTHY, snap.healthy)):
        g = _gauge(m)
        for v in vals:
            g.add_metric([v.pool], v.value)
        yield g
    for m, pods in ((N.REPLICA_SLOW, snap.replica_slow), (N.REPLICA_ITL, snap.replica_itl_s)):
        g = _gauge(m)
        for pv in pods:
            g.add_metric([pv.pool, pv.pod], pv.value)
        yield g
    for m, counts in ((N.BAD_INPUT, snap.bad_input), (N.SCALING_ACTIONS, snap.scaling_actions)):
        cf = _counter(m)
        for k in counts:
            cf.add_metric([k.pool, k.label], k.value)
        yield cf
    info = InfoMetricFamily(N.BUILD_INFO.name, N.BUILD_INFO.help, labels=[])
    info.add_metric([], {"version": build_version})
    yield info


class SnapshotCollector(Collector):
    """A prometheus-client collector that renders whatever snapshot ``source()`` returns at scrape time.

    Args:
        source: returns the snapshot to serve (cheap: called once per scrape).
        build_version: the ``version`` label of ``fleetwise_build_info``.
    """

    def __init__(self, source: Callable[[], Snapshot], *, build_version: str | None = None) -> None:
        self._source = source
        self._version = build_version or package_version()

    def collect(self) -> Iterable[Metric]:
        """Families of the current snapshot."""
        return list(families(self._source(), build_version=self._version))


def build_registry(source: Callable[[], Snapshot], *, build_version: str | None = None) -> CollectorRegistry:
    """A fresh registry holding only a :class:`SnapshotCollector` (no process or platform collectors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(source, build_version=build_version))
    return reg


class SnapshotHolder:
    """The latest snapshot, swapped in one assignment by a producer thread and read by scrapes."""

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._snap = initial or Snapshot()
        self._lock = threading.Lock()

    def set(self, snap: Snapshot) -> None:
        """Publish a new snapshot."""
        with self._lock:
            self._snap = snap

    def get(self) -> Snapshot:
        """The latest snapshot."""
        with self._lock:
            return self._snap


MAX_HANDLERS = 256
"""Connections served at once (slow clients included); more wait in the listen backlog."""
LISTEN_BACKLOG = 512
"""Pending connections the kernel holds while every handler is busy."""
CLIENT_TIMEOUT_S = 5.0
"""A client that sends nothing (or reads nothing) for this long is dropped, freeing its handler."""

Health = Callable[[], tuple[bool, str]]
"""``() -> (ok, reason)`` behind ``/healthz`` (200 or 503 with the reason)."""


class _ExporterServer(ThreadingHTTPServer):
    """A threading server with a bounded number of handler threads and a long listen backlog.

    Why not prometheus-client's server: its backlog of 5 makes 200 concurrent scrapes time out, and a
    slow client holds its thread forever; here a semaphore caps the threads (the accept loop waits for
    a free one, the backlog queues the rest) and every connection has a socket timeout.
    """

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(registry: CollectorRegistry, *, port: int, host: str = "127.0.0.1",
          health: Health | None = None) -> tuple[Any, threading.Thread]:
    """Serve ``registry`` on ``http://host:port/metrics`` (and ``/healthz``) in a daemon thread.

    Args:
        registry: what ``/metrics`` renders (text format, or OpenMetrics when asked for).
        port, host: where to listen (port 0: a free one).
        health: behind ``/healthz`` (None: always 200).

    Returns:
        ``(server, thread)``: ``server.server_port`` is the bound port (pass ``port=0`` for a free one),
        ``server.shutdown()`` stops it.

    Raises:
        InputError: the address cannot be bound.
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT_S

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok, reason = health() if health is not None else (True, "ok")
                self._send(200 if ok else 503, CONTENT_TYPE_LATEST, f"{reason}\n".encode())
            elif path in ("/metrics", "/"):
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, ctype, encoder(registry))
            else:
                self.send_error(404)

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    try:
        server = _ExporterServer((host, port), Handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--port/--host",
                         expected="a free port on a local address") from None
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="fleetwise-metrics")
    thread.start()
    return server, thread


# ---------------------------------------------------------------- results folders


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=str(path), row=exc.lineno,
                         expected="output of 'fleetwise plan --json' or 'fleetwise replay --out'") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("top level is not an object", path=str(path), expected="a JSON object")
    return data


PLAUSIBLE_MAX = 1e12
"""Every number the exporter reads from a results file is a count, a duration, a rate, a fraction or
dollars: non-negative and below this (``gpu_hours: 1e308`` would export as +Inf)."""


def _num(d: dict[str, Any], key: str, path: Path, where: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise InputError(f"missing or non-numeric {key!r}", path=str(path), field=f"{where}{key}",
                         expected="a finite number")
    if not 0.0 <= float(v) <= PLAUSIBLE_MAX:
        raise InputError(f"{key!r} = {v} is out of range", path=str(path), field=f"{where}{key}",
                         expected=f"a number in [0, {PLAUSIBLE_MAX:g}]")
    return float(v)


def _opt_num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        return None
    return float(v)


def _status(raw: object) -> str:
    s = str(raw).lower()
    return s if s in SOLVE_STATUSES else ("error" if s in ("model_invalid", "failed") else "unknown")


def current_window(starts: list[float], span_s: float, *, anchor_s: float, now_s: float) -> int:
    """The index of the plan window ``now_s`` falls in, the plan's timeline starting at ``anchor_s`` and
    repeating every ``span_s`` (a day's plan runs day after day).

    >>> current_window([0.0, 300.0, 600.0], 900.0, anchor_s=1000.0, now_s=1000.0 + 950.0)
    0
    >>> current_window([0.0, 300.0, 600.0], 900.0, anchor_s=1000.0, now_s=1000.0 + 650.0)
    2
    """
    t = (now_s - anchor_s) % span_s if span_s > 0 else 0.0
    return max(0, sum(1 for s in starts if s <= t) - 1)


def plan_snapshot(data: dict[str, Any], *, path: Path, mtime_s: float,
                  now_s: float | None = None, anchor_s: float | None = None) -> Snapshot:
    """Series of a ``fleetwise plan --json`` document.

    Per configuration (pool = the configuration key): desired replicas = its replicas in the plan's
    current window (the plan's timeline starts at ``anchor_s``, else when the file was written, and
    repeats over its span;
    per-configuration peaks would ask for several windows' fleets at once), or its peak over the windows
    when the document has no per-window replicas or ``now_s`` is not given; GPU-seconds and cost.
    Plan-wide (pool = the model): the windows' peak-minute demand as a ``quantile="1"`` forecast at
    ``horizon_seconds`` = the window's start, and the predicted SLO attainment of the verified plan. The
    solver's status and wall time; its timestamp is the file's mtime (the JSON carries no clock).

    A plan whose own replay missed the SLO (the first ``verification`` row, the presented plan's, has
    ``meets_slo`` false) is not published: the cluster would scale to numbers the planner itself showed
    do not hold.

    Raises:
        InputError: a field the exporter needs is missing or has the wrong type, or the plan failed its
            replay.
    """
    model = str(data.get("model", ""))
    for i, v in enumerate((data.get("verification") or [])[:1]):
        if isinstance(v, dict) and v.get("meets_slo") is False:
            rec = data.get("recommended")
            raise InputError(
                "the plan missed its SLO in its own replay; not published"
                + (f" (the plan's output recommends {rec}: re-plan, or publish that one)" if rec else ""),
                path=str(path), field=f"verification[{i}].meets_slo",
                expected="a plan that passed its replay (fleetwise plan)")
    configs = data.get("configs")
    breakdown = data.get("cost_breakdown")
    windows = data.get("windows")
    for key, val in (("configs", configs), ("cost_breakdown", breakdown), ("windows", windows)):
        if not isinstance(val, list):
            raise InputError(f"missing list {key!r}", path=str(path), field=key,
                             expected="the output of 'fleetwise plan --json'")
    assert isinstance(configs, list) and isinstance(breakdown, list) and isinstance(windows, list)
    gpu_of: dict[str, str] = {}
    for i, c in enumerate(configs):
        if not isinstance(c, dict) or not isinstance(c.get("key"), str):
            raise InputError("configuration without a key", path=str(path), field=f"configs[{i}].key",
                             expected="a string")
        gpu_of[c["key"]] = str(c.get("gpu", ""))
    now_reps: dict[str, int] | None = None
    if now_s is not None and windows and all(isinstance(w, dict) and isinstance(w.get("replicas"), dict)
                                             for w in windows):
        starts = [_num(w, "start_s", path, f"windows[{i}].") for i, w in enumerate(windows)]
        span = starts[-1] + _num(windows[-1], "duration_s", path, f"windows[{len(windows) - 1}].")
        anchor = mtime_s if anchor_s is None else anchor_s
        cur = windows[current_window(starts, span, anchor_s=anchor, now_s=now_s)]["replicas"]
        now_reps = {str(k): int(_num(cur, str(k), path, "windows[].replicas.")) for k in cur}
    desired: list[Desired] = []
    gpu_s: list[PoolValue] = []
    cost: list[PoolValue] = []
    for i, line in enumerate(breakdown):
        where = f"cost_breakdown[{i}]."
        if not isinstance(line, dict) or not isinstance(line.get("config"), str):
            raise InputError("line without a config", path=str(path), field=where + "config",
                             expected="a string")
        key = line["config"]
        peak = _num(line, "peak_replicas", path, where)
        desired.append(Desired(key, str(line.get("role", "aggregated")), model,
                               str(line.get("gpu", gpu_of.get(key, ""))),
                               peak if now_reps is None else float(now_reps.get(key, 0))))
        gpu_s.append(PoolValue(key, _num(line, "gpu_hours", path, where) * 3600.0))
        cost.append(PoolValue(key, _num(line, "cost_usd", path, where)))
    forecasts = []
    for i, w in enumerate(windows):
        if not isinstance(w, dict):
            raise InputError("window is not an object", path=str(path), field=f"windows[{i}]")
        forecasts.append(Forecast(model, "1", _num(w, "start_s", path, f"windows[{i}]."),
                                  _num(w, "demand_rps", path, f"windows[{i}].")))
    slo: list[SLOAttainment] = []
    for v in data.get("verification") or []:
        if isinstance(v, dict) and v.get("label") == "plan":
            p = _opt_num(v, "predicted_attainment")
            if p is not None:
                slo.append(SLOAttainment(model, "default", p))
    solve = Solve(str(data.get("solver", "plan")), _status(data.get("status")),
                  _opt_num(data, "solve_wall_s"), mtime_s)
    return Snapshot(desired=tuple(desired), forecasts=tuple(forecasts), slo=tuple(slo),
                    gpu_seconds=tuple(gpu_s), cost_dollars=tuple(cost), solves=(solve,))


def replay_snapshot(data: dict[str, Any], *, path: Path, mtime_s: float) -> Snapshot:
    """Series of a replay's ``summary.json``: per pool its replicas, SLO attainment per class, GPU-seconds
    and cost; the row power budget the capping policy defended as a ``scope="row"`` cap.

    Raises:
        InputError: a field the exporter needs is missing or has the wrong type.
    """
    pools_raw = data.get("pools")
    pools: list[tuple[str, str, dict[str, Any], str]] = []
    if isinstance(pools_raw, list) and pools_raw:
        for i, p in enumerate(pools_raw):
            if not isinstance(p, dict) or not isinstance(p.get("summary"), dict):
                raise InputError("pool without a summary", path=str(path), field=f"pools[{i}].summary",
                                 expected="an object")
            pools.append((str(p.get("name", f"pool{i}")), str(p.get("role", "both")), p["summary"],
                          f"pools[{i}].summary."))
    else:
        pools.append(("replay", "both", data, ""))
    desired: list[Desired] = []
    slo: list[SLOAttainment] = []
    gpu_s: list[PoolValue] = []
    cost: list[PoolValue] = []
    for name, role, s, where in pools:
        desired.append(Desired(name, role, "", "", _num(s, "replicas", path, where)))
        gpu_s.append(PoolValue(name, _num(s, "gpu_hours", path, where) * 3600.0))
        c = _opt_num(s, "cost_usd")
        if c is not None:
            cost.append(PoolValue(name, c))
        for j, cl in enumerate(s.get("classes") or []):
            if isinstance(cl, dict):
                slo.append(SLOAttainment(name, str(cl.get("slo_class", "default")),
                                         _num(cl, "attainment", path, f"{where}classes[{j}].")))
    caps: list[PowerCap] = []
    capping = data.get("capping")
    if isinstance(capping, dict):
        b = _opt_num(capping, "row_budget_w")
        if b is not None:
            caps.append(PowerCap("row", "row0", b))
    return Snapshot(desired=tuple(desired), slo=tuple(slo), gpu_seconds=tuple(gpu_s),
                    cost_dollars=tuple(cost), power_caps=tuple(caps),
                    solves=(Solve("replay", "feasible", None, mtime_s),))


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for name in (PLAN_FILE, REPLAY_FILE):
        p = folder / name
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_results(folder: Path, *, now_s: float, plan_start_s: float | None = None) -> Snapshot:
    """The snapshot of a results folder (``plan.json`` and/or ``summary.json``).

    Args:
        plan_start_s: the Unix time the plan's first window starts at (its timeline repeats over its span
            from there); None: when ``plan.json`` was written.
        folder: the folder.
        now_s: the current Unix time (injected), for ``fleetwise_input_staleness_seconds{pool="results"}``:
            the age of the newest results file.

    Raises:
        InputError: the folder is missing, holds neither file, or a file is malformed.
    """
    if not folder.is_dir():
        raise InputError("results folder not found", path=str(folder), field="--results",
                         expected="a folder with plan.json and/or summary.json")
    check_folder(folder)  # a replay folder's files must be one run's (its manifest)
    fp = _fingerprint(folder)
    if not fp:
        raise InputError("no plan.json or summary.json here", path=str(folder), field="--results",
                         expected="'fleetwise plan --json > DIR/plan.json' or 'fleetwise replay --out DIR'")
    snaps = []
    newest = 0.0
    for name, mtime_ns, _ in fp:
        mtime = mtime_ns / 1e9
        newest = max(newest, mtime)
        path = folder / name
        data = _read_json(path)
        snaps.append(plan_snapshot(data, path=path, mtime_s=mtime, now_s=now_s, anchor_s=plan_start_s)
                     if name == PLAN_FILE
                     else replay_snapshot(data, path=path, mtime_s=mtime))
    snaps.append(Snapshot(staleness_s=(PoolValue("results", max(0.0, now_s - newest)),)))
    return merge(*snaps)


class ResultsSource:
    """A snapshot source over a results folder that reloads when a file's mtime or size changes.

    A file that turns bad while serving keeps the last good snapshot (scrapes never fail) and reports
    ``fleetwise_last_solve_status{solver="results",status="error"} 1``; a warning goes to ``log``.

    Args:
        folder: the results folder (must load at construction: bad input fails fast, exit 2 in the CLI).
        clock: Unix time now (injected).
        log: where reload warnings go.
        plan_start_s: the Unix time the plan's first window starts at (None: when it was written).
    """

    def __init__(self, folder: Path, *, clock: Callable[[], float],
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                 plan_start_s: float | None = None) -> None:
        self._folder = folder
        self._clock = clock
        self._plan_start_s = plan_start_s
        self._log = log
        self._lock = threading.Lock()
        self._fp = _fingerprint(folder)
        self._minute = int(clock() // 60)
        self._base = load_results(folder, now_s=clock(), plan_start_s=plan_start_s)
        self._error = False

    def __call__(self) -> Snapshot:
        """The current snapshot, reloaded first when the files changed or a minute turned (a plan's
        desired replicas follow its current window)."""
        with self._lock:
            fp = _fingerprint(self._folder)
            minute = int(self._clock() // 60)
            if fp != self._fp or minute != self._minute:
                self._fp = fp
                self._minute = minute
                try:
                    self._base = load_results(self._folder, now_s=self._clock(),
                                              plan_start_s=self._plan_start_s)
                    self._error = False
                except Exception as exc:  # any bad file: keep serving the last good one, flagged
                    self._error = True
                    self._log(f"warning: keeping the last good results: {type(exc).__name__}: {exc}")
            base = self._base
            newest = max((m for _, m, _ in self._fp), default=0) / 1e9
            age = (PoolValue("results", max(0.0, self._clock() - newest)),) if newest else base.staleness_s
            extra = (Solve("results", "error"),) if self._error else ()
            return replace(base, staleness_s=age, solves=base.solves + extra)

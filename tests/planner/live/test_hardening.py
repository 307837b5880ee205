"""The live loop under faults it used to die on (issue 19): it holds, says why, keeps ticking, fails its
liveness only past a deadline, applies min/max from the first tick, and its exporter takes a crowd."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from planner.live.config import LiveConfig, PoolSpec, parse_config
from planner.live.controller import BadInput, Controller, PoolState, step
from planner.live.exporter import MAX_HANDLERS, build_registry, serve
from planner.live.promql import PoolReading
from traces.errors import InputError

STALE = 3.0


def _pool(**over: object) -> PoolSpec:
    base: dict[str, object] = {"selector": {"model_name": "m"}, "min_replicas": 2, "max_replicas": 12,
                               "policy": "target-tracking",
                               "params": {"target_running_per_replica": 10, "scale_down_delay_s": 0}}
    base.update(over)
    return parse_config({"pools": {"chat": base}}, source="test").pools[0]


def _read(now: float, per_pod: tuple[float, ...], *, waiting: float = 0.0,
          spec: float | None = None) -> PoolReading:
    pods = tuple(f"p{i}" for i in range(len(per_pod)))
    return PoolReading("chat", now, now - 0.5, pods, per_pod, tuple(waiting for _ in pods),
                       tuple(0.3 for _ in pods), (), spec_replicas=spec)


@pytest.mark.parametrize(("spec", "expect"), [(0.0, 2), (50.0, 12), (5.0, 5)])
def test_the_first_tick_holds_the_spec_within_min_and_max(spec: float, expect: int) -> None:
    # no vLLM series yet: nothing to decide on, the Deployment's count is held, but never outside the bounds
    _, d = step(PoolState(), _read(0.0, (), spec=spec), 0.0, pool=_pool(), stale_after_s=STALE)
    assert d.held and d.reason is BadInput.MISSING and d.desired == expect


def test_an_absurd_queue_is_bad_input_not_load() -> None:
    st, d = step(PoolState(desired=4), _read(0.0, (5.0, 5.0), waiting=1e12), 0.0, pool=_pool(),
                 stale_after_s=STALE, max_requests=1e5)
    assert d.held and d.reason is BadInput.ABSURD and d.desired == 4 and not st.healthy


@pytest.mark.parametrize("value", [".inf", ".nan", "-1", "0", "1e9"])
def test_periods_must_be_finite_and_in_range(value: str) -> None:
    import yaml

    data = yaml.safe_load(f"interval_s: {value}\npools: {{chat: {{selector: {{m: x}}}}}}")
    with pytest.raises(InputError, match="interval_s"):
        parse_config(data, source="pools.yaml")


def _malformed(kind: str) -> PoolReading:
    if kind == "bucket":
        float("abc")  # what a histogram bucket le="abc" does to the reader
    if kind == "http":
        raise http.client.IncompleteRead(b"partial")
    return "not a reading"  # type: ignore[return-value]  # a reader bug: the step itself fails


@pytest.mark.parametrize(("kind", "reason"), [("bucket", BadInput.READ_ERROR), ("http", BadInput.READ_ERROR),
                                              ("bug", BadInput.INTERNAL_ERROR)])
def test_a_failing_tick_holds_says_why_and_the_loop_goes_on(kind: str, reason: BadInput) -> None:
    cfg = LiveConfig(1.0, 3.0, 1.0, (_pool(),), unhealthy_deadline_s=30.0)
    t = [100.0]
    good = [True]
    logs: list[str] = []

    def read(p: PoolSpec) -> PoolReading:
        return _read(t[0], (50.0, 50.0)) if good[0] else _malformed(kind)

    ctl = Controller(cfg, read, clock=lambda: t[0], log=logs.append)
    assert not ctl.tick()[0].held
    first = ctl.states["chat"].desired
    good[0] = False
    for _ in range(5):
        t[0] += 1.0
        d = ctl.tick()[0]
        assert d.held and d.reason is reason and d.desired == first
    assert len([m for m in logs if reason.value in m or "failed" in m]) <= 2  # logged once, not every tick
    assert any(("abc" in m) or ("IncompleteRead" in m) or ("tick failed" in m) for m in logs)
    reg = build_registry(ctl.holder.get, build_version="t")
    assert reg.get_sample_value("fleetwise_input_healthy", {"pool": "chat"}) == 0.0
    assert reg.get_sample_value("fleetwise_bad_input_total", {"pool": "chat", "reason": reason.value}) == 5.0
    assert ctl.health(t[0]) == (True, "ok")  # held for 5 s: not yet past the 30 s deadline
    t[0] += 40.0
    ctl.tick()
    ok, why = ctl.health(t[0])
    assert not ok and "held" in why  # past the deadline: the liveness probe fails, Kubernetes restarts it
    good[0] = True
    t[0] += 1.0
    assert not ctl.tick()[0].held and ctl.health(t[0])[0]  # recovered


def test_the_run_loop_outlives_exceptions_and_a_dead_loop_fails_liveness() -> None:
    cfg = LiveConfig(1.0, 3.0, 0.01, (_pool(),))
    calls = [0]

    def read(p: PoolSpec) -> PoolReading:
        calls[0] += 1
        raise RuntimeError("boom")

    ctl = Controller(cfg, read, clock=time.time, log=lambda m: None)

    def explode(decisions: object) -> None:
        raise ValueError("on_tick bug")

    stop = threading.Event()
    worker = threading.Thread(target=ctl.run, args=(stop,), kwargs={"on_tick": explode}, daemon=True)
    worker.start()
    time.sleep(0.3)
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and calls[0] >= 5  # it kept ticking through both failures
    last = ctl.last_tick_s
    assert last is not None
    assert not ctl.health(last + 3 * 0.01 + 31.0)[0]  # no tick for that long: liveness fails


def test_exporter_takes_200_concurrent_scrapes_beside_150_silent_clients() -> None:
    cfg = LiveConfig(1.0, 3.0, 1.0, (_pool(),))
    ctl = Controller(cfg, lambda p: _read(time.time(), (50.0, 50.0)), clock=time.time, log=lambda m: None)
    ctl.tick()
    server, _ = serve(build_registry(ctl.holder.get, build_version="t"), port=0,
                      health=lambda: ctl.health(time.time()))
    port = server.server_port
    baseline = threading.active_count()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]  # connect, send nothing

    def scrape(_: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert b"fleetwise_desired_replicas" in body
        return resp.status

    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=200) as pool:
            codes = list(pool.map(scrape, range(200)))
        took = time.monotonic() - t0
        peak = threading.active_count() - baseline
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        health = conn.getresponse()
        assert health.status == 200 and health.read().strip() == b"ok"
    finally:
        for s in silent:
            s.close()
        server.shutdown()
    assert codes == [200] * 200 and took < 20.0
    assert peak <= MAX_HANDLERS + 200 + 5  # the server's threads stay bounded (plus this test's own)


def test_a_held_read_is_logged_once_with_the_pod_series_and_value() -> None:
    cfg = LiveConfig(1.0, 3.0, 1.0, (_pool(),), max_requests_per_replica=1e5)
    t = [100.0]
    logs: list[str] = []
    ctl = Controller(cfg, lambda p: _read(t[0], (5.0, 5.0), waiting=1e12), clock=lambda: t[0],
                     log=logs.append)
    for _ in range(3):
        ctl.tick()
        t[0] += 1.0
    assert len(logs) == 1 and "absurd input: pod p0: running + waiting = 1e+12 > 100000" in logs[0]


def test_fewer_series_than_ready_replicas_is_a_partial_scrape_not_less_load() -> None:
    """Issue 19: when one of two pods' series vanished, the pool looked half as loaded and scaled down
    8 -> 4. With a ready-replicas query the loss is seen and the last decision holds."""
    pool = _pool(ready_query="sum(kube_deployment_status_replicas_ready{deployment='chat'})")
    full = _read(0.0, (50.0, 50.0, 50.0, 50.0))
    st, d = step(PoolState(desired=8), full, 0.0, pool=pool, stale_after_s=STALE)
    assert not d.held
    half = _read(15.0, (50.0, 50.0))
    half = PoolReading(half.pool, half.eval_s, half.newest_sample_s, half.pods, half.running, half.waiting,
                       half.kv_cache_usage_perc, (), ready_replicas=4.0)
    st2, d2 = step(st, half, 15.0, pool=pool, stale_after_s=STALE)
    assert d2.held and d2.reason is BadInput.MISSING and d2.desired == d.desired and not st2.healthy
    from planner.live.controller import explain

    assert explain(half, BadInput.MISSING, 15.0, stale_after_s=STALE) == (
        "2 replicas expose vllm:* series of 4 ready")


def test_scale_to_zero_without_a_gateway_queue_is_refused_at_load() -> None:
    # issue 19: min_replicas 0 without a pending query reached 0 and stayed there, reporting healthy
    with pytest.raises(InputError, match="min_replicas 0 needs a pending_query"):
        _pool(min_replicas=0)
    assert _pool(min_replicas=0, pending_query="sum(gateway_queue)").min_replicas == 0

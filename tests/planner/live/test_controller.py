"""The live controller's guards, tick by tick: stale, missing, absurd, ramp limits, never to zero."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from planner.live.config import LiveConfig, PoolSpec, load_config, parse_config
from planner.live.controller import (
    BadInput,
    Controller,
    CounterBook,
    PoolState,
    accumulate,
    snapshot,
    step,
)
from planner.live.exporter import build_registry
from planner.live.promql import PoolReading, PromQueryError
from traces.errors import InputError

STALE = 3.0


def _pool(**over: object) -> PoolSpec:
    base: dict[str, object] = {"selector": {"model_name": "m"}, "min_replicas": 1, "max_replicas": 10,
                               "max_step_up": 2, "max_step_down": 1, "policy": "target-tracking",
                               "params": {"target_running_per_replica": 10, "scale_down_delay_s": 0}}
    base.update(over)
    return parse_config({"pools": {"chat": base}}, source="test").pools[0]


def _read(now: float, per_pod: tuple[float, ...], *, waiting: float = 0.0, kv: float = 0.3,
          age: float = 0.5, counters: tuple[tuple[str, str, float], ...] = ()) -> PoolReading:
    pods = tuple(f"p{i}" for i in range(len(per_pod)))
    return PoolReading("chat", now, now - age, pods, per_pod, tuple(waiting for _ in pods),
                       tuple(kv for _ in pods), counters)


def test_healthy_reads_scale_with_ramp_limits_tick_by_tick() -> None:
    pool = _pool()
    st = PoolState()
    # 2 replicas carrying 100 requests want 10; +2 per tick from the 2 listed
    seen = []
    for k in range(5):
        st, d = step(st, _read(float(k), (50.0, 50.0)), float(k), pool=pool, stale_after_s=STALE)
        seen.append((d.desired, d.ramp_limited))
        assert d.policy_desired == 10 and not d.held
    assert seen == [(4, True), (6, True), (8, True), (10, False), (10, False)]
    assert st.actions_up == 3 and st.healthy
    # load falls to 15: the policy wants 2, the ramp lets one go per tick
    downs = []
    for k in range(5, 9):
        st, d = step(st, _read(float(k), (15.0,)), float(k), pool=pool, stale_after_s=STALE)
        downs.append(d.desired)
    assert downs == [9, 8, 7, 6]
    assert st.actions_down == 4


def test_a_scrape_that_still_lists_drained_pods_does_not_undo_a_scale_down() -> None:
    """Prometheus lags the fleet by up to a scrape: right after a scale-down, the next read can still list the
    drained pods. The count the policy holds against is the one asked for (as HPA's ``currentReplicas`` is the
    scale's spec), not the pods listed; otherwise every scale-down bounced back up (CI: 6, 2, 6, ...)."""
    pool = _pool(max_step_up=10, max_step_down=10,
                 params={"target_running_per_replica": 10, "scale_down_delay_s": 2})
    st, d = step(PoolState(), _read(0.0, (60.0,) * 6), 0.0, pool=pool, stale_after_s=STALE)
    assert d.desired == 10  # 360 / 10, capped by max_replicas
    quiet = (2.0,) * 10  # 20 in system: 2 wanted
    seen = []
    for k in range(1, 6):
        st, d = step(st, _read(float(k), quiet), float(k), pool=pool, stale_after_s=STALE)
        seen.append(d.desired)
    assert seen == [10, 10, 2, 2, 2]  # the wish lasts the 2 s delay, then applies
    # and reads lagging by a scrape still list the ten pods, carrying the same 20 requests
    assert st.desired == 2 and st.current == 10


def test_bounds_hold_whatever_the_policy_wants() -> None:
    pool = _pool(max_step_up=100, max_step_down=100, max_replicas=5, min_replicas=2)
    st, d = step(PoolState(), _read(0.0, (500.0,)), 0.0, pool=pool, stale_after_s=STALE)
    assert d.desired == 5 and d.policy_desired == 5  # the policy got the pool bounds as its own
    st, d = step(st, _read(1.0, (0.0,)), 1.0, pool=pool, stale_after_s=STALE)
    assert d.desired == 2


def test_stale_reads_hold_the_last_decision_and_count() -> None:
    pool = _pool()
    st, d = step(PoolState(), _read(0.0, (30.0, 30.0)), 0.0, pool=pool, stale_after_s=STALE)
    assert d.desired == 4
    for k in range(1, 4):
        st, d = step(st, _read(float(k), (500.0,), age=STALE + 1), float(k), pool=pool, stale_after_s=STALE)
        assert d.held and d.reason is BadInput.STALE and d.desired == 4
    assert st.bad_count(BadInput.STALE) == 3 and not st.healthy
    assert st.staleness_s == pytest.approx(STALE + 1)
    st, d = step(st, _read(5.0, (30.0, 30.0)), 5.0, pool=pool, stale_after_s=STALE)
    assert not d.held and st.healthy


def test_missing_data_never_scales_to_zero() -> None:
    pool = _pool(min_replicas=0, pending_query="sum(gateway_queue)",
                 params={"target_running_per_replica": 10, "scale_down_delay_s": 0, "min_replicas": 0})
    st, d = step(PoolState(), _read(0.0, (20.0, 20.0, 20.0)), 0.0, pool=pool, stale_after_s=STALE)
    assert d.desired == 5  # 60 in system / 10, ramp +2 from 3 listed
    for k, reading in enumerate((None, _read(2.0, ()), None), start=1):
        st, d = step(st, reading, float(k), pool=pool, stale_after_s=STALE)
        assert d.held and d.desired == 5
    assert st.bad_count(BadInput.UNREACHABLE) == 2 and st.bad_count(BadInput.MISSING) == 1
    # a replica without its waiting gauge is missing data too, not an idle replica
    r = _read(4.0, (20.0, 20.0))
    r = PoolReading(r.pool, r.eval_s, r.newest_sample_s, r.pods, r.running, (0.0, math.nan),
                    r.kv_cache_usage_perc)
    st, d = step(st, r, 4.0, pool=pool, stale_after_s=STALE)
    assert d.reason is BadInput.MISSING and d.desired == 5


def test_scaled_to_zero_on_purpose_is_not_missing() -> None:
    pool = _pool(min_replicas=0, pending_query="sum(gateway_queue)",
                 params={"target_running_per_replica": 10, "scale_down_delay_s": 0, "min_replicas": 0})
    st = PoolState(desired=0)
    st, d = step(st, _read(0.0, ()), 0.0, pool=pool, stale_after_s=STALE)
    assert not d.held and d.desired == 0


@pytest.mark.parametrize(("reading", "what"), [
    (_read(0.0, (-1.0,)), "negative running"),
    (_read(0.0, (math.nan,)), "NaN running"),
    (_read(0.0, (5.0,), kv=1.2), "KV above 1.05"),
    (_read(0.0, (math.inf,)), "infinite running"),
    (_read(0.0, tuple(1.0 for _ in range(11))), "more replicas than max"),
    (_read(0.0, (5.0,), counters=(("prompt_tokens", "p0", -4.0),)), "negative counter"),
])
def test_absurd_reads_hold(reading: PoolReading, what: str) -> None:
    pool = _pool()
    st = PoolState(desired=3)
    st, d = step(st, reading, 0.0, pool=pool, stale_after_s=STALE)
    assert d.held and d.reason is BadInput.ABSURD and d.desired == 3, what
    assert st.bad_count(BadInput.ABSURD) == 1


def test_no_decision_yet_exports_no_desired_series() -> None:
    cfg = LiveConfig(1.0, 3.0, 1.0, (_pool(),))
    st, d = step(PoolState(), None, 0.0, pool=cfg.pools[0], stale_after_s=STALE)
    assert d.desired is None
    reg = build_registry(lambda: snapshot(cfg, {"chat": st}, durations_s={}, now_s=0.0), build_version="t")
    assert reg.get_sample_value("fleetwise_desired_replicas",
                                {"pool": "chat", "role": "both", "model": "", "gpu": ""}) is None
    assert reg.get_sample_value("fleetwise_input_healthy", {"pool": "chat"}) == 0.0
    assert reg.get_sample_value("fleetwise_bad_input_total", {"pool": "chat", "reason": "unreachable"}) == 1.0
    assert reg.get_sample_value("fleetwise_bad_input_total", {"pool": "chat", "reason": "stale"}) == 0.0


def test_policy_error_holds() -> None:
    def broken(ctx: object) -> object:
        raise ZeroDivisionError("bug")

    pool = _pool()
    bad = PoolSpec(**{**pool.__dict__, "policy": broken})
    _, d = step(PoolState(desired=4), _read(0.0, (5.0,)), 0.0, pool=bad, stale_after_s=STALE)
    assert d.held and d.reason is BadInput.POLICY_ERROR and d.desired == 4


def test_counter_book_survives_restarts_and_departures() -> None:
    b = accumulate(CounterBook(), (("gen", "a", 100.0), ("gen", "b", 50.0)), 0.0)
    assert b.total("gen") == 150.0
    b = accumulate(b, (("gen", "a", 110.0),), 1.0)  # b gone: no drop
    b = accumulate(b, (("gen", "a", 5.0), ("gen", "b", 60.0)), 2.0)  # a restarted, b back
    assert b.total("gen") == 150.0 + 10.0 + 5.0 + 10.0


def test_controller_ticks_on_an_injected_clock() -> None:
    cfg = LiveConfig(1.0, 3.0, 1.0, (_pool(),))
    t = [100.0]
    reads: list[PoolReading | PromQueryError] = [_read(100.0, (50.0, 50.0)), PromQueryError("down")]

    def read(p: PoolSpec) -> PoolReading:
        r = reads.pop(0)
        if isinstance(r, PromQueryError):
            raise r
        return r

    ctl = Controller(cfg, read, clock=lambda: t[0], log=lambda m: None)
    assert [d.desired for d in ctl.tick()] == [4]
    t[0] = 101.0
    d = ctl.tick()[0]
    assert d.held and d.reason is BadInput.UNREACHABLE and d.desired == 4
    reg = build_registry(ctl.holder.get, build_version="t")
    assert reg.get_sample_value("fleetwise_desired_replicas",
                                {"pool": "chat", "role": "both", "model": "", "gpu": ""}) == 4.0
    assert reg.get_sample_value("fleetwise_scaling_actions_total", {"pool": "chat", "direction": "up"}) == 0.0


def test_config_errors_name_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"pools\.chat\.max_replica\b.*unknown key"):
        parse_config({"pools": {"chat": {"selector": {"a": "b"}, "max_replica": 3}}}, source="p.yaml")
    with pytest.raises(InputError, match=r"pools\.chat\.params\.target_running"):
        parse_config({"pools": {"chat": {"selector": {"a": "b"}, "params": {"target_running": 3}}}},
                     source="p.yaml")
    with pytest.raises(InputError, match=r"pools\.chat\.params\.scale_up\.bogus"):
        parse_config({"pools": {"chat": {"selector": {"a": "b"}, "policy": "hpa",
                                         "params": {"scale_up": {"bogus": 1}}}}}, source="p.yaml")
    with pytest.raises(InputError, match="max_replicas 1 < min_replicas 3"):
        parse_config({"pools": {"chat": {"selector": {"a": "b"}, "min_replicas": 3, "max_replicas": 1}}},
                     source="p.yaml")
    with pytest.raises(InputError, match=r"pools\.chat\.policy"):
        parse_config({"pools": {"chat": {"selector": {"a": "b"}, "policy": "magic"}}}, source="p.yaml")
    f = tmp_path / "pools.yaml"
    f.write_text("pools:\n  chat: {selector: {a: b}\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(f)
    f.write_text("interval_s: 5\npools:\n  chat:\n    selector: {model_name: m}\n    policy: keda\n"
                 "    params: {threshold: 20}\n")
    cfg = load_config(f)
    assert cfg.interval_s == 5.0 and cfg.pools[0].policy_name == "keda"


def test_replica_health_flags_the_pod_whose_inter_token_latency_is_an_outlier_and_exports_it() -> None:
    from prometheus_client import generate_latest

    pool = _pool()
    cfg = parse_config({"pools": {"chat": {"selector": {"model_name": "m"}, "min_replicas": 1,
                                           "max_replicas": 10, "policy": "target-tracking"}}}, source="test")
    st = PoolState()
    sums = [0.0] * 4
    counts = [0.0] * 4
    flagged = []
    for k, slow in enumerate((None, None, 2, 2, None, 1)):
        for i in range(4):  # 100 tokens per pod per tick; the slow pod takes 60 ms a token, the others 20
            sums[i] += 100 * (0.06 if i == slow else 0.02)
            counts[i] += 100
        counters = tuple(x for i in range(4) for x in (("itl_sum", f"p{i}", sums[i]),
                                                       ("itl_count", f"p{i}", counts[i])))
        st, _ = step(st, _read(float(k), (5.0,) * 4, counters=counters), float(k), pool=pool,
                     stale_after_s=STALE)
        flagged.append(st.replicas.slow)
    # the first read has nothing to compare with; each later tick sees the interval since the last read
    assert flagged == [(), (), ("p2",), ("p2",), (), ("p1",)]
    snap = snapshot(cfg, {"chat": st}, durations_s={}, now_s=5.0)
    text = generate_latest(build_registry(lambda: snap)).decode()
    assert 'fleetwise_replica_slow{pod="p1",pool="chat"} 1.0' in text
    assert 'fleetwise_replica_slow{pod="p0",pool="chat"} 0.0' in text
    assert 'fleetwise_replica_inter_token_latency_seconds{pod="p1",pool="chat"} 0.06' in text


def test_an_llm_d_pool_scales_on_the_epp_saturation_the_live_read_implies() -> None:
    """``policy: llm-d-keda`` binds llm-d's ScaledObject with the pool's bounds; the live read's waiting and
    KV gauges give the EPP's saturation (here, flow control off, 12 / 5 = 2.4 on one replica:
    ceil(2.4 / 0.7) = 4 beats the running trigger's ceil(20 / 16) = 2)."""
    pool = _pool(policy="llm-d-keda", params={"epp": {"flow_control": False}}, min_replicas=1,
                 max_replicas=6, max_step_up=8)
    st, d = step(PoolState(), _read(0.0, (8.0,), waiting=12.0, kv=0.5), 0.0, pool=pool, stale_after_s=STALE)
    assert (d.policy_desired, d.desired) == (2, 2)  # +100 % per 15 s from 1 replica
    st, d = step(st, _read(15.0, (8.0, 8.0), waiting=12.0, kv=0.5), 15.0, pool=pool, stale_after_s=STALE)
    assert d.policy_desired == 4
    with pytest.raises(InputError, match=r"pools\.chat\.params\.triggers\[0\]\.bogus"):
        _pool(policy="keda", params={"triggers": [{"threshold": 4, "bogus": 1}]})

"""Faults in the replay loop: fault traces, fail-stop with retries, stragglers, the straggler detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.cli.main import main
from planner.sim import SimConfig, replay
from planner.sim.faults import Detector, FaultConfig, FaultRates, flag_stragglers, synth_faults
from planner.sim.testing import LinearPerf, poisson_trace
from traces.errors import InputError
from traces.faults import FaultEvent, load_fault_trace, write_fault_trace

PERF = LinearPerf(kv_tokens=50_000)


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "faults.csv"
    p.write_text("time_s,scope,id,kind,duration_s,slowdown\n" + body)
    return p


def test_a_fault_trace_round_trips(tmp_path: Path) -> None:
    ev = (FaultEvent(5.0, "node", 0, "fail", 60.0), FaultEvent(1.0, "replica", 2, "slow", 30.0, 1.5))
    write_fault_trace(ev, tmp_path / "f.parquet")
    assert load_fault_trace(tmp_path / "f.parquet") == (ev[1], ev[0])  # sorted by time


@pytest.mark.parametrize(("body", "row", "field"), [
    ("10,replica,0,slow,60,0.5\n", 1, "slowdown"),
    ("10,replica,0,fail,60,\n-1,replica,0,fail,60,\n", 2, "time_s"),
    ("10,pod,0,fail,60,\n", 1, "scope"),
    ("10,replica,0,melt,60,\n", 1, "kind"),
    ("10,replica,x,fail,60,\n", 1, "id"),
    ("10,replica,0,fail,0,\n", 1, "duration_s"),
])
def test_bad_fault_rows_name_file_row_and_field(tmp_path: Path, body: str, row: int, field: str) -> None:
    with pytest.raises(InputError) as err:
        load_fault_trace(_write(tmp_path, body))
    assert err.value.row == row and err.value.field == field


def test_bad_fault_trace_on_the_command_line_is_one_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "10,replica,0,fail,60,\n20,rack,0,slow,60,abc\n")
    assert main(["replay", "--faults", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 2" in err and "slowdown" in err and "Traceback" not in err


def test_fail_stop_loses_requests_and_retries_them_until_all_are_served() -> None:
    tr = poisson_trace(2000, 25.0, 3, prefix_groups=10)
    ev = (FaultEvent(20.0, "replica", 1, "fail", 30.0), FaultEvent(40.0, "replica", 2, "fail", 30.0))
    res = replay(tr, PERF, config=SimConfig(replicas=4, faults=FaultConfig(ev, retry_budget=2)))
    f = res.faults
    assert f is not None and f.fail_events == 2 and f.lost > 0
    assert f.retried == f.lost and f.failed == 0
    s = res.summary
    assert s.completed == s.requests == 2000 and s.violations == 0
    # the replacements come back after the repair and a cold start, as new instances on the same slots
    reps = res.replicas
    assert reps is not None
    again = reps.filter(reps["slot"].is_in([1, 2]) & (reps["requested_s"] > 0))
    assert sorted(again["requested_s"].to_list()) == [50.0, 70.0]
    assert (again["ready_s"] > again["requested_s"]).all()


def test_without_a_retry_budget_lost_requests_fail() -> None:
    tr = poisson_trace(2000, 25.0, 3)
    ev = (FaultEvent(20.0, "replica", 1, "fail", 30.0),)
    res = replay(tr, PERF, config=SimConfig(replicas=4, faults=FaultConfig(ev, retry_budget=0)))
    f = res.faults
    assert f is not None and f.lost > 0 and f.retried == 0 and f.failed == f.lost
    assert res.summary.rejected == f.failed  # never served: counted against the SLO
    assert res.summary.completed == 2000 - f.failed


def test_a_node_fault_takes_down_every_replica_on_the_node() -> None:
    tr = poisson_trace(1000, 10.0, 2)
    ev = (FaultEvent(10.0, "node", 0, "fail", 20.0),)  # GPUs 0..7: replicas 0..7 of one GPU each
    res = replay(tr, PERF, config=SimConfig(replicas=10, faults=FaultConfig(ev)))
    assert res.faults is not None and res.faults.fail_events == 8
    assert res.summary.completed == 1000


def test_a_straggler_takes_longer_then_recovers() -> None:
    from planner.sim.testing import make_trace

    tr = make_trace(np.array([0.0]), np.array([100]), np.array([200]))  # one request: no batching effects
    base = replay(tr, PERF, config=SimConfig(replicas=1))
    e2e = float(base.requests["e2e_s"][0])
    whole = (FaultEvent(0.0, "replica", 0, "slow", 1e6, 2.0),)
    slow = replay(tr, PERF, config=SimConfig(replicas=1, faults=FaultConfig(whole)))
    assert float(slow.requests["e2e_s"][0]) == pytest.approx(2 * e2e, rel=1e-9)  # every step twice as long
    half = (FaultEvent(0.0, "replica", 0, "slow", e2e, 2.0),)  # over after half of the slowed run
    part = replay(tr, PERF, config=SimConfig(replicas=1, faults=FaultConfig(half)))
    assert float(part.requests["e2e_s"][0]) == pytest.approx(1.5 * e2e, rel=0.02)


def test_the_detector_flags_the_straggler_and_nothing_else() -> None:
    tr = poisson_trace(4000, 40.0, 5)
    ev = (FaultEvent(20.0, "replica", 2, "slow", 60.0, 3.0),)
    det = Detector(window_s=20.0, interval_s=5.0, mitigate=False)
    res = replay(tr, PERF, config=SimConfig(replicas=5, faults=FaultConfig(ev, detector=det)))
    f = res.faults
    assert f is not None and f.flags == f.true_flags == 1
    assert f.detection_delay_s and f.detection_delay_s[0] <= det.window_s + det.interval_s
    clean = replay(tr, PERF, config=SimConfig(replicas=5, faults=FaultConfig((), detector=det)))
    assert clean.faults is not None and clean.faults.flags == 0  # no false positives without faults


def test_draining_the_straggler_beats_leaving_it() -> None:
    tr = poisson_trace(6000, 60.0, 6)
    ev = (FaultEvent(5.0, "replica", 1, "slow", 1e6, 4.0),)
    slo = SimConfig(replicas=4).default_slo
    out = {}
    for mode, det in (("none", None), ("drain", Detector(window_s=20.0, interval_s=5.0))):
        res = replay(tr, PERF, config=SimConfig(replicas=4, default_slo=slo,
                                                faults=FaultConfig(ev, detector=det)))
        out[mode] = res
    f = out["drain"].faults
    # one flag, on the straggler: the replicas that take its load run bigger batches, but the detector
    # compares step times with the perf model's for each replica's batches, so they are not flagged
    assert f is not None and f.flags == f.true_flags == f.replaced == 1
    p99 = {m: max(c.ttft_p99_s for c in r.summary.classes) for m, r in out.items()}
    assert p99["drain"] < p99["none"]


def test_synthetic_faults_are_seeded() -> None:
    rates = FaultRates(fail_per_gpu_hour=0.1, slow_per_replica_hour=1.0)
    a = synth_faults(rates, replicas=8, gpus_per_replica=4, horizon_s=7200, seed=3)
    assert a == synth_faults(rates, replicas=8, gpus_per_replica=4, horizon_s=7200, seed=3)
    assert a != synth_faults(rates, replicas=8, gpus_per_replica=4, horizon_s=7200, seed=4)
    fails = sum(e.kind == "fail" for e in a)
    assert 1 <= fails <= 16  # Poisson, mean 8 replicas x 4 GPUs x 2 h x 0.1 = 6.4


def test_flag_stragglers_is_robust_to_one_outlier_and_to_equal_peers() -> None:
    det = Detector()
    assert flag_stragglers([0.02] * 6 + [0.05], det) == (6,)  # MAD 0: the ratio guard decides
    assert flag_stragglers([0.02] * 6 + [0.025], det) == ()
    assert flag_stragglers([0.02, 0.05], det) == ()  # two replicas: no peers to compare with
    rng = np.random.default_rng(0)
    noisy = (0.03 + 0.002 * rng.standard_normal(20)).tolist()
    assert flag_stragglers(noisy, det) == ()


def test_a_retry_carries_its_prompts_prefix_hashes() -> None:
    from planner.sim.replay import engine_setup, make_shard_tasks, shard_engine
    from planner.sim.testing import make_trace

    hashes = [[1, 2], [3], [4, 5, 6], [7, 8]]
    tr = make_trace(np.array([0.0, 1.0, 2.0, 3.0]), np.array([32, 16, 48, 32]), np.array([4, 4, 4, 4]),
                    prefix_hashes=hashes, block_size=16)
    cfg = SimConfig(replicas=1)
    task = make_shard_tasks(tr, cfg)[0]
    from planner.sim.pool_run import _padded

    task = _padded(task, 2)
    eng = shard_engine(task, engine_setup(PERF, tr, cfg), cfg, slots=1, routable=[0], dt=1.0, known=4)
    eng.run_until(1.5)  # rows 0 and 1 taken
    perm = eng.extend(np.array([1.5, 2.5]), np.array([32, 48]), np.array([4, 4]),
                      np.array([9, 9], dtype=np.uint64), prefix_of=np.array([0, 2]))
    rows = np.concatenate([[2, 3], [0, 2]])[perm]  # whose hashes rows 2.. now carry
    for k, src in enumerate(rows):
        got = eng.ph[eng.ph_off[2 + k]:eng.ph_off[3 + k]].tolist()
        assert got == hashes[src]
    assert eng.ph[eng.ph_off[0]:eng.ph_off[2]].tolist() == [1, 2, 3]  # taken rows untouched


def test_plan_chooses_the_spares_its_availability_target_needs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    # one replica failing about once an hour (50,000 x Llama 3's rate): it needs a spare
    assert main(["plan", "--gpus", "H100-SXM", "--availability", "0.99", "--fault-rate-scale", "50000",
                 "--json"]) == 0
    text = capsys.readouterr().out
    dec = json.JSONDecoder()
    _, end = dec.raw_decode(text)
    study, _ = dec.raw_decode(text[end:].lstrip())
    rows = study["rows"]
    assert [r["spares"] for r in rows] == [0, 1, 2, 3] and study["seeds"] == [0, 1, 2]
    assert rows[0]["availability"] < 0.99 <= rows[1]["availability"]
    assert study["chosen"] == 1 and rows[1]["spare_cost_per_hour"] > 0
    assert sum(r["fail_events"] for r in rows) > 0  # the faults were really drawn and replayed


def test_the_report_and_the_plan_size_the_same_spares(tmp_path: Path) -> None:
    out = tmp_path / "spares.html"
    assert main(["report", "--out", str(out), "--kind", "spares", "--replicas", "1", "--availability", "0.99",
                 "--fault-rate-scale", "50000"]) == 0
    html = out.read_text()
    # the verdict plan --availability prints for the same fleet and faults
    assert "1 spare replica (2 GPUs in all) reach 100.00% availability" in html
    assert "Windows meeting the SLO under faults, per spare count" in html

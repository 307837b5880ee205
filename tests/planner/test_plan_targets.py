"""SLOs as users state them: each target at its own statistic, and an end-to-end target, in scoring, in
the replay check and on the plan's surfaces."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.perf.model import build_replica_perf
from planner.plan import PlanRequest, plan_fleet
from planner.plan.slo_classes import parse_slo_class, slo_at, strictest
from planner.sim import EngineConfig, SimConfig, replay
from solvers.capacity import SLO, Role, SolveParams, goodput, length_mix
from traces.default import default_trace
from traces.errors import InputError

FAST = dict(max_num_seqs=(128, 256), max_batched_tokens=(8192,), verify_windows=4, alternatives=1,
            params=SolveParams(max_time_in_seconds=10.0))


def test_each_target_has_its_own_statistic() -> None:
    s = SLO.at(2.0, 0.05, "ttft=p99, tpot=Mean")
    assert (s.stat("ttft"), s.stat("tpot"), s.is_mean("tpot")) == ("p99", "mean", True)
    assert s.quantile("ttft") == 0.99
    assert s.statistic == "TTFT p99, TPOT mean"
    assert SLO.at(2.0, 0.05, "p90,tpot=p50").quantile("ttft") == pytest.approx(0.9)
    assert SLO.at(2.0, 0.05, "p90,tpot=p50").quantile("tpot") == pytest.approx(0.5)
    # one spelling per promise: equal targets compare equal however they were written
    assert SLO(tpot_statistic="MEAN") == SLO(tpot_statistic="mean") == SLO.at(2.0, 0.1, "tpot=avg")
    e = SLO.at(2.0, 0.05, "e2e=p90", e2e_s=30.0)
    assert e.kinds == ("ttft", "tpot", "e2e") and e.statistic == "TTFT p99, TPOT p99, E2E p90"
    assert SLO().kinds == ("ttft", "tpot") and SLO().limit("e2e") == float("inf")
    for bad in ("p101", "ttft=p99,latency=p90", "tpot=fast", "p49"):
        with pytest.raises(InputError):
            SLO.at(2.0, 0.05, bad)
    with pytest.raises(InputError, match="--slo-e2e-ms"):
        slo_at(2000.0, 50.0, "p99", -5.0)
    c = parse_slo_class("agent:1000:50:60000", SLO.at(2.0, 0.1, "tpot=mean"))
    assert (c.slo.e2e_s, c.slo.stat("tpot")) == (60.0, "mean")
    assert strictest(SLO(e2e_s=90.0), [c]).e2e_s == 60.0 and strictest(SLO(), []).e2e_s is None


def _goodput(slo: SLO) -> tuple[float, str]:
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    op = goodput(perf, Role.AGGREGATED, length_mix(default_trace()), slo, max_num_seqs=256,
                 max_batched_tokens=8192)
    return op.goodput_rps, op.reason


def test_scoring_holds_each_target_at_its_own_statistic() -> None:
    tight = dict(ttft_s=2.0, tpot_s=0.012)
    p99, _ = _goodput(SLO(**tight))
    tpot_mean, _ = _goodput(SLO(**tight, tpot_statistic="mean"))
    both_mean, _ = _goodput(SLO(**tight, mean=True))
    # a mean TPOT is a looser promise than a p99 one, and a mean TTFT looser still
    assert 0 < p99 < tpot_mean <= both_mean


def test_an_end_to_end_target_binds_in_scoring() -> None:
    free, _ = _goodput(SLO())
    loose, _ = _goodput(SLO(e2e_s=3600.0))
    assert loose == pytest.approx(free)
    # the default hour's outputs run to hundreds of tokens: 10 s end to end at p99 needs short steps
    tight, reason = _goodput(SLO(e2e_s=10.0))
    assert 0 <= tight < free
    none, reason = _goodput(SLO(e2e_s=0.5))
    assert none == 0.0 and "end-to-end" in reason


def test_the_replays_end_to_end_time_is_ttft_plus_the_decode() -> None:
    """The replay check builds each request's end-to-end time from its TTFT and TPOT (so phase-split
    checks can too); on a whole replay that must equal arrival to last token."""
    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    tr = default_trace()
    res = replay(tr, perf, config=SimConfig(replicas=2, engine=EngineConfig(), seed=0))
    req = res.requests.sort("request_id")
    out = tr.df["output_tokens"].to_numpy()[req["request_id"].to_numpy()]
    rebuilt = req["ttft_s"].to_numpy() + req["tpot_s"].fill_null(0.0).to_numpy() * np.maximum(out - 1, 0)
    np.testing.assert_allclose(rebuilt, req["e2e_s"].to_numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_plan_promises_and_verifies_an_end_to_end_target(capsys: pytest.CaptureFixture[str]) -> None:
    cat = load_catalog()
    base = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), load_factor=4.0,
                       slo=SLO(e2e_s=3600.0), **FAST)  # type: ignore[arg-type]
    free = plan_fleet(default_trace(), base)
    free_e2e = free.verification[0].replayed_e2e_at_slo_s
    assert free.verified and free_e2e is not None
    # a target under what the unbound plan replays forces more (or faster) capacity, verified end to end
    target = round(free_e2e * 0.6, 1)
    bound = plan_fleet(default_trace(), replace(base, slo=SLO(e2e_s=target)))
    check = bound.verification[0]
    assert bound.verified and check.replayed_e2e_at_slo_s is not None
    assert check.replayed_e2e_at_slo_s <= target < free_e2e
    assert (bound.plan.objective_usd or 0.0) > (free.plan.objective_usd or 0.0)
    # the CLI states the targets with their statistics, and the check at each
    rc = main(["plan", "--model", "Llama-3.1-8B", "--gpus", "H100-SXM", "--slo-statistic",
               "ttft=p99,tpot=mean,e2e=p90", "--slo-e2e-ms", f"{target * 1000:g}", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slo"]["e2e_s"] == pytest.approx(target)
    assert doc["slo"]["statistics"] == {"ttft": "p99", "tpot": "mean", "e2e": "p90"}
    first = doc["verification"][0]
    assert first["meets_slo"] and first["replayed_e2e_at_slo_s"] <= target
    assert all(w["e2e_at_slo_s"] is not None for w in first["by_window"] if w["requests"])


def test_an_unreachable_target_is_named_with_its_floor_and_options() -> None:
    cat = load_catalog()
    base = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"), cat.gpu("H200-SXM")),
                       slo=SLO(tpot_s=0.001), verify=False, **FAST)  # type: ignore[arg-type]
    r = plan_fleet(default_trace(), base)
    assert not r.plan.feasible
    floors = [n for n in r.notes if "out of reach" in n]
    assert len(floors) == 1 and floors[0].startswith("TPOT p99 <= 0.001 s") and "--precision all" in floors[0]
    assert not any("inventory" in n or "power budget" in n for n in r.notes)
    # end to end: the long answers cannot finish in 2 s on any candidate, at p99
    r = plan_fleet(default_trace(), replace(base, slo=SLO(e2e_s=2.0)))
    (e2e,) = [n for n in r.notes if "out of reach" in n]
    assert e2e.startswith("end-to-end p99 <= 2 s") and "output tokens takes" in e2e
    # a reachable SLO names no floor
    ok = plan_fleet(default_trace(), replace(base, slo=SLO()))
    assert ok.plan.feasible and not any("out of reach" in n for n in ok.notes)


def test_a_lone_prefill_is_its_chunks_one_after_the_other() -> None:
    from planner.plan.latency_floors import lone_prefill_s

    cat = load_catalog()
    perf = build_replica_perf(cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM"))
    budget = 2048.0
    for tokens in (100.0, 2048.0, 5000.0, 20_000.0):
        done, total = 0.0, 0.0
        while done < tokens:  # chunk by chunk, each attending to everything before it
            c = min(budget, tokens - done)
            total += float(perf.step_time_s(c, c * done + c * (c + 1) / 2.0, 0.0, 0.0))
            done += c
        got = float(lone_prefill_s(perf, np.array([tokens]), budget)[0])
        assert got == pytest.approx(total, rel=0.02), tokens

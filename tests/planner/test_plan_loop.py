"""The plan-replay loop's corrections, on hand-made checks: what each concludes from a miss."""

from __future__ import annotations

from planner.plan.sizing import CORRECTIONS, _cut_configs, _raise_windows, _split_phases
from planner.plan.verify import Verification, WindowCheck
from solvers.capacity import SLO, CapacityProblem, Config, Disaggregation, Role, SolveParams, Window, solve

FAST = SolveParams(max_time_in_seconds=5.0)

SLO_ = SLO(ttft_s=1.0, tpot_s=0.05)


def _problem(split: Disaggregation = Disaggregation.OFF) -> CapacityProblem:
    a = Config("a", "G1", Role.AGGREGATED, gpus=1, goodput_rps=10.0, price_per_gpu_hour=1.0, power_w=300)
    b = Config("b", "G1", Role.AGGREGATED, gpus=2, goodput_rps=19.0, price_per_gpu_hour=1.0, power_w=600)
    p = Config("p", "G1", Role.PREFILL, gpus=1, goodput_rps=30.0, price_per_gpu_hour=1.0, power_w=300)
    d = Config("d", "G1", Role.DECODE, gpus=1, goodput_rps=30.0, price_per_gpu_hour=1.0, power_w=300)
    return CapacityProblem(configs=(a, b, p, d), windows=tuple(Window(600.0 * k, 600.0, r)
                                                               for k, r in enumerate([15.0, 25.0, 15.0])),
                           disaggregation=split)


def _check(ttft: list[float], tpot: list[float]) -> Verification:
    rows = tuple(WindowCheck(window=w, start_s=600.0 * w, requests=100, replicas=(), gpus=1, attainment=0.9,
                             ttft_at_slo_s=t, tpot_at_slo_s=p, ttft_p50_s=t / 2, tpot_p50_s=p / 2)
                 for w, (t, p) in enumerate(zip(ttft, tpot, strict=True)))
    return Verification("plan", (), 1.0, len(rows), 300, 1.0, 0.9, max(ttft), max(tpot), False, False,
                        max(ttft), max(tpot), by_window=rows)


def test_raising_windows_touches_only_those_that_missed_and_adds_capacity_there() -> None:
    problem = _problem()
    plan = solve(problem, params=FAST)
    fixed, what = _raise_windows(problem, plan, _check([0.5, 4.0, 0.9], [0.01, 0.01, 0.01]), SLO_)
    before, after = [w.demand_rps for w in problem.windows], [w.demand_rps for w in fixed.windows]
    assert after[0] == before[0] and after[2] == before[2]
    goodput = {c.key: c.goodput_rps for c in problem.configs}
    served = sum(goodput[k] * n for k, n in plan.replicas(1).items())
    assert after[1] > served >= before[1]  # past what the plan served there: the re-solve must add some
    again = solve(fixed, params=FAST)
    assert sum(goodput[k] * n for k, n in again.replicas(1).items()) > served
    assert "1 of 3 replayed windows" in what and "window 1 at x4.00" in what
    assert fixed.configs == problem.configs


def test_cutting_a_split_plan_cuts_the_phase_that_missed() -> None:
    problem = _problem(Disaggregation.AUTO)
    split = solve(_problem(Disaggregation.ON), params=FAST)
    assert split.disaggregated
    fixed, what = _cut_configs(problem, split, _check([3.0, 3.0, 3.0], [0.01, 0.01, 0.01]), SLO_)
    cut = {c.key: c.goodput_rps / o.goodput_rps for c, o in zip(fixed.configs, problem.configs, strict=True)}
    assert cut["a"] == cut["b"] == cut["d"] == 1.0 and cut["p"] < 1.0  # TTFT missed: the prefill side
    assert what.startswith("p cut to x")
    fixed, _ = _cut_configs(problem, split, _check([3.0, 3.0, 3.0], [0.2, 0.2, 0.2]), SLO_)
    assert all(c.goodput_rps < o.goodput_rps for c, o in zip(fixed.configs, problem.configs, strict=True)
               if c.key in ("p", "d"))
    assert [c.__name__ for c in CORRECTIONS] == ["_cut_configs", "_raise_windows", "_split_phases"]


def test_a_tpot_miss_of_an_aggregated_plan_tries_separate_pools() -> None:
    problem = _problem(Disaggregation.AUTO)
    agg = solve(_problem(Disaggregation.OFF), params=FAST)
    assert not agg.disaggregated
    fixed = _split_phases(problem, agg, _check([0.5, 0.5, 0.5], [0.2, 0.2, 0.2]), SLO_)
    assert fixed is not None and fixed[0].disaggregation is Disaggregation.ON
    assert solve(fixed[0], params=FAST).disaggregated
    # not when TPOT held, not when the user fixed the mode, not for a plan already split
    assert _split_phases(problem, agg, _check([3.0, 3.0, 3.0], [0.01, 0.01, 0.01]), SLO_) is None
    assert _split_phases(_problem(Disaggregation.OFF), agg, _check([0.5] * 3, [0.2] * 3), SLO_) is None
    split = solve(_problem(Disaggregation.ON), params=FAST)
    assert _split_phases(problem, split, _check([0.5] * 3, [0.2] * 3), SLO_) is None


def test_a_plan_that_never_passed_is_not_presented_as_one() -> None:
    """Bursts of 60 req/s for 15 s on one round and one alternative: nothing passes, and every surface says
    there is no verified plan (the CLI exits 1, the exporter refuses it)."""
    import io

    from rich.console import Console

    from dashboards.tables import plan_headline
    from planner.catalog import load_catalog
    from planner.cli.plan_cmd import _render, report_json
    from planner.plan import PlanRequest, plan_fleet
    from traces.synth import synthesize
    from traces.synth_config import SynthConfig

    lengths = {"input": {"dist": "lognormal", "mean": 1000, "median": 900, "max": 8000},
               "output": {"dist": "lognormal", "mean": 200, "median": 150, "max": 2000}}
    bursts = {"kind": "mmpp", "mmpp": {"rates": [1.0, 60.0], "mean_sojourn_s": [200.0, 15.0]}}
    trace = synthesize(SynthConfig.model_validate(
        {"duration_s": 1200.0, "seed": 2, "lengths": lengths, "arrival": bursts}).to_spec())
    cat = load_catalog()
    report = plan_fleet(trace, PlanRequest(
        model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), slo=SLO(ttft_s=0.5, tpot_s=0.05),
        max_rounds=1, alternatives=1, max_num_seqs=(256,), max_batched_tokens=(8192,), params=FAST))
    assert report.plan.feasible and not report.verified and report.recommended is None
    assert not any(v.meets_slo for v in report.verification)
    assert plan_headline(report, "Llama-3.1-8B").startswith("No verified plan for Llama-3.1-8B")
    assert report_json(report, "Llama-3.1-8B")["verified"] is False
    out = io.StringIO()
    _render(report, "Llama-3.1-8B", Console(file=out, width=200))
    assert "NOT A PLAN" in out.getvalue() and "no verified plan" in out.getvalue()

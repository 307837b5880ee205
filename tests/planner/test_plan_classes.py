"""SLO classes in plan: per-class targets, a shared fleet weighed against a pool per class, each class
checked against its own targets in the replay, on every surface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.plan import PlanReport, PlanRequest, plan_fleet
from planner.plan.by_class import PER_CLASS, SHARED
from planner.plan.slo_classes import OTHER, SLOClass, labels, parse_slo_class, strictest, targets
from planner.plan.verify import Variant, verify
from solvers.capacity import SLO, Config, Role, SolveParams, Window, length_mix
from traces.default import default_trace
from traces.errors import InputError
from traces.schema import RequestTrace

FAST = dict(max_num_seqs=(128, 256), max_batched_tokens=(8192,), verify_windows=4, alternatives=1,
            params=SolveParams(max_time_in_seconds=10.0))
BATCH = SLOClass("batch", SLO(ttft_s=30.0, tpot_s=0.2))


def classed(share_interactive: float) -> RequestTrace:
    """The default hour with each request drawn into ``interactive`` or ``batch``."""
    tr = default_trace()
    rng = np.random.default_rng(0)
    cls = np.where(rng.random(tr.num_requests) < share_interactive, "interactive", "batch")
    return RequestTrace(df=tr.df.with_columns(pl.Series("slo_class", cls)), meta=tr.meta)


def request(slo: SLO, **kw: object) -> PlanRequest:
    cat = load_catalog()
    return PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), load_factor=8.0, slo=slo,
                       **{**FAST, "classes": (BATCH,), **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def strict_interactive() -> PlanReport:
    """A small, strict interactive class beside a large, loose batch class: pools per class pay."""
    return plan_fleet(classed(0.3), request(SLO(ttft_s=0.5, tpot_s=0.012)))


def test_the_cheaper_verified_layout_is_presented(strict_interactive: PlanReport) -> None:
    r = strict_interactive
    assert r.classes is not None and r.verified
    opts = {o.layout: o for o in r.classes.options}
    assert set(opts) == {SHARED, PER_CLASS} and all(o.verified for o in opts.values())
    assert r.classes.options[0].layout == r.classes.layout
    cheapest = min(opts.values(), key=lambda o: o.cost_usd or 0.0)
    assert r.classes.layout == cheapest.layout == PER_CLASS
    assert r.verification[0].cost_usd == pytest.approx(cheapest.cost_usd)
    # the presented plan is the pools: every configuration names its class, batch's serves batch alone
    keys = [c.key for c in r.plan.configs]
    assert any(k.endswith("[batch]") for k in keys) and any(k.endswith(f"[{OTHER}]") for k in keys)
    assert {c.slo_class for c in r.plan.configs} == {"batch", ""}
    assert "a pool per SLO class is presented" in r.notes[-1]


def test_each_class_is_held_to_its_own_targets(strict_interactive: PlanReport) -> None:
    checks = {c.name: c for c in strict_interactive.verification[0].by_class}
    assert set(checks) == {"batch", OTHER}
    assert checks["batch"].tpot_target_s == 0.2 and checks[OTHER].tpot_target_s == 0.012
    assert all(c.meets_slo and c.requests > 0 for c in checks.values())
    assert sum(c.requests for c in checks.values()) == strict_interactive.verification[0].requests


def test_a_shared_fleet_wins_when_the_targets_are_close() -> None:
    r = plan_fleet(classed(0.5), request(SLO(ttft_s=1.0, tpot_s=0.03)))
    assert r.classes is not None and r.classes.layout == SHARED and r.verified
    opts = {o.layout: o for o in r.classes.options}
    assert (opts[SHARED].cost_usd or 0.0) <= (opts[PER_CLASS].cost_usd or 0.0)
    # the shared fleet was scored for the strictest targets and serves every class
    assert all(not c.slo_class for c in r.plan.configs)


def test_a_class_is_routed_to_its_pool_only_and_fails_there_alone() -> None:
    """Two variants differ only in the batch pool's size: the interactive requests' outcome is identical
    (they never reach the batch pool), and only batch, held to a 50 ms TTFT, misses."""
    tr = classed(0.5)
    cat = load_catalog()
    model, gpu = cat.model("Llama-3.1-8B"), cat.gpu("H100-SXM")

    def cfg(name: str, cls: str) -> Config:
        return Config(key=name, gpu=gpu.name, role=Role.AGGREGATED, gpus=1, goodput_rps=10.0,
                      price_per_gpu_hour=1.0, power_w=500.0, slo_class=cls)

    short = RequestTrace(df=tr.df.filter(pl.col("arrival_s") < 300.0), meta=tr.meta)
    window = Window(start_s=0.0, duration_s=300.0, demand_rps=5.0)
    pools = (cfg("interactive-pool", ""), cfg("batch-pool", "batch"))
    tight = SLOClass("batch", SLO(ttft_s=0.05, tpot_s=0.2))
    variants = [Variant(label=f"batch x{n}", configs=pools, cost_usd=1.0,
                        replicas=((("batch-pool", n), ("interactive-pool", 2)),)) for n in (1, 4)]
    one, four = verify(short, variants, model=model, gpus={gpu.name: gpu}, windows=[window],
                       mix=length_mix(short), slo=SLO(ttft_s=2.0, tpot_s=0.1), classes=(tight,))
    a, b = ({c.name: c for c in v.by_class} for v in (one, four))
    assert a["batch"].requests + a[OTHER].requests == short.num_requests
    assert a[OTHER] == b[OTHER]  # the other pool and its requests are untouched by the batch pool's size
    assert a["batch"] != b["batch"]
    assert not a["batch"].meets_slo and a[OTHER].meets_slo and not one.meets_slo


def test_class_helpers() -> None:
    assert parse_slo_class("batch:20000:250", SLO.at(2.0, 0.1, "p90")).slo == SLO(20.0, 0.25, target=0.9)
    for bad in ("batch", "batch:1", ":1:2", "batch:x:2", "batch:0:2", "batch:1:-3"):
        with pytest.raises(InputError):
            parse_slo_class(bad, SLO())
    s = strictest(SLO(ttft_s=2.0, tpot_s=0.1), [BATCH, SLOClass("x", SLO(ttft_s=5.0, tpot_s=0.05))])
    assert (s.ttft_s, s.tpot_s) == (2.0, 0.05)
    tr = classed(0.5)
    lab = labels(tr, (BATCH,))
    assert set(lab.tolist()) == {"batch", OTHER}
    _tt, pt, _et = targets(lab, SLO(), (BATCH,))
    assert np.all(pt[lab == "batch"] == 0.2) and np.all(pt[lab == OTHER] == SLO().tpot_s)


def test_classes_the_trace_cannot_route_are_refused() -> None:
    with pytest.raises(InputError, match="no slo_class column"):
        plan_fleet(default_trace(), request(SLO()))
    with pytest.raises(InputError, match="no request has slo_class 'gold'"):
        plan_fleet(classed(0.5), request(SLO(), classes=(SLOClass("gold", SLO()),)))


def test_cli_prints_classes_and_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "classed.parquet"
    classed(0.3).df.write_parquet(path)
    code = main(["plan", "--trace", str(path), "--gpus", "H100-SXM", "--slo-ttft-ms", "500", "--slo-tpot-ms",
                 "12", "--slo-class", "batch:30000:200", "--json", "--time-limit-s", "5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["verified"]
    classes = {c["name"]: c for c in out["slo"]["classes"]}
    assert classes["batch"]["tpot_s"] == 0.2 and classes[OTHER]["tpot_s"] == 0.012
    assert out["layouts"]["presented"] in (SHARED, PER_CLASS)
    assert {o["layout"] for o in out["layouts"]["options"]} == {SHARED, PER_CLASS}
    assert {c["name"] for c in out["verification"][0]["by_class"]} == {"batch", OTHER}
    # a bad class is one line and exit code 2
    assert main(["plan", "--trace", str(path), "--slo-class", "batch:fast:200"]) == 2
    assert "--slo-class" in capsys.readouterr().err


def test_report_and_dashboard_tables_show_the_classes_and_layouts(strict_interactive: PlanReport) -> None:
    from dashboards import figures, tables
    from dashboards.report import plan_section, render_report

    r = strict_interactive
    classes = tables.class_layouts_table(r)
    assert classes["class"].to_list() == ["batch", OTHER] and set(classes["met"].to_list()) == {"yes"}
    layouts = tables.layouts_table(r)
    assert layouts["layout"].to_list()[0] == f"{PER_CLASS} (presented)" and layouts.height == 2
    fig = figures.class_targets_figure(r)
    assert [t.name for t in fig.data][:2] == ["TTFT p99 / target", "TPOT p99 / target"]
    ratios = [y for t in fig.data[:2] for y in t.y]
    assert all(0 < y <= 1.0 for y in ratios)  # every class within its own targets
    html = render_report("classes", [plan_section(r, model="Llama-3.1-8B")])
    assert "fleet layouts weighed" in html and "SLO classes in the presented plan" in html
    assert "per-class (presented)" in html

"""Where a plan runs: small plans in-process, big ones on Ray, and the same plan either way."""

from __future__ import annotations

import json

import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.plan import PlanRequest
from planner.plan.run import RAY_START_S, PlanWork, plan_work, use_ray
from planner.ray_runtime import RayMode
from solvers.capacity import candidate_count, length_mix, score_gpu
from traces.default import default_trace

VOLATILE = ("timing_s", "solve_wall_s")
"""Wall times: the only fields of ``plan --json`` that differ between two runs of the same plan."""


def test_candidate_count_is_the_rows_scored() -> None:
    cat = load_catalog()
    gpus = (cat.gpu("H100-SXM"), cat.gpu("A100-80GB-SXM"))
    request = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=gpus)
    mix = length_mix(default_trace())
    rows = sum(score_gpu(request.model, g, mix, request.scoring).height for g in request.gpus)
    assert candidate_count(request.model, request.gpus, request.scoring) == rows


def test_the_bundled_hour_plans_in_process_and_a_fleet_on_ray() -> None:
    cat = load_catalog()
    trace = default_trace()
    request = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=tuple(cat.gpus.values()))
    work = plan_work(trace, request)
    assert work.replayed_requests == trace.num_requests * 3  # 12 windows of 5 minutes, plan + 2 alternatives
    assert not use_ray(work, environ={}, cpus=2) and not use_ray(work, environ={}, cpus=16)
    fleet = PlanWork(candidates=work.candidates, replayed_requests=100 * work.replayed_requests)
    assert fleet.in_process_s > 2 * RAY_START_S and use_ray(fleet, environ={}, cpus=2)
    # a named cluster or a forced mode wins over the estimate
    assert use_ray(work, environ={"RAY_ADDRESS": "auto"}, cpus=2)
    assert use_ray(work, mode=RayMode.ON, environ={}) and not use_ray(fleet, mode=RayMode.OFF, environ={})


def _plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plan", "--gpus", "H100-SXM,A100-80GB-SXM", "--duration-s", "900", "--seed", "3", "--json",
                 *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verification"], "the plan was checked by replay"
    for key in VOLATILE:
        doc.pop(key)
    return json.dumps(doc, indent=2, sort_keys=True)


@pytest.mark.slow
def test_in_process_and_ray_give_byte_identical_plans(capsys: pytest.CaptureFixture[str]) -> None:
    """Scoring and replay tasks are pure functions of their arguments: the plan JSON (wall times aside) is
    the same byte for byte whether the sweeps ran in this process or as Ray tasks."""
    local = _plan_json(capsys, "--ray", "off")
    on_ray = _plan_json(capsys, "--ray", "on")
    assert local == on_ray

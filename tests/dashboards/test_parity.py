"""The dashboard and the CLI give the same numbers for the same scenario (one application layer)."""

from __future__ import annotations

import json

import pytest

from dashboards.scenario import AutoscaleSpec, autoscale_job, default_source
from planner.cli.main import main


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["bare", "vllm"])
def test_autoscaling_page_and_cli_agree(capsys: pytest.CaptureFixture[str], engine: str) -> None:
    rc = main(["autoscale-compare", "--policies", "hpa,mpc", "--rate-factor", "1", "--seed", "0",
               "--engine", engine, "--json"])
    assert rc == 0
    cli = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["policies"]}
    spec = AutoscaleSpec(model="Llama-3.1-8B", gpu="H100-SXM", policies=("hpa", "mpc"), engine=engine)
    page = autoscale_job(default_source(), 1.0, 0, spec, report=lambda *_: None).table().to_dicts()
    dash = {r["policy"]: r for r in page}
    assert set(dash) == set(cli)
    for name, row in cli.items():
        for k in ("gpu_hours", "attainment", "scale_actions", "peak_replicas"):
            assert dash[name][k] == pytest.approx(row[k], rel=1e-9), (name, k)

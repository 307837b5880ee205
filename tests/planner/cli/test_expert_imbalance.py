"""``--expert-imbalance`` reaches the perf model: replay's TPOT and ``fleetwise experts``' effect table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from planner.cli import experts_cmd, replay_cmd


def _app(*, verb: str) -> typer.Typer:
    app = typer.Typer()
    (experts_cmd if verb == "experts" else replay_cmd).register(app)

    @app.command()
    def _other() -> None:  # a second command keeps the verb as a sub-command name
        """Placeholder."""

    return app


def _replay_tpot(trace: Path, imbalance: float) -> float:
    args = ["replay", "--trace", str(trace), "--model", "Mixtral-8x7B", "--gpu", "H200-SXM", "--tp", "2",
            "--ep", "2", "--expert-imbalance", str(imbalance), "--json"]
    result = CliRunner().invoke(_app(verb="replay"), args)
    assert result.exit_code == 0, result.output
    (cls,) = json.loads(result.output)["classes"]
    return float(cls["tpot_p50_s"])


def test_larger_imbalance_raises_replayed_tpot(shared_traces: Path, tmp_path: Path) -> None:
    src = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    head = tmp_path / "code_head.csv"
    head.write_text("".join(src.read_text().splitlines(keepends=True)[:201]))
    balanced, skewed = _replay_tpot(head, 1.0), _replay_tpot(head, 2.0)
    assert skewed > balanced * 1.02


def test_replay_rejects_imbalance_below_one(tmp_path: Path) -> None:
    args = ["replay", "--model", "Mixtral-8x7B", "--gpu", "H200-SXM", "--expert-imbalance", "0.5"]
    result = CliRunner().invoke(_app(verb="replay"), args)
    assert result.exit_code != 0
    assert "expert_imbalance" in str(result.exception) + result.output


SMALL = ["experts", "--layers", "4", "--experts", "64", "--groups", "8", "--gpus", "16", "--redundant", "16",
         "--time-limit", "2", "--processes", "1", "--sigma", "1.0", "--json"]


def test_experts_json_carries_the_effect_of_each_plan() -> None:
    result = CliRunner().invoke(_app(verb="experts"), SMALL)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    eff = doc["effect"]
    assert eff["layout"] == "tp=16 pp=1 ep=16"
    names = [r["plan"] for r in eff["rows"]]
    assert names == ["uniform", "EPLB greedy", "fleetwise"]
    by = {r["plan"]: r for r in eff["rows"]}
    assert by["EPLB greedy"]["imbalance"] == doc["rows"][0]["aggregate"]
    # the less balanced plan never decodes faster than a perfect balance
    assert by["EPLB greedy"]["tpot_s"]["256"] >= by["uniform"]["tpot_s"]["256"]
    assert by["EPLB greedy"]["prefill_chunk_s"] > by["uniform"]["prefill_chunk_s"]


def test_experts_reports_why_when_the_layout_is_not_modelled() -> None:
    args = [*SMALL[:-1]]
    args[args.index("--gpus") + 1] = "24"  # 256 DeepSeek-V3 experts do not split over 24 GPUs
    args[args.index("--redundant") + 1] = "8"
    result = CliRunner().invoke(_app(verb="experts"), [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert "ep=24" in json.loads(result.output)["effect"]["skipped"]


def test_plan_request_validates_expert_imbalance() -> None:
    from planner.catalog import load_catalog
    from planner.plan import PlanRequest
    from traces.errors import InputError

    cat = load_catalog()
    ok = PlanRequest(model=cat.model("Mixtral-8x7B"), gpus=(cat.gpu("H200-SXM"),), expert_imbalance=1.3)
    assert ok.expert_imbalance == 1.3
    try:
        PlanRequest(model=cat.model("Mixtral-8x7B"), gpus=(cat.gpu("H200-SXM"),), expert_imbalance=0.8)
    except InputError as exc:
        assert exc.field == "expert_imbalance"
    else:
        raise AssertionError("an imbalance below 1 was accepted")

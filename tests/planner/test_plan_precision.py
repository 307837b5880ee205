"""Precision as a planning decision: weight and KV dtypes as candidates, native by default, quantization
chosen only when it pays and always flagged, verification replayed in the chosen precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.catalog import load_catalog
from planner.cli.main import main
from planner.perf.precision import BF16, Precision, native, parse_precision, parse_precisions
from planner.plan import PlanRequest, plan_fleet
from solvers.capacity import SLO, ScoringOptions, SolveParams, length_mix, score_gpu
from traces.errors import InputError


@pytest.fixture(scope="module")
def long_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AIConfigurator's Qwen3-32B problem in shape (4,000 input / 500 output tokens), at 6 req/s for
    two minutes so a plan is a handful of H200 replicas."""
    path = tmp_path_factory.mktemp("prec") / "long.parquet"
    assert main(["traces", "synth", "--out", str(path), "--rate", "6", "--duration", "120",
                 "--input-mean", "4000", "--input-median", "3995", "--output-mean", "500",
                 "--output-median", "499", "--seed", "3"]) == 0
    return path


def test_labels_native_choices_and_quality_notes() -> None:
    cat = load_catalog()
    qwen, dsv3 = cat.model("Qwen3-32B"), cat.model("DeepSeek-V3")
    assert native(qwen) == BF16 and native(dsv3) == Precision("fp8", "bf16")
    assert [p.label for p in parse_precisions("all", dsv3)] == ["fp8", "fp8+kv8"]
    assert parse_precisions("fp8, bf16,fp8", qwen) == (Precision("fp8"), BF16)
    assert BF16.quality_note(qwen) is None and native(dsv3).quality_note(dsv3) is None
    assert "quantized bf16 -> fp8" in (Precision("fp8").quality_note(qwen) or "")
    assert "upcast" in (BF16.quality_note(dsv3) or "")
    assert "fp8 KV" in (Precision("fp8", "fp8").quality_note(dsv3) or "")
    for bad in ("int4", "fp8+kv4", ""):
        with pytest.raises(InputError):
            parse_precision(bad)


def test_gpus_without_fp8_score_fp8_candidates_out_with_the_reason() -> None:
    cat = load_catalog()
    from traces.default import default_trace

    rows = score_gpu(cat.model("Llama-3.1-8B"), cat.gpu("A100-80GB-SXM"), length_mix(default_trace()),
                     ScoringOptions(max_num_seqs=(128,), max_batched_tokens=(8192,),
                                    precisions=(BF16, Precision("fp8"))))
    fp8 = rows.filter(rows["weight_dtype"] == "fp8")
    assert fp8.height and not fp8["feasible"].any()
    assert all("FP8" in r for r in fp8["reason"].to_list())
    assert rows.filter(rows["weight_dtype"] == "bf16")["feasible"].any()


def test_fp8_is_chosen_when_it_pays_flagged_and_verified_in_fp8(long_prompts: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    common = ["plan", "--trace", str(long_prompts), "--model", "Qwen3-32B", "--gpus", "H200-SXM",
              "--slo-ttft-ms", "1000", "--slo-tpot-ms", "20", "--json"]
    assert main([*common, "--precision", "native"]) == 0
    nat = json.loads(capsys.readouterr().out)
    assert main([*common, "--precision", "all"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["weight_dtype"] for c in nat["configs"]} == {"bf16"}
    assert any(c["weight_dtype"] == "fp8" for c in doc["configs"])
    assert doc["objective_usd"] <= nat["objective_usd"] * 0.99
    assert any("other precisions save" in n for n in doc["notes"])
    assert any("quantized bf16 -> fp8" in n for n in doc["notes"])
    # the checks replay the fp8 replicas planned (their keys name the precision); the presented plan
    # passed its replay
    first = doc["verification"][0]
    assert first["meets_slo"] is True and doc["recommended"] == first["label"]
    assert all("fp8" in k for v in doc["verification"] for k in v["configs"])
    assert doc["output_tokens_per_gpu_s"] > nat["output_tokens_per_gpu_s"]


def test_a_plan_that_misses_in_replay_is_corrected_until_one_passes(
        long_prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TPOT 30 ms on Qwen3-32B / H200: the first solve's TP2 replicas miss TPOT p99 in replay (31 ms); the
    loop derates what missed (at least one more replica each round) and re-solves until a plan passes."""
    assert main(["plan", "--trace", str(long_prompts), "--model", "Qwen3-32B", "--gpus", "H200-SXM",
                 "--slo-ttft-ms", "1000", "--slo-tpot-ms", "30", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rounds"] >= 2 and len(doc["corrections"]) >= doc["rounds"] - 1
    assert all("missed in replay" in c or "presenting" in c for c in doc["corrections"])
    first = doc["verification"][0]
    assert first["meets_slo"] is True and doc["recommended"] == first["label"]
    assert {c["key"] for c in doc["configs"]} == set(first["configs"])  # the plan shown is the one replayed


def test_a_tie_keeps_the_native_precision() -> None:
    cat = load_catalog()
    from traces.default import default_trace

    req = PlanRequest(model=cat.model("Llama-3.1-8B"), gpus=(cat.gpu("H100-SXM"),), verify=False,
                      max_num_seqs=(256,), max_batched_tokens=(8192,), slo=SLO(),
                      params=SolveParams(max_time_in_seconds=10.0),
                      precisions=parse_precisions("all", cat.model("Llama-3.1-8B")))
    rep = plan_fleet(default_trace(), req)
    # one replica carries the default trace in any precision: no saving, so no quantization
    assert {(c.weight_dtype, c.kv_dtype) for c in rep.plan.configs} == {("bf16", "bf16")}
    assert any("native precision (bf16) kept" in n for n in rep.notes)


def test_replay_serves_in_the_precision_asked(long_prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = {}
    for prec in ("native", "fp8+kv8"):
        assert main(["replay", "--trace", str(long_prompts), "--model", "Qwen3-32B", "--gpu", "H200-SXM",
                     "--tp", "2", "--precision", prec, "--json"]) == 0
        out[prec] = json.loads(capsys.readouterr().out)
    # one TP2 replica is overloaded at 6 req/s of 4k-token prompts: fp8 serves more tokens per second
    assert out["fp8+kv8"]["output_tokens_per_s"] > 1.2 * out["native"]["output_tokens_per_s"]
    assert main(["replay", "--trace", str(long_prompts), "--model", "Qwen3-32B", "--precision", "int4"]) == 2
    assert "--precision" in capsys.readouterr().err


def test_the_same_inputs_give_the_same_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """CP-SAT runs on deterministic time with an interleaved search (solvers.budget): the plan does not
    depend on which worker finished first or on the machine's load."""
    args = ["plan", "--gpus", "H100-SXM,A100-80GB-SXM,MI300X", "--no-verify", "--json", "--seed", "5"]
    docs = []
    for _ in range(2):
        assert main(args) == 0
        doc = json.loads(capsys.readouterr().out)
        for timing in ("timing_s", "solve_wall_s"):
            doc.pop(timing)
        docs.append(json.dumps(doc, sort_keys=True))
    assert docs[0] == docs[1]


def test_plan_says_which_gpus_numbers_are_measured(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--gpus", "H100-SXM,A100-80GB-SXM", "--no-verify", "--json", "--duration-s", "600"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("A100-80GB-SXM: numbers derived from the H100-SXM profile" in n for n in doc["notes"])
    assert set(doc["gpu_numbers"].values()) <= {"measured", "derived"}
    assert all(v == ("measured" if g == "H100-SXM" else "derived") for g, v in doc["gpu_numbers"].items())
    assert main([*args, "--measured-only"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["gpu"] for c in doc["configs"]} == {"H100-SXM"}
    assert not any("derived" in n for n in doc["notes"])
    assert main(["plan", "--gpus", "MI300X", "--measured-only", "--no-verify"]) == 2
    assert "--measured-only" in capsys.readouterr().err


def test_slo_statistic_is_what_is_scored_and_checked(long_prompts: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    common = ["plan", "--trace", str(long_prompts), "--model", "Qwen3-32B", "--gpus", "H200-SXM",
              "--slo-ttft-ms", "1000", "--slo-tpot-ms", "20", "--no-verify", "--json"]
    docs = {}
    for q in ("p99", "p50", "mean"):
        assert main([*common, "--slo-statistic", q]) == 0
        docs[q] = json.loads(capsys.readouterr().out)
    assert [docs[q]["slo"]["statistic"] for q in docs] == ["p99", "p50", "mean"]
    assert docs["p50"]["objective_usd"] <= docs["p99"]["objective_usd"]
    # a mean is looser than a p99 of the same targets: never more GPUs
    assert docs["mean"]["objective_usd"] <= docs["p99"]["objective_usd"]
    for bad in ("p100", "median-ish"):
        assert main([*common, "--slo-statistic", bad]) == 2
        assert "--slo-statistic" in capsys.readouterr().err

"""``fleetwise catalog list|show`` through the real entry point, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.catalog.load import PARAM_TOLERANCE
from planner.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_json_has_every_entry_with_derived_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "catalog", "list", "--json")
    assert rc == 0
    doc = json.loads(out)
    gpus = {g["name"]: g for g in doc["gpus"]}
    models = {m["name"]: m for m in doc["models"]}
    assert {"A100-80GB-SXM", "H100-SXM", "H200-SXM", "B200", "L40S", "MI300X"} <= set(gpus)
    assert gpus["H100-SXM"]["sources"]["idle_w"].startswith("measured")
    llama = models["Llama-3.1-8B"]["derived"]
    assert llama["kv_bytes_per_token_bf16"] == 131072
    assert round(llama["weight_gb_bf16"], 2) == 16.06
    for m in models.values():
        assert m["derived"]["computed_params"] / 1e9 == pytest.approx(m["params_b"], rel=PARAM_TOLERANCE)


def test_list_tables_name_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "catalog", "list")
    assert rc == 0
    for name in ("A100-80GB-SXM", "MI300X", "DeepSeek-V3", "Qwen3-235B-A22B", "GPT-3-175B"):
        assert name in out
    assert "MLA" in out and "256 top-8 +1" in out


def test_show_gpu_and_model(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "catalog", "show", "h100-sxm", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert (doc["kind"], doc["name"], doc["tdp_w"], doc["fp8_tflops"]) == ("gpu", "H100-SXM", 700.0, 1978.9)
    rc, out, _ = _run(capsys, "catalog", "show", "deepseek-ai/DeepSeek-V3", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["kind"] == "model" and doc["mla"]["kv_lora_rank"] == 512
    assert doc["derived"]["kv_values_per_token_per_layer"] == 576
    rc, out, _ = _run(capsys, "catalog", "show", "B200")
    assert rc == 0
    assert "idle_w" in out and "estimate" in out


def test_show_unknown_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "catalog", "show", "H999")
    assert rc == 2
    assert out == ""
    assert "no GPU or model named 'H999'" in err and "H100-SXM" in err
    assert "Traceback" not in err


def test_catalog_option_overrides_and_extends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpus:\n  H100-SXM:\n    price_per_hour: 2.1\n", encoding="utf-8")
    mine = tmp_path / "mine.yaml"
    mine.write_text("gpus:\n  L40S:\n    price_per_hour: 0.9\n", encoding="utf-8")
    rc, out, _ = _run(capsys, "catalog", "list", "--json", "--catalog", str(prices), "--catalog", str(mine))
    assert rc == 0
    gpus = {g["name"]: g for g in json.loads(out)["gpus"]}
    assert gpus["H100-SXM"]["price_per_hour"] == 2.1
    assert gpus["L40S"]["price_per_hour"] == 0.9
    rc, out, _ = _run(capsys, "catalog", "show", "H100-SXM", "--catalog", str(prices))
    assert rc == 0 and "2.1" in out and "user catalog" in out


@pytest.mark.parametrize("verb", [["list"], ["show", "H100-SXM"]])
def test_bad_catalog_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                verb: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  H100-SXM:\n    tdp_w: -700\n", encoding="utf-8")
    rc, out, err = _run(capsys, "catalog", *verb, "--catalog", str(bad))
    assert rc == 2
    assert out == ""
    assert "bad.yaml" in err and "gpus.H100-SXM.tdp_w" in err and "greater than 0" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_catalog_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "catalog", "list", "--catalog", str(tmp_path / "absent.yaml"))
    assert rc == 2
    assert "absent.yaml" in err and "file not found" in err

"""``fleetwise traces inspect|convert|synth`` driven through ``main([...])``: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.cli.main import main
from traces.load import load_trace

AZURE_CONV = Path("azure_llm_2023") / "AzureLLMInferenceTrace_conv.csv"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("verb", ["inspect", "convert", "synth"])
def test_every_verb_has_help_with_an_example(capsys: pytest.CaptureFixture[str], verb: str) -> None:
    code, out, _ = run(capsys, "traces", verb, "--help")
    assert code == 0
    assert "Examples" in out and f"fleetwise traces {verb}" in out


def test_inspect_prints_the_published_numbers(
    capsys: pytest.CaptureFixture[str], shared_traces: Path
) -> None:
    code, out, _ = run(capsys, "traces", "inspect", str(shared_traces / AZURE_CONV))
    assert code == 0
    for text in ("azure", "19,366", "5.53 req/s", "1.52", "1,020", "4,142", "601"):
        assert text in out, text


def test_inspect_json_and_plot(
    capsys: pytest.CaptureFixture[str], shared_traces: Path, tmp_path: Path
) -> None:
    png = tmp_path / "plots" / "mooncake.png"
    code, out, _ = run(
        capsys,
        "traces",
        "inspect",
        str(shared_traces / "mooncake" / "synthetic_trace.jsonl"),
        "--window",
        "30",
        "--plot",
        str(png),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "mooncake" and doc["block_size"] == 512
    stats = doc["stats"]
    assert stats["requests"] == 3993 and stats["window_s"] == 30.0
    assert stats["input_tokens"]["median"] == 11587.0
    assert 0.6 < stats["prefix_hit_ratio"] < 0.7
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_inspect_generic_csv_with_mapping(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    src.write_text("ts,prompt,completion\n1000,10,5\n1500,20,6\n3000,30,7\n", encoding="utf-8")
    code, out, _ = run(
        capsys,
        "traces",
        "inspect",
        str(src),
        "--map",
        "arrival_s=ts",
        "--map",
        "input_tokens=prompt",
        "--map",
        "output_tokens=completion",
        "--map",
        "time_unit=ms",
        "--json",
    )
    assert code == 0, out
    stats = json.loads(out)["stats"]
    assert stats["requests"] == 3 and stats["duration_s"] == pytest.approx(2.0)


def test_inspect_shows_repairs_and_dropped_rows(capsys: pytest.CaptureFixture[str]) -> None:
    sample = Path(__file__).resolve().parents[1] / "data" / "traces" / "burstgpt_sample.csv"
    code, out, _ = run(capsys, "traces", "inspect", str(sample))
    assert code == 0
    assert "burstgpt" in out and "dropped rows" in out and "repair:" in out and "models" in out
    code, out, _ = run(capsys, "traces", "inspect", str(sample), "--json")
    doc = json.loads(out)
    assert doc["dropped_rows"] == 1 and doc["repairs"] and doc["stats"]["models"] == 2


def test_inspect_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "traces", "inspect", str(tmp_path / "missing.csv"))
    assert_one_line_error(code, err, "missing.csv", "no such file")

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0000000,many,10\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "traces", "inspect", str(bad))
    assert_one_line_error(code, err, "bad.csv", "row 2")

    code, _, err = run(capsys, "traces", "inspect", str(bad), "--map", "arrival_s")
    assert_one_line_error(code, err, "--map", "col=source")

    code, _, err = run(capsys, "traces", "inspect", str(bad), "--window", "0")
    assert code == 2 and "Traceback" not in err


def test_convert_then_inspect(
    capsys: pytest.CaptureFixture[str], shared_traces: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "code.parquet"
    src = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    code, out, _ = run(capsys, "traces", "convert", str(src), "--out", str(out_file), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["rows"] == 8819 and doc["format"] == "azure" and Path(doc["out_path"]) == out_file
    assert load_trace(out_file).df.equals(load_trace(src).df)
    code, out, _ = run(capsys, "traces", "inspect", str(out_file))
    assert code == 0 and "8,819" in out and "4.18" in out

    code, _, err = run(capsys, "traces", "convert", str(tmp_path / "nope.jsonl"), "--out", str(out_file))
    assert_one_line_error(code, err, "nope.jsonl")


def test_synth_from_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "s.parquet"
    code, out, _ = run(
        capsys,
        "traces",
        "synth",
        "--out",
        str(out_file),
        "--rate",
        "8",
        "--duration",
        "900",
        "--arrival",
        "gamma",
        "--cv",
        "2",
        "--seed",
        "5",
        "--tenants",
        "4",
        "--block-size",
        "16",
        "--json",
    )
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats["requests"] == pytest.approx(8 * 900, rel=0.1)
    assert stats["interarrival_cv"] == pytest.approx(2.0, rel=0.15)
    # No length flags: the default trace's Azure-conv shape.
    assert stats["output_tokens"]["median"] == pytest.approx(129, rel=0.05)
    t = load_trace(out_file)
    assert t.num_requests == stats["requests"] and t.meta.block_size == 16
    assert t.df["tenant"].n_unique() == 4

    code, out, _ = run(
        capsys,
        "traces",
        "synth",
        "--out",
        str(tmp_path / "m.parquet"),
        "--duration",
        "600",
        "--arrival",
        "mmpp",
        "--mmpp-rates",
        "1,20",
        "--mmpp-sojourn",
        "50,10",
        "--input-mean",
        "600",
        "--input-median",
        "400",
    )
    assert code == 0 and "requests over" in out
    t = load_trace(tmp_path / "m.parquet")
    assert t.df["input_tokens"].median() == pytest.approx(400, rel=0.1)


def test_synth_from_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "day.yaml"
    spec.write_text(
        "duration_s: 300\nseed: 1\narrival: {kind: weibull, rate: 6, cv: 1.5}\n"
        "diurnal: {amplitude: 0.5, period_s: 100}\n",
        encoding="utf-8",
    )
    out_file = tmp_path / "day.parquet"
    code, out, _ = run(capsys, "traces", "synth", "--out", str(out_file), "--spec", str(spec), "--json")
    assert code == 0
    first = json.loads(out)
    assert first["seed"] == 1 and first["stats"]["requests"] == pytest.approx(1800, rel=0.15)
    code, out, _ = run(
        capsys, "traces", "synth", "--out", str(out_file), "--spec", str(spec), "--seed", "2", "--json"
    )
    assert code == 0 and json.loads(out)["seed"] == 2


def test_synth_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = str(tmp_path / "x.parquet")
    code, _, err = run(
        capsys, "traces", "synth", "--out", out_file, "--rate", "1", "--duration", "10", "--arrival", "gamma"
    )
    assert_one_line_error(code, err, "arrival", "needs a cv")

    code, _, err = run(capsys, "traces", "synth", "--out", out_file, "--rate", "1")
    assert_one_line_error(code, err, "--duration")

    code, _, err = run(
        capsys,
        "traces",
        "synth",
        "--out",
        out_file,
        "--duration",
        "10",
        "--arrival",
        "mmpp",
        "--mmpp-rates",
        "1;2",
        "--mmpp-sojourn",
        "1,1",
    )
    assert_one_line_error(code, err, "--mmpp-rates", "two numbers")

    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "duration_s: 10\narrival: {kind: poisson, rate: 1}\ntenants: {count: 2, blocksize: 16}\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "traces", "synth", "--out", out_file, "--spec", str(spec))
    assert_one_line_error(code, err, "bad.yaml", "tenants.blocksize", "Extra inputs")

    code, _, err = run(capsys, "traces", "synth", "--out", out_file, "--spec", str(spec), "--rate", "3")
    assert_one_line_error(code, err, "--rate", "cannot be combined with --spec")

    code, _, err = run(capsys, "traces", "synth", "--out", out_file, "--spec", str(tmp_path / "none.yaml"))
    assert_one_line_error(code, err, "none.yaml", "cannot read spec")
    assert not Path(out_file).exists()


def test_default_trace_check_and_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "default", "--check"]) == 0  # the shipped file is what the spec generates
    assert "up to date" in capsys.readouterr().out
    assert main(["traces", "default"]) == 2
    assert main(["traces", "default", "--write", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("exactly one of --write and --check") == 2 and "Traceback" not in err

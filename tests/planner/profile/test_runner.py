"""Options of the profiler run and the CLI verb without a GPU."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from planner.cli import profile_cmd
from planner.profile.runner import ProfileOptions, parse_only, unavailable_reason
from traces.errors import InputError


def _app() -> typer.Typer:
    app = typer.Typer()
    profile_cmd.register(app)
    app.command("noop")(lambda: None)  # a second verb keeps `profile` a subcommand, as in the real CLI
    return app


def test_sections_follow_run_order_and_engine_is_opt_in() -> None:
    assert "engine" not in ProfileOptions().sections()
    assert ProfileOptions(only=parse_only("steps,gemm")).sections() == ["gemm", "steps"]
    assert ProfileOptions(only=parse_only("gemm"), validate_engine=True).sections() == ["gemm", "engine"]


def test_unknown_sections_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown section"):
        parse_only("gemm,flops")


def test_cli_rejects_bad_only_as_input_error() -> None:
    # planner.cli.main turns InputError into one line and exit code 2
    result = CliRunner().invoke(_app(), ["profile", "--only", "flops"])
    assert isinstance(result.exception, InputError)
    assert result.exception.field == "--only" and "gemm" in str(result.exception)


def test_cli_explains_what_is_missing_without_a_gpu() -> None:
    reason = unavailable_reason()
    if reason is None:
        pytest.skip("torch and a CUDA GPU are present here: the profiler would run")
    result = CliRunner().invoke(_app(), ["profile", "--quick"])
    assert result.exit_code == 2
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "NVIDIA GPU" in text and "fleetwise[profile]" in text

"""Result tables, summary arithmetic, Parquet writer and ``fleetwise replay`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from planner.catalog import load_catalog
from planner.cli import replay_cmd
from planner.sim import EngineConfig, SimConfig, SLOTarget, replay
from planner.sim.testing import LinearPerf, make_trace, poisson_trace
from planner.sim.writer import write_result
from traces.errors import InputError


def test_summary_numbers_follow_from_the_tables(tmp_path: Path) -> None:
    gpu = load_catalog().gpu("H100-SXM")
    trace = poisson_trace(500, 20.0, 7)
    classes = ["interactive" if i % 2 else "batch" for i in range(500)]
    trace = make_trace(trace.df["arrival_s"].to_numpy(), trace.df["input_tokens"].to_numpy(),
                       trace.df["output_tokens"].to_numpy(), slo_class=classes)
    cfg = SimConfig(replicas=2, slo=(("interactive", SLOTarget(ttft_s=0.05, tpot_s=0.1)),),
                    default_slo=SLOTarget(ttft_s=10.0, tpot_s=1.0))
    perf = LinearPerf(gpus_per_replica=2)
    res = replay(trace, perf, config=cfg, gpu=gpu)
    s = res.summary
    req = res.requests
    assert s.makespan_s == pytest.approx(req["finish_s"].max())
    assert s.gpu_hours == pytest.approx(2 * 2 * s.makespan_s / 3600)
    assert s.cost_usd == pytest.approx(s.gpu_hours * gpu.price_per_hour)
    inter = req.filter(pl.col("slo_class") == "interactive")
    ok = ((inter["ttft_s"] <= 0.05) & (inter["tpot_s"].fill_null(0.0) <= 0.1)).mean()
    by_class = {c.slo_class: c for c in s.classes}
    assert by_class["interactive"].attainment == pytest.approx(ok)
    assert by_class["batch"].attainment == 1.0
    assert (req["e2e_s"] - (req["finish_s"] - req["arrival_s"])).abs().max() == pytest.approx(0.0)
    # energy: busy time at the linear perf's busy power, the rest idle (per GPU, 2 GPUs per replica)
    busy_frac = s.utilization
    expected_kwh = 2 * 2 * s.makespan_s * (busy_frac * 470.0 + (1 - busy_frac) * gpu.idle_w) / 3.6e6
    assert s.energy_kwh == pytest.approx(expected_kwh, rel=0.02)
    assert res.power is not None
    assert set(res.power["scope"].unique()) == {"gpu", "server", "rack", "row"}
    def per_t(scope: str) -> np.ndarray:
        assert res.power is not None
        frame = res.power.filter(pl.col("scope") == scope).group_by("t_s").agg(pl.col("power_w").sum())
        return frame.sort("t_s")["power_w"].to_numpy()


    np.testing.assert_allclose(per_t("gpu"), per_t("row"))
    paths = write_result(res, tmp_path / "out")
    assert pl.read_parquet(paths[0]).equals(req)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["completed"] == 500


def test_too_long_request_is_rejected_not_hung() -> None:
    trace = make_trace(np.array([0.0, 0.1]), np.array([100, 5000]), np.array([10, 10]))
    res = replay(trace, LinearPerf(kv_tokens=1000), config=SimConfig(replicas=1))
    assert res.requests["rejected"].to_list() == [False, True]
    assert res.summary.rejected == 1 and res.summary.classes[0].attainment == 0.5


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match="max_batched_tokens"):
        EngineConfig(max_batched_tokens=16, max_num_seqs=32)
    with pytest.raises(InputError, match="output_tokens"):
        replay(make_trace(np.array([0.0]), np.array([5]), np.array([0])), LinearPerf(),
               config=SimConfig(replicas=1))
    with pytest.raises(InputError, match="block size"):
        trace = make_trace(np.array([0.0]), np.array([50]), np.array([3]), prefix_hashes=[[1]], block_size=24)
        replay(trace, LinearPerf(), config=SimConfig(replicas=1))
    with pytest.raises(InputError, match="shards"):
        SimConfig(replicas=2, shards=3)


def _app() -> typer.Typer:
    app = typer.Typer()
    replay_cmd.register(app)

    @app.command()
    def _other() -> None:
        """Placeholder so that ``replay`` stays a sub-command."""

    return app


def test_replay_cli_on_real_azure_trace(shared_traces: Path, tmp_path: Path) -> None:
    trace = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    result = CliRunner().invoke(_app(), ["replay", "--trace", str(trace), "--model", "Llama-3.1-8B", "--gpu",
                                         "H100-SXM", "--replicas", "2", "--slo-ttft-ms", "500", "--json",
                                         "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["requests"] == 19366 and doc["completed"] == 19366 and doc["violations"] == 0
    assert doc["classes"][0]["ttft_target_s"] == 0.5
    ts = pl.read_parquet(tmp_path / "timeseries.parquet")
    assert float(ts["utilization"].max()) <= 1.0 + 1e-9  # type: ignore[arg-type]
    assert float(ts["kv_usage"].max()) <= 1.0  # type: ignore[arg-type]
    assert (tmp_path / "power.parquet").exists()


def test_replay_cli_with_autoscaler_and_power_cap(shared_traces: Path, tmp_path: Path) -> None:
    trace = shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    result = CliRunner().invoke(_app(), [
        "replay", "--trace", str(trace), "--replicas", "2", "--autoscale", "target-tracking",
        "--max-replicas", "6", "--row-budget-w", "6000", "--capping", "polca", "--server-base-w", "1000",
        "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["completed"] == doc["requests"] == 19366 and doc["violations"] == 0
    assert doc["pools"][0]["name"] == "default"
    cap = doc["capping"]
    assert cap["row_budget_w"] == 6000 and cap["policy_calls"] > 0
    reps = pl.read_parquet(tmp_path / "replicas.parquet")
    assert reps.height >= 2 and (reps["stopped_s"] >= reps["requested_s"]).all()
    ts = pl.read_parquet(tmp_path / "timeseries.parquet")
    assert {"replicas_serving", "replicas_starting", "replicas_draining"} <= set(ts.columns)
    power = pl.read_parquet(tmp_path / "power.parquet")
    assert set(power["scope"].unique()) == {"gpu", "server", "rack", "row"}


def test_replay_cli_rejects_unknown_policies() -> None:
    # (the real CLI turns InputError into one line and exit 2; this bare app lets it through)
    bad = CliRunner().invoke(_app(), ["replay", "--replicas", "1", "--autoscale", "nope"])
    assert isinstance(bad.exception, InputError) and "unknown autoscaling policy" in str(bad.exception)
    bad = CliRunner().invoke(_app(), ["replay", "--replicas", "1", "--capping", "polca"])
    assert isinstance(bad.exception, InputError) and "row budget" in str(bad.exception)


def test_a_hand_over_past_the_last_interval_extends_the_time_series() -> None:
    """The engine's output delay can carry the last token into an interval no step ran in (a plan's
    verification crashed on it): the time series then covers the makespan with an idle interval."""
    # the engine sizes its series to the last arrival (8 s: 10 one-second intervals) and the last
    # request finishes well inside it
    trace = make_trace(np.array([0.0, 8.0]), np.array([100, 100]), np.array([5, 5]))
    dry = replay(trace, LinearPerf(), config=SimConfig(replicas=1, interval_s=1.0))
    last = float(dry.requests["finish_s"].max())
    assert last < 9.0
    # an output delay that moves the last token past those 10 intervals
    delay = float(10.25 - last)
    cfg = SimConfig(replicas=1, interval_s=1.0, engine=EngineConfig(output_delay_s=delay))
    res = replay(trace, LinearPerf(), config=cfg)
    assert res.summary.makespan_s == pytest.approx(last + delay)
    assert res.timeseries.height == int(np.ceil(last + delay))
    assert res.timeseries["utilization"].to_list()[-1] == 0.0

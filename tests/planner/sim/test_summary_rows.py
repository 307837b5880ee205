"""The one wording of a replay summary, shared by ``fleetwise replay``, the dashboard and reports."""

from __future__ import annotations

from rich.console import Console

from dashboards.tables import replay_table
from planner.cli.replay_cmd import print_summary
from planner.sim import SimConfig, replay
from planner.sim.summary_rows import VIOLATIONS_ROW, summary_rows
from planner.sim.testing import LinearPerf, poisson_trace


def test_rows_name_the_results_own_numbers() -> None:
    res = replay(poisson_trace(200, 4.0, 1), LinearPerf(), config=SimConfig(replicas=3))
    rows = dict(summary_rows(res))
    s = res.summary
    assert rows["requests (completed / rejected)"] == f"{s.requests:,} ({s.completed:,} / {s.rejected:,})"
    assert rows["replicas x GPUs per replica"] == "3 x 1"
    assert rows["GPU-hours"] == f"{s.gpu_hours:,.2f}"
    assert VIOLATIONS_ROW not in rows  # only shown when the engine broke an invariant
    assert "energy" not in rows and "cost" not in rows  # no GPU spec, no energy or price


def test_cli_and_dashboard_show_the_same_rows() -> None:
    res = replay(poisson_trace(100, 2.0, 2), LinearPerf(), config=SimConfig(replicas=2))
    rows = summary_rows(res)
    table = replay_table(res)
    assert list(zip(table["metric"], table["value"], strict=True)) == list(rows)
    console = Console(record=True, width=200)
    print_summary(res, console, title="t", out=None)
    text = console.export_text()
    for name, value in rows:
        assert name in text and value in text

"""Every verb's tables stay readable in an 80-column terminal: no cell or header cut to an ellipsis and
no table line wider than the terminal (prose notes are printed soft-wrapped, for the terminal to wrap;
``fleetwise power`` is checked in its own test, on a small row)."""

from __future__ import annotations

import pytest

from planner.cli.main import main

BOX = "│┃─━┏┓└┘┡┩┼╇"
"""Characters that only table borders and rules print."""

VERBS = [
    ("replay",),
    ("plan",),
    ("experts",),
    ("perf", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--decode-batch", "64", "--context", "2048"),
    ("catalog", "list"),
    ("traces", "inspect", "default"),
]


@pytest.mark.parametrize("argv", VERBS, ids=lambda a: a[0] if a[0] != "traces" else "traces-inspect")
def test_tables_fit_80_columns(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert "…" not in out, [line for line in out.splitlines() if "…" in line]
    table = [line for line in out.splitlines() if any(c in line for c in BOX)]
    assert table and max(len(line) for line in table) <= 80

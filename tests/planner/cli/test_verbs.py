"""The verb table: a command line imports only the module of the verb it names, and the table matches what
each module registers."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import typer

from planner.cli.main import build_app, main
from planner.cli.verbs import VERBS


def _names(app: typer.Typer) -> set[str]:
    cmds = {c.name for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    return {n for n in cmds | groups if n}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_module_registers_exactly_its_verb_with_its_summary(verb: str) -> None:
    module, text = VERBS[verb]
    app = typer.Typer()
    importlib.import_module(module).register(app)
    assert _names(app) == {verb}
    helps = [c.help for c in app.registered_commands] + [g.typer_instance.info.help
                                                         for g in app.registered_groups]
    assert str(helps[0]).split("\n")[0] == text


def test_the_full_app_has_every_verb() -> None:
    assert _names(build_app()) == set(VERBS)


def test_a_light_verb_does_not_import_the_planner() -> None:
    """``fleetwise catalog list`` in a fresh interpreter: the planner, OR-Tools and Ray stay unimported."""
    code = ("import sys; from planner.cli.main import main; rc = main(['catalog', 'list']); "
            "heavy = [m for m in ('planner.plan', 'ortools', 'ray', 'scipy.stats') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "H100-SXM" in out.stdout


HEAVY = ("planner.plan", "ortools", "ray", "scipy", "numba", "pandas", "planner.sim.engine")
"""What no verb's ``--help`` may import (each costs 0.1-0.6 s of every start; issue 22)."""


@pytest.mark.parametrize("argv", [[v, "--help"] for v in sorted(VERBS)] + [
    ["bench", b, "--help"] for b in ("traces", "perf", "replay", "plan", "startup")], ids=" ".join)
def test_no_help_imports_the_solvers_the_simulator_or_ray(argv: list[str]) -> None:
    """Every verb's help in a fresh interpreter leaves OR-Tools, Ray, scipy, numba and the planner unloaded
    (a check on what is imported, not a timing: the machine is shared and noisy)."""
    code = (f"import sys; from planner.cli.main import main; rc = main({argv!r}); "
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_the_verb_list_needs_no_verb_module() -> None:
    """``fleetwise --help`` lists every verb with its summary from the table, importing none of them."""
    code = ("import sys; from planner.cli.main import main; rc = main(['--help']); "
            "loaded = [m for m in sys.modules if m.endswith('_cmd')]; print('LOADED', loaded); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout
    for verb in VERBS:
        assert f" {verb} " in out.stdout


def test_unknown_verbs_still_get_the_full_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_bench_startup_runs_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    """``fleetwise bench startup`` measures whole processes both ways (numbers, not timed assertions)."""
    from planner.bench.startup import measure
    from planner.cli.bench_startup import default_commands

    assert ("--help",) in default_commands() and ("plan", "--help") in default_commands()
    (row,) = measure([("catalog", "--help")], repeats=1)
    assert row.returncode == 0 and row.seconds > 0 and row.eager_seconds > 0
    assert row.command == "fleetwise catalog --help"
    assert main(["bench", "startup", "--help"]) == 0
    assert "100-request replay" in capsys.readouterr().out

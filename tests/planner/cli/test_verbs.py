"""The verb table: a command line imports only the module of the verb it names, and the table matches what
each module registers."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

from planner.cli.main import VERBS, build_app, main


def _names(app: typer.Typer) -> set[str]:
    cmds = {c.name for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    return {n for n in cmds | groups if n}


@pytest.mark.parametrize(("verb", "module"), sorted(VERBS.items()))
def test_each_module_registers_exactly_its_verb(verb: str, module: str) -> None:
    app = typer.Typer()
    importlib.import_module(module).register(app)
    assert _names(app) == {verb}


def test_the_full_app_has_every_verb() -> None:
    assert _names(build_app()) == set(VERBS)


def test_a_light_verb_does_not_import_the_planner() -> None:
    """``fleetwise catalog list`` in a fresh interpreter: the planner, OR-Tools and Ray stay unimported."""
    code = ("import sys; from planner.cli.main import main; rc = main(['catalog', 'list']); "
            "heavy = [m for m in ('planner.plan', 'ortools', 'ray', 'scipy.stats') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "H100-SXM" in out.stdout


def test_unknown_verbs_still_get_the_full_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err

"""Usage errors through the installed ``fleetwise`` console script: one line on stderr, exit code 2.

Run as a user runs it (a subprocess of the venv's script), with whatever typer pip installed: typer 0.26
and later raise their vendored click's exceptions, which a handler for click's own lets through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "fleetwise"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the console script is not installed in this environment")
@pytest.mark.parametrize(("args", "needle"), [
    (("replay", "--replicas", "abc"), "Invalid value for '--replicas'"),
    (("replya",), "No such command 'replya'"),
    (("replay", "--bogus"), "No such option: --bogus"),
    (("traces", "inspect"), "Missing argument"),
    (("replay", "--engine", "tgi"), "unknown engine 'tgi'"),
])
def test_usage_error_is_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    res = run(*args)
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the console script is not installed in this environment")
def test_no_arguments_shows_help_and_version_prints_one_line() -> None:
    res = run()
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert "replay" in res.stdout + res.stderr
    ver = run("--version")
    assert ver.returncode == 0 and ver.stdout.startswith("fleetwise ") and len(ver.stdout.splitlines()) == 1


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the console script is not installed in this environment")
def test_replay_out_onto_an_existing_file_is_refused_before_replaying(tmp_path: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    res = run("replay", "--trace", "default", "--out", str(target))
    assert res.returncode == 2 and "--out names an existing file" in res.stderr
    assert "Traceback" not in res.stderr
    assert target.read_text() == "mine"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the console script is not installed in this environment")
def test_default_is_a_trace_for_inspect_too() -> None:
    import json

    res = run("traces", "inspect", "default", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["stats"]["requests"] == 19_902 and doc["format"] == "canonical"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the console script is not installed in this environment")
def test_stopping_the_dashboard_verb_stops_its_server() -> None:
    import signal
    import socket
    import time

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def listening() -> bool:
        with socket.socket() as c:
            c.settimeout(0.5)
            return c.connect_ex(("127.0.0.1", port)) == 0

    proc = subprocess.Popen([str(SCRIPT), "dashboard", "--headless", "--address", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not listening():
            assert proc.poll() is None and time.monotonic() < deadline, "the server never listened"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # to fleetwise only, as a service manager would
        proc.wait(30)
        deadline = time.monotonic() + 20
        while listening():
            assert time.monotonic() < deadline, "the Streamlit server outlived fleetwise"
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()

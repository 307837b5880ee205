"""``fleetwise dashboard``: start the Streamlit what-if dashboard (``dashboards/app.py``)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.verbs import summary
from traces.errors import InputError

EXAMPLE = """
Example:

  fleetwise dashboard                      # http://localhost:8501, opens a browser tab
  fleetwise dashboard --port 8600 --address 0.0.0.0 --headless
"""


def app_path() -> Path:
    """The Streamlit script of the dashboard inside the installed package."""
    import dashboards

    return Path(dashboards.__file__).resolve().parent / "app.py"


def streamlit_command(*, port: int, address: str, headless: bool) -> list[str]:
    """The ``streamlit run`` command line (its own Python, so the dashboard sees this install).

    Raises:
        InputError: the port is outside 1..65535.

    >>> streamlit_command(port=8501, address="127.0.0.1", headless=True)[3:5]
    ['run', '--server.port=8501']
    """
    if not 1 <= port <= 65535:
        raise InputError(f"port {port} out of range", field="--port", expected="1..65535")
    from dashboards.scenario import MAX_UPLOAD_MB

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        f"--server.port={port}",
        f"--server.address={address}",
        f"--server.headless={'true' if headless else 'false'}",
        f"--server.maxUploadSize={MAX_UPLOAD_MB}",
        "--browser.gatherUsageStats=false",
        str(app_path()),
    ]


def register(app: typer.Typer) -> None:
    """Add ``fleetwise dashboard``."""

    @app.command("dashboard", help=summary("dashboard") + EXAMPLE)
    def dashboard(
        port: Annotated[int, typer.Option(help="TCP port to serve on")] = 8501,
        address: Annotated[str, typer.Option(help="interface to bind (0.0.0.0 for every one)")] = "localhost",
        headless: Annotated[bool, typer.Option(help="do not open a browser tab")] = False,
    ) -> int:
        cmd = streamlit_command(port=port, address=address, headless=headless)
        typer.echo(f"fleetwise dashboard on http://{address}:{port} (Ctrl+C stops it)", err=True)
        return run_until_stopped(cmd)


def run_until_stopped(cmd: list[str], grace_s: float = 10.0) -> int:
    """Run the server and take it down with this process: Ctrl+C, SIGTERM or SIGHUP to ``fleetwise``
    stop the server too (a plain child would outlive a SIGTERM sent to its parent alone, keeping the port).
    """
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the server got the terminal's SIGINT as well
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

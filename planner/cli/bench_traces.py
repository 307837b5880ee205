"""(being built: this module's owner replaces this file.)"""

from __future__ import annotations

import typer


def register(bench_app: typer.Typer) -> None:
    """Add this module's benchmark to ``fleetwise bench``."""

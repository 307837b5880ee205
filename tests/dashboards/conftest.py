"""Fixtures of the dashboard tests: a fresh AppTest of the real app script."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@pytest.fixture()
def app() -> AppTest:
    """The dashboard, run once on its first page (the bundled default trace)."""
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at

"""Fixtures of the live tests: a real Prometheus server on loopback, free ports, polling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.prometheus import PromServer, free_port, run_prometheus, wait_for


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PromServer]:
    """A fresh Prometheus for one test."""
    with run_prometheus(tmp_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def prometheus_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    """A Prometheus shared by the tests of one module (its first scrape takes ~5 s to be discovered)."""
    with run_prometheus(tmp_path_factory.mktemp("prometheus")) as srv:
        yield srv


@pytest.fixture
def free_tcp_port() -> Callable[[], int]:
    """A function returning a free loopback port."""
    return free_port


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(cond, timeout_s, what)``: poll until true or fail naming ``what``."""
    return wait_for

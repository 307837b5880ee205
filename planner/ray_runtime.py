"""Starting or joining Ray the same way everywhere.

The embedded default is a local Ray with no dashboard and quiet logs: a laptop user never sees Ray.
``address`` joins an existing cluster (``ray://host:10001`` or ``host:6379``), unchanged code otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Use Ray inside the block: join ``address`` or start a local instance, shut down what we started.

    If Ray is already initialised (tests, notebooks, a driver that set it up), it is used as it is and
    left running.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or max(1, os.cpu_count() or 1), **kwargs)
    try:
        yield
    finally:
        ray.shutdown()

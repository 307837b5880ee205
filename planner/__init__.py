"""fleetwise planner: hardware/model catalog, per-node performance models, replay simulator, CLI.

Kept import-light on purpose: ``planner.profile`` must run on GPU hosts that have torch but not the
planner's own dependencies.
"""

from planner.numba_cache import configure as _configure_numba_cache

_configure_numba_cache()

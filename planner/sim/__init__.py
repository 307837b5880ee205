"""Trace replay simulator: vLLM-class engines, routers, prefix cache, sharded on Ray; autoscaling, power
capping and prefill/decode pools in the loop (:mod:`planner.sim.cluster`).

>>> from planner.sim import SimConfig, replay
>>> SimConfig(replicas=4).router.value
'least-outstanding'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traces.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from planner.sim.cluster import replay_cluster
    from planner.sim.coldstart import FITTED_COLD_START, LognormalMixture
    from planner.sim.config import (
        AutoscaleConfig,
        EngineConfig,
        PowerConfig,
        RouterName,
        SimConfig,
        SLOTarget,
    )
    from planner.sim.pools import ClusterConfig, KVLink, Pool, PoolRole
    from planner.sim.replay import replay
    from planner.sim.result import CappingStats, ClassSummary, PoolSummary, SimResult, SimSummary

lazy_exports(__name__, {
    "replay_cluster": "planner.sim.cluster",
    "FITTED_COLD_START": "planner.sim.coldstart",
    "LognormalMixture": "planner.sim.coldstart",
    "AutoscaleConfig": "planner.sim.config",
    "EngineConfig": "planner.sim.config",
    "PowerConfig": "planner.sim.config",
    "RouterName": "planner.sim.config",
    "SimConfig": "planner.sim.config",
    "SLOTarget": "planner.sim.config",
    "ClusterConfig": "planner.sim.pools",
    "KVLink": "planner.sim.pools",
    "Pool": "planner.sim.pools",
    "PoolRole": "planner.sim.pools",
    "replay": "planner.sim.replay",
    "CappingStats": "planner.sim.result",
    "ClassSummary": "planner.sim.result",
    "PoolSummary": "planner.sim.result",
    "SimResult": "planner.sim.result",
    "SimSummary": "planner.sim.result",
})

__all__ = ["FITTED_COLD_START", "AutoscaleConfig", "CappingStats", "ClassSummary", "ClusterConfig",
           "EngineConfig", "KVLink", "LognormalMixture", "Pool", "PoolRole", "PoolSummary", "PowerConfig",
           "RouterName", "SLOTarget", "SimConfig", "SimResult", "SimSummary", "replay", "replay_cluster"]

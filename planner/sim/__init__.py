"""Trace replay simulator: vLLM-class engines, routers, prefix cache, sharded on Ray; autoscaling, power
capping and prefill/decode pools in the loop (:mod:`planner.sim.cluster`).

>>> from planner.sim import SimConfig, replay
>>> SimConfig(replicas=4).router.value
'least-outstanding'
"""

from planner.sim.cluster import replay_cluster
from planner.sim.coldstart import FITTED_COLD_START, LognormalMixture
from planner.sim.config import AutoscaleConfig, EngineConfig, PowerConfig, RouterName, SimConfig, SLOTarget
from planner.sim.pools import ClusterConfig, KVLink, Pool, PoolRole
from planner.sim.replay import replay
from planner.sim.result import CappingStats, ClassSummary, PoolSummary, SimResult, SimSummary

__all__ = ["FITTED_COLD_START", "AutoscaleConfig", "CappingStats", "ClassSummary", "ClusterConfig",
           "EngineConfig", "KVLink", "LognormalMixture", "Pool", "PoolRole", "PoolSummary", "PowerConfig",
           "RouterName", "SLOTarget", "SimConfig", "SimResult", "SimSummary", "replay", "replay_cluster"]

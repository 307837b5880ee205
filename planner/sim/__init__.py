"""Trace replay simulator: vLLM-class engines, routers, prefix cache, sharded on Ray.

>>> from planner.sim import SimConfig, replay
>>> SimConfig(replicas=4).router.value
'least-outstanding'
"""

from planner.sim.config import EngineConfig, RouterName, SimConfig, SLOTarget
from planner.sim.replay import replay
from planner.sim.result import ClassSummary, SimResult, SimSummary

__all__ = ["ClassSummary", "EngineConfig", "RouterName", "SLOTarget", "SimConfig", "SimResult", "SimSummary",
           "replay"]

"""The MPC's risk settings (``fleetwise autoscale-compare --mpc-risk``).

Why a module of its own that imports nothing: the CLI shows the choices and the default in its help, and
:mod:`solvers.scaling.policy`, where :func:`~solvers.scaling.policy.with_risk` applies them, imports the
MPC's CP-SAT model.
"""

from __future__ import annotations

from enum import StrEnum


class Risk(StrEnum):
    """How much of a burst's tail the MPC buys for (:func:`solvers.scaling.policy.with_risk`)."""

    PLAIN = "plain"
    BURST_AVERSE = "burst-averse"
    LOAD_FOLLOWING = "load-following"

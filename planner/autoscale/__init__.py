"""Autoscaling policies that run unchanged in the replay simulator and against live Prometheus data.

A policy is a pure function ``decide(ctx: ScalingContext) -> ScalingDecision`` (see
:mod:`planner.autoscale.context`); its typed state travels inside the context and the decision.
"""

"""Contracts between the simulator and what plugs into it (scaling policies, power capping).

They sit below both sides: the simulator, the live controller and the policies in ``planner.autoscale``,
``planner.power`` and ``solvers`` import them, and they import nothing of fleetwise's.
"""

"""Scaling actions: the forecast-driven MPC (CP-SAT over replicas per step), its forecast and the
replica capacity it plans with."""

"""Benchmarks behind ``fleetwise bench``: what is measured and how (the verbs in :mod:`planner.cli` only
parse flags and print)."""

"""The ``fleetwise`` command line: one module per verb, registered in :mod:`planner.cli.main`."""

"""Defaults of the benchmarks that ``fleetwise bench`` shows as option defaults.

Why a module of constants that imports nothing: ``fleetwise bench --help`` registers every benchmark's
options, and a default read from the benchmark's own module would import numpy and polars (and with
them the benchmark) before the help prints.
"""

from __future__ import annotations

DEFAULT_ROWS = 20_000_000
"""Rows of the generated Azure 2024 CSV of :mod:`planner.bench.large_trace` (about a week of the code
trace)."""

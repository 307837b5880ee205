"""Write a :class:`~planner.sim.result.SimResult` to a folder (the only I/O of the simulator).

Files: ``requests.parquet``, ``timeseries.parquet``, ``power.parquet`` (when the replay had a GPU spec),
``replicas.parquet`` (replica lifecycles, for autoscaled / multi-pool replays) and ``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from planner.sim.result import SimResult
from traces.atomic import write_folder_atomic
from traces.errors import InputError
from traces.json_safe import json_safe


def summary_json(result: SimResult) -> str:
    """The summary as JSON (NaN and infinities become null)."""
    d = result.summary.as_dict()
    if result.pools:
        d["pools"] = [{"name": p.name, "role": p.role, "scale_ups": p.scale_ups, "scale_downs": p.scale_downs,
                       "scale_ups_deferred": p.scale_ups_deferred, "peak_replicas": p.peak_replicas,
                       "summary": p.summary.as_dict()} for p in result.pools]
    if result.capping is not None:
        d["capping"] = result.capping.as_dict()
    if result.faults is not None:
        d["faults"] = result.faults.as_dict()
    return json.dumps(json_safe(d), indent=2, sort_keys=True)


def refuse_existing_file(path: Path | None, flag: str = "--out") -> None:
    """Stop before a long job whose result file already exists (one line, exit 2, nothing overwritten)."""
    if path is not None and path.exists():
        raise InputError(f"{flag} already exists", path=str(path), expected="a new file name")


def write_result(result: SimResult, out_dir: Path) -> list[Path]:
    """Write the result's tables as Parquet and the summary as JSON under ``out_dir``, as one run.

    The folder is replaced whole (:func:`traces.atomic.write_folder_atomic`): a replay killed while
    writing leaves the previous run or nothing, never new tables beside an old summary; the manifest
    lets readers (``serve-metrics``, reports) refuse a folder whose files do not belong together.

    Returns:
        The paths written (the manifest last).

    Raises:
        InputError: ``out_dir`` exists and is not a folder.
    """
    files: dict[str, Callable[[Path], object]] = {
        "requests.parquet": result.requests.write_parquet,
        "timeseries.parquet": result.timeseries.write_parquet,
    }
    if result.power is not None:
        files["power.parquet"] = result.power.write_parquet
    if result.replicas is not None:
        files["replicas.parquet"] = result.replicas.write_parquet
    files["summary.json"] = lambda p: p.write_text(summary_json(result) + "\n")
    return write_folder_atomic(out_dir, files, tool="fleetwise replay")

"""Write a :class:`~planner.sim.result.SimResult` to a folder (the only I/O of the simulator).

Files: ``requests.parquet``, ``timeseries.parquet``, ``power.parquet`` (when the replay had a GPU spec),
``replicas.parquet`` (replica lifecycles, for autoscaled / multi-pool replays) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from planner.sim.result import SimResult


def _clean(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def summary_json(result: SimResult) -> str:
    """The summary as JSON (NaN and infinities become null)."""
    d = result.summary.as_dict()
    if result.pools:
        d["pools"] = [{"name": p.name, "role": p.role, "scale_ups": p.scale_ups, "scale_downs": p.scale_downs,
                       "scale_ups_deferred": p.scale_ups_deferred, "peak_replicas": p.peak_replicas,
                       "summary": p.summary.as_dict()} for p in result.pools]
    if result.capping is not None:
        d["capping"] = result.capping.as_dict()
    return json.dumps(_clean(d), indent=2, sort_keys=True)


def write_result(result: SimResult, out_dir: Path) -> list[Path]:
    """Write the result's tables as Parquet and the summary as JSON under ``out_dir`` (created).

    Returns:
        The paths written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "requests.parquet", out_dir / "timeseries.parquet"]
    result.requests.write_parquet(paths[0])
    result.timeseries.write_parquet(paths[1])
    if result.power is not None:
        paths.append(out_dir / "power.parquet")
        result.power.write_parquet(paths[-1])
    if result.replicas is not None:
        paths.append(out_dir / "replicas.parquet")
        result.replicas.write_parquet(paths[-1])
    paths.append(out_dir / "summary.json")
    paths[-1].write_text(summary_json(result) + "\n")
    return paths

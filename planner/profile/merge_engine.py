"""Merge engine-validation runs made on separate device calls into one validation folder.

One call holds a GPU for at most ten minutes, and the engine under test serves about one request a
second, so steady percentiles at several load levels take several calls, each with the same engine
configuration and the same capacity (``--engine-capacity``). This keeps the first run's capacity burst
(load level 0) and every run's load levels, offsets later runs' request ids so they stay unique, and
records each run in ``engine_meta.json`` under ``runs``.

``python -m planner.profile.merge_engine OUT RUN1 RUN2 ...`` (each RUN a folder holding
``engine_requests.parquet``, ``engine_tokens.parquet``, ``engine_power.parquet``, ``engine_meta.json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_STRIDE = 100_000
"""Request ids of run k are offset by ``k * ID_STRIDE``."""

TABLES = ("engine_requests", "engine_tokens", "engine_power")


def _load(folder: Path, name: str) -> pa.Table:
    return pq.read_table(folder / f"{name}.parquet")


def merge(out: Path, runs: Sequence[Path]) -> dict[str, Any]:
    """Write the merged folder; return its meta.

    Raises:
        ValueError: no runs, a missing file, or runs with different engine configurations or capacities.
    """
    if not runs:
        raise ValueError("give at least one run folder")
    metas = []
    for r in runs:
        path = r / "engine_meta.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing (expected an engine validation folder)")
        metas.append(json.loads(path.read_text()))
    first = metas[0]
    for r, m in zip(runs[1:], metas[1:], strict=True):
        if m.get("engine_config") != first.get("engine_config"):
            raise ValueError(f"{r}: engine_config differs from {runs[0]}'s")
        cap0 = first["capacity_probe"]["capacity_rps"]
        if abs(m["capacity_probe"]["capacity_rps"] - cap0) > 1e-9 * cap0:
            raise ValueError(f"{r}: capacity differs from {runs[0]}'s (run it with --engine-capacity {cap0})")
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        parts = []
        for k, r in enumerate(runs):
            t = _load(r, name)
            if k:
                t = t.filter(pc.not_equal(t["load_level"], 0.0))  # only the first run's burst
                if "request_id" in t.column_names:
                    i = t.column_names.index("request_id")
                    t = t.set_column(i, "request_id", pc.add(t["request_id"], k * ID_STRIDE))
            parts.append(t)
        pq.write_table(pa.concat_tables(parts), out / f"{name}.parquet", compression="zstd")
    meta = dict(first)
    meta["levels"] = sorted((lv for m in metas for lv in m["levels"]), key=lambda lv: lv["level"])
    meta["errors"] = [e for m in metas for e in m.get("errors", [])]
    meta["runs"] = [{"folder": str(r), "levels": [lv["level"] for lv in m["levels"]],
                     "request_id_offset": k * ID_STRIDE, "burst_kept": k == 0,
                     "capacity_probe": m["capacity_probe"]}
                    for k, (r, m) in enumerate(zip(runs, metas, strict=True))]
    (out / "engine_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__)
        return 2
    try:
        meta = merge(Path(args[0]), [Path(a) for a in args[1:]])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"merged {len(args) - 1} runs: levels {[lv['level'] for lv in meta['levels']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

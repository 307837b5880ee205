"""fleetwise's own request-trace files: Parquet (what ``fleetwise traces convert`` writes) or CSV in the
canonical column names of :mod:`traces.schema`.

Parquet files written by :func:`traces.convert.convert_to_parquet` carry their :class:`TraceMeta` as JSON
under the key :data:`META_KEY` of the file's key-value metadata, so a round trip keeps the repairs, the
dropped-row count, the block size and the format-specific facts; the reloaded trace's format is
``canonical`` and the original format and source are in ``extra`` (``origin_format``, ``origin_source``).
In a canonical CSV, ``prefix_hashes`` are integers separated by spaces.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from traces.errors import InputError
from traces.readers.base import RawScan
from traces.readers.generic import scan_generic
from traces.schema import TraceMeta

META_KEY = "fleetwise.trace_meta"


def meta_to_json(meta: TraceMeta) -> str:
    """``meta`` as JSON text (inverse of :func:`meta_from_json`).

    >>> m = TraceMeta(source="a.csv", format="azure", repairs=("x",), extra=(("variant", "2024"),))
    >>> meta_from_json(meta_to_json(m), source="a.csv") == m
    True
    """
    return json.dumps(
        {
            "source": meta.source,
            "format": meta.format,
            "block_size": meta.block_size,
            "repairs": list(meta.repairs),
            "dropped_rows": meta.dropped_rows,
            "extra": [list(kv) for kv in meta.extra],
        }
    )


def meta_from_json(text: str, *, source: str) -> TraceMeta:
    """Parse :func:`meta_to_json` output; bad JSON is an :class:`InputError` naming ``source``."""
    try:
        data: dict[str, Any] = json.loads(text)
        return TraceMeta(
            source=str(data["source"]),
            format=str(data["format"]),
            block_size=None if data.get("block_size") is None else int(data["block_size"]),
            repairs=tuple(str(r) for r in data.get("repairs", ())),
            dropped_rows=int(data.get("dropped_rows", 0)),
            extra=tuple((str(k), str(v)) for k, v in data.get("extra", ())),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"bad trace metadata: {exc}", path=source, field=META_KEY, expected="JSON") from exc


def stored_meta(path: Path) -> TraceMeta | None:
    """The :class:`TraceMeta` stored in a Parquet file by ``convert``, if any."""
    try:
        kv = pq.read_metadata(path).metadata or {}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read Parquet: {exc}", path=str(path)) from exc
    raw = kv.get(META_KEY.encode())
    return None if raw is None else meta_from_json(raw.decode("utf-8"), source=str(path))


def scan_canonical(path: Path, *, parquet: bool) -> RawScan:
    """Read a canonical Parquet/CSV trace; arrivals are seconds (shifted to 0 if they are not already)."""
    raw = scan_generic(path, mapping=None, parquet=parquet)
    meta = TraceMeta(source=str(path), format="canonical")
    old = stored_meta(path) if parquet else None
    if old is not None:
        extra = dict(old.extra)
        extra.setdefault("origin_format", old.format)
        extra.setdefault("origin_source", old.source)
        meta = TraceMeta(
            source=str(path),
            format="canonical",
            block_size=old.block_size,
            repairs=old.repairs,
            dropped_rows=old.dropped_rows,
            extra=tuple(extra.items()),
        )
    return replace(raw, meta=meta)

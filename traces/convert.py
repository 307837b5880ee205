"""Convert any supported trace to a canonical Parquet file, streaming, with bounded memory.

The conversion is two passes over the source, both on polars' streaming engine: one aggregate pass that
validates every row and finds the first arrival (:func:`traces.load.scan_trace_with_meta`), then
``sink_parquet`` of the normalized plan. Neither pass holds the table: a 27M-row Azure week converts in
a few hundred MB (see :mod:`traces.bench_large` for measured numbers). Arrivals that are out of order
need a sort, which does hold the sorted columns. The output carries the :class:`TraceMeta` as JSON in its
Parquet key-value metadata, so loading it back (format ``canonical``) keeps what the loader did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from traces.errors import InputError
from traces.load import scan_trace_with_meta
from traces.readers.canonical import META_KEY, meta_to_json
from traces.schema import TraceMeta


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert_to_parquet` wrote.

    Attributes:
        rows: requests written.
        seconds: wall time of the conversion (validation pass included).
        out_path: the Parquet file.
        format: the source format (detected or given).
        meta: the trace metadata stored in the file.
    """

    rows: int
    seconds: float
    out_path: str
    format: str
    meta: TraceMeta


def convert_to_parquet(
    path: str | Path,
    out: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ConvertReport:
    """Validate ``path`` and write it as canonical Parquet at ``out`` without loading it whole.

    Args:
        path: any trace :func:`traces.load.load_trace` reads.
        out: the Parquet file to write (parent folders are created; written to a temporary name first, so
            a failed conversion leaves no half file).
        format: source format, ``None`` to detect.
        mapping: column mapping for the generic formats, options for ServeGen.
        clock: seconds counter for the report (injected so tests need no real time).

    Returns:
        Rows, time, output path, source format and metadata.

    Raises:
        InputError: bad input (located by row and column), or an output path that cannot be written.
    """
    start = clock()
    lf, meta = scan_trace_with_meta(path, format=format, mapping=mapping)
    dest = Path(out)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lf.sink_parquet(tmp, metadata={META_KEY: meta_to_json(meta)}, engine="streaming")
        tmp.replace(dest)
    except (OSError, pl.exceptions.PolarsError) as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write Parquet: {str(exc).splitlines()[0]}", path=str(dest)) from exc
    rows = pq.read_metadata(dest).num_rows
    return ConvertReport(
        rows=rows, seconds=clock() - start, out_path=str(dest), format=meta.format, meta=meta
    )

"""Convert any supported trace to a canonical Parquet file, streaming, with bounded memory.

The conversion is two passes over the source, both on polars' streaming engine: one aggregate pass that
validates every row and finds the first arrival, then ``sink_parquet`` of the normalized plan; the
arrival order is then checked on the written file (one float column, batch by batch). Neither pass holds
the table: memory stays at polars' read budget plus a few morsels (see :mod:`planner.bench.large_trace` for
measured numbers). Arrivals that are out of order need a sort of the written file, which does hold the
columns in memory; that is the one case that is not bounded, and it is noted in the repairs.
The output carries the :class:`TraceMeta` as JSON in its
Parquet key-value metadata, so loading it back (format ``canonical``) keeps what the loader did.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from traces.errors import InputError
from traces.load import read_raw
from traces.readers.canonical import META_KEY, meta_to_json
from traces.schema import TraceMeta
from traces.validate import check_raw, normalize


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
    raw = read_raw(path, format=format, mapping=mapping)
    check = check_raw(raw, streaming=True, order=False)
    lf, meta = normalize(raw, check)
    dest = Path(out)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lf.sink_parquet(tmp, metadata={META_KEY: meta_to_json(meta)}, engine="streaming")
        inversions = count_inversions(tmp)
        if inversions:
            meta = meta.with_repair(f"arrivals were out of order at {inversions} rows; sorted by arrival")
            pl.scan_parquet(tmp).sort("arrival_s", maintain_order=True).sink_parquet(
                dest, metadata={META_KEY: meta_to_json(meta)}, engine="streaming"
            )
            tmp.unlink()
        else:
            tmp.replace(dest)
    except (OSError, pl.exceptions.PolarsError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write Parquet: {str(exc).splitlines()[0]}", path=str(dest)) from exc
    rows = pq.read_metadata(dest).num_rows
    return ConvertReport(
        rows=rows, seconds=clock() - start, out_path=str(dest), format=meta.format, meta=meta
    )


def count_inversions(path: Path, *, batch_rows: int = 1 << 20) -> int:
    """Rows of a canonical Parquet file whose ``arrival_s`` is below the previous row's.

    Reads only ``arrival_s``, a batch at a time, so checking order after writing costs one float
    column of I/O and a batch of memory instead of another pass over the source.
    """
    last = -np.inf
    inversions = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=["arrival_s"], batch_size=batch_rows):
        a = batch.column(0).to_numpy()
        if a.size:
            inversions += int((np.diff(a) < 0).sum()) + int(a[0] < last)
            last = float(a[-1])
    return inversions

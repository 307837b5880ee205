"""Mooncake (Kimi) traces, FAST'25: JSON lines ``{"timestamp": ms, "input_length": int,
"output_length": int, "hash_ids": [int, ...]}``.

``timestamp`` (milliseconds) -> ``arrival_s``, ``input_length`` -> ``input_tokens``, ``output_length`` ->
``output_tokens``, ``hash_ids`` -> ``prefix_hashes`` (uint64), one hash per block of
:data:`DEFAULT_BLOCK_SIZE` prompt tokens (``TraceMeta.block_size``). Each row's hash count is checked to
be ``ceil(input_length / block_size)``: a mismatch means a wrong block size or a damaged row.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from traces.errors import InputError
from traces.readers.base import ROW, TIME, RawScan, TimeSpec, diagnose_jsonl
from traces.schema import TraceMeta

DEFAULT_BLOCK_SIZE = 512
KEYS: dict[str, type | tuple[type, ...]] = {
    "timestamp": (int, float),
    "input_length": int,
    "output_length": int,
    "hash_ids": list,
}
_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": pl.Float64(),
    "input_length": pl.Int64(),
    "output_length": pl.Int64(),
    "hash_ids": pl.List(pl.Int64),
}


def scan_mooncake(path: Path, *, block_size: int | None = None) -> RawScan:
    """Read a Mooncake JSONL trace.

    The file is parsed eagerly (JSON lines are small per row and the public traces are tens of
    thousands of rows); a parse failure is located by a line-by-line diagnosis.

    Args:
        path: the ``.jsonl`` file.
        block_size: tokens per hash block (default :data:`DEFAULT_BLOCK_SIZE`).

    Raises:
        InputError: a malformed line, a missing key or a wrong value type, naming the line.
    """
    block = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if block < 1:
        raise InputError("block size must be positive", field="block_size", expected="an integer >= 1")
    try:
        df = pl.read_ndjson(path, schema=_SCHEMA, ignore_errors=False)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        diagnosis = diagnose_jsonl(path, KEYS)
        if diagnosis is not None:
            raise diagnosis from exc
        raise InputError(f"cannot read JSON lines: {str(exc).splitlines()[0]}", path=str(path)) from exc
    if df.height and df.select(pl.all_horizontal(pl.all().is_null()).any()).item():
        diagnosis = diagnose_jsonl(path, KEYS)
        if diagnosis is not None:
            raise diagnosis
    lf = (
        df.lazy()
        .with_row_index(ROW, offset=1)
        .select(
            ROW,
            pl.col("timestamp").alias(TIME),
            pl.col("input_length").alias("input_tokens"),
            pl.col("output_length").alias("output_tokens"),
            pl.col("hash_ids").alias("prefix_hashes"),
        )
    )
    meta = TraceMeta(source=str(path), format="mooncake", block_size=block)
    fields = {
        TIME: "timestamp",
        "input_tokens": "input_length",
        "output_tokens": "output_length",
        "prefix_hashes": "hash_ids",
    }
    spec = TimeSpec("ms", expected="milliseconds from the start")
    return RawScan(lf=lf, meta=meta, time=spec, fields=fields, path=str(path), check_hash_blocks=True)

"""Any CSV or Parquet request log, given a column mapping.

The mapping says which source column holds each canonical column (``{"arrival_s": "ts",
"input_tokens": "prompt_len", ...}``); a canonical column that is not mapped is taken from a source column
of the same name when there is one. Two more keys describe the arrival column:

* ``time_unit``: ``s`` (default), ``ms``, ``us``, ``ns`` (numbers, any origin) or ``datetime``
  (wall-clock strings, or a temporal Parquet column);
* ``time_format``: a chrono format for ``datetime`` strings (default: inferred from the first value).

On the command line this is ``--map arrival_s=ts --map time_unit=ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import cast

import polars as pl

from traces.errors import InputError
from traces.readers.base import (
    ROW,
    TIME,
    TIME_KINDS,
    RawScan,
    TimeKind,
    TimeSpec,
    diagnose_csv,
    read_csv_header,
    scan_csv_text,
)
from traces.schema import OPTIONAL_REQUEST_COLUMNS, REQUIRED_REQUEST_COLUMNS, TraceMeta

OPTION_KEYS: tuple[str, ...] = ("time_unit", "time_format")
MAPPING_KEYS: tuple[str, ...] = (*REQUIRED_REQUEST_COLUMNS, *OPTIONAL_REQUEST_COLUMNS, *OPTION_KEYS)


def check_mapping(mapping: Mapping[str, str], *, allowed: tuple[str, ...] = MAPPING_KEYS) -> None:
    """Reject unknown mapping keys, naming the key and listing the valid ones."""
    for key in mapping:
        if key not in allowed:
            raise InputError(
                f"unknown mapping key {key!r}", field=key, expected="one of " + ", ".join(allowed)
            )


def scan_parquet_source(path: Path) -> tuple[pl.LazyFrame, list[str]]:
    """Lazy scan of a Parquet file and its column names, failures as :class:`InputError`."""
    try:
        lf = pl.scan_parquet(path)
        names = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read Parquet: {str(exc).splitlines()[0]}", path=str(path)) from exc
    return lf, names


def scan_generic(path: Path, *, mapping: Mapping[str, str] | None, parquet: bool) -> RawScan:
    """Read a CSV (``parquet=False``) or Parquet file through a column mapping (module docstring).

    Raises:
        InputError: unknown mapping key or time unit, or a mapped/required column missing from the file.
    """
    given = dict(mapping or {})
    check_mapping(given)
    unit = given.pop("time_unit", "s").strip()
    if unit not in TIME_KINDS:
        raise InputError(
            f"unknown time unit {unit!r}", field="time_unit", expected="one of " + ", ".join(TIME_KINDS)
        )
    time_format = given.pop("time_format", None)
    if parquet:
        source, names = scan_parquet_source(path)
        source = source.with_row_index(ROW, offset=1)
    else:
        names = read_csv_header(path)
        source = scan_csv_text(path, names)
    fields: dict[str, str] = {}
    for canon in (*REQUIRED_REQUEST_COLUMNS, *OPTIONAL_REQUEST_COLUMNS):
        src = given.get(canon, canon if canon in names else None)
        if src is None:
            if canon in REQUIRED_REQUEST_COLUMNS:
                raise InputError(
                    f"no column for {canon}",
                    path=str(path),
                    field=canon,
                    expected=f"a mapping {canon}=<column> (columns: {', '.join(names)})",
                )
            continue
        if src not in names:
            raise InputError(
                f"mapped column {src!r} not in file",
                path=str(path),
                field=canon,
                expected="one of the columns " + ", ".join(names),
            )
        fields[canon] = src
    cols = [pl.col(ROW), pl.col(fields["arrival_s"]).alias(TIME)]
    cols += [pl.col(src).alias(canon) for canon, src in fields.items() if canon != "arrival_s"]
    fields[TIME] = fields.pop("arrival_s")
    if "prefix_hashes" in fields and not parquet:
        cols = [c for c in cols if c.meta.output_name() != "prefix_hashes"]
        cols.append(hashes_from_text(pl.col(fields["prefix_hashes"])).alias("prefix_hashes"))
    fmt = "generic_parquet" if parquet else "generic_csv"
    expected = f"a datetime like {time_format}" if unit == "datetime" else f"a number of {unit}"
    spec = TimeSpec(cast(TimeKind, unit), time_format, expected)
    extra = (
        ("mapping", ",".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != TIME)),
        ("arrival_column", fields[TIME]),
        ("time_unit", unit),
    )
    meta = TraceMeta(source=str(path), format=fmt, extra=extra)
    diagnose = None if parquet else partial(diagnose_csv, path, len(names))
    return RawScan(
        lf=source.select(cols), meta=meta, time=spec, fields=fields, path=str(path), diagnose=diagnose
    )


def hashes_from_text(col: pl.Expr) -> pl.Expr:
    """Prefix hashes written in a CSV cell as integers separated by spaces (``[`` ``]`` ``,`` allowed).

    >>> pl.select(hashes_from_text(pl.lit("[1, 2, 3]"))).item().to_list()
    [1, 2, 3]
    """
    text = col.cast(pl.String).str.replace_all(r"[\[\],]", " ").str.strip_chars()
    return (
        text.str.split(" ")
        .list.eval(pl.element().filter(pl.element() != ""))
        .cast(pl.List(pl.UInt64), strict=False)
    )

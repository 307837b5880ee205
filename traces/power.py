"""Load power traces (long format: ``t_s, scope, id, power_w``; see :mod:`traces.schema`).

No public GPU-cluster power trace exists, so these files come from the project's own models, from
measurements (nvidia-smi/DCGM exports reshaped to long format) or from users. The loader is strict
because power caps are planned from these numbers: every problem is an
:class:`~traces.errors.InputError` naming file, 1-based data row and column:

* missing column, missing value, non-numeric / NaN / infinite ``t_s`` or ``power_w``;
* negative ``t_s`` or ``power_w``; a ``scope`` other than ``gpu``, ``server``, ``rack``, ``row``
  (case and surrounding spaces are ignored); an empty ``id``;
* two samples for the same ``(t_s, scope, id)`` (the second one is named).

Rows are returned sorted by ``(t_s, scope, id)``; other columns are dropped.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from traces.errors import InputError
from traces.readers.base import ROW, read_csv_header, read_head_text, scan_csv_text
from traces.schema import POWER_POLARS_SCHEMA, POWER_SCOPES
from traces.validate import reader_error

COLUMNS: tuple[str, ...] = tuple(POWER_POLARS_SCHEMA)


def load_power_trace(path: str | Path) -> pl.DataFrame:
    """Read and validate a power trace from CSV or Parquet.

    Args:
        path: a ``.csv`` or ``.parquet`` file with columns ``t_s, scope, id, power_w``.

    Returns:
        A frame in :data:`traces.schema.POWER_POLARS_SCHEMA`, sorted by ``(t_s, scope, id)``.

    Raises:
        InputError: see the module docstring.

    >>> from pathlib import Path
    >>> df = load_power_trace(Path(__file__).parents[1] / "tests/data/traces/power_sample.csv")
    >>> df.columns, df.height
    (['t_s', 'scope', 'id', 'power_w'], 6)
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=str(p), expected="a power trace CSV or Parquet file")
    try:
        if p.suffix.lower() == ".parquet":
            raw = pl.read_parquet(p).with_row_index(ROW, offset=1)
            names = raw.columns
        else:
            read_head_text(p)
            names = read_csv_header(p)
            raw = scan_csv_text(p, names).collect()
    except pl.exceptions.PolarsError as exc:
        raise reader_error(str(p), exc) from exc
    for name in COLUMNS:
        if name not in names:
            raise InputError(
                "missing column", path=str(p), field=name, expected="columns " + ", ".join(COLUMNS)
            )
    if raw.height == 0:
        raise InputError("no data rows", path=str(p), expected="at least one power sample")
    typed = raw.select(
        ROW,
        *[pl.col(c).alias(f"_{c}") for c in COLUMNS],
        _number("t_s", raw.schema["t_s"]),
        pl.col("scope").cast(pl.String).str.strip_chars().str.to_lowercase().alias("scope"),
        pl.col("id").cast(pl.String).str.strip_chars().alias("id"),
        _number("power_w", raw.schema["power_w"]),
    )
    scopes = ", ".join(POWER_SCOPES)
    checks: list[tuple[str, pl.Expr, str, str]] = []
    for name in COLUMNS:
        checks.append((name, pl.col(f"_{name}").is_null(), "missing value", "a value"))
    for name in ("t_s", "power_w"):
        v = pl.col(name)
        checks += [
            (name, v.is_null(), "not a number", "a number >= 0"),
            (name, ~v.is_finite(), "not a finite number", "a number >= 0"),
            (name, v < 0, "negative value", "a number >= 0"),
        ]
    checks += [
        ("scope", ~pl.col("scope").is_in(list(POWER_SCOPES)), "unknown scope", f"one of {scopes}"),
        ("id", pl.col("id") == "", "empty id", "a non-empty id"),
        (
            "id",
            pl.struct("t_s", "scope", "id").is_duplicated()
            & ~pl.struct("t_s", "scope", "id").is_first_distinct(),
            "duplicate sample for this (t_s, scope, id)",
            "one sample per time, scope and id",
        ),
    ]
    firsts = typed.select(
        [pl.col(ROW).filter(c).min().alias(str(i)) for i, (_, c, _, _) in enumerate(checks)]
    )
    found = [(row, i) for i, row in enumerate(firsts.row(0)) if row is not None]
    if found:
        row, i = min(found)
        name, _, message, expected = checks[i]
        raise InputError(message, path=str(p), row=int(row), field=name, expected=expected)
    return typed.select([pl.col(c).cast(t) for c, t in POWER_POLARS_SCHEMA.items()]).sort(
        ["t_s", "scope", "id"], maintain_order=True
    )


def _number(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        return col.str.strip_chars().cast(pl.Float64, strict=False).alias(name)
    if dtype.is_numeric():
        return col.cast(pl.Float64).alias(name)
    return col.cast(pl.String).cast(pl.Float64, strict=False).alias(name)

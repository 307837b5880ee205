"""Validation and normalization shared by every request-trace reader.

One aggregate pass over the reader's raw frame checks every row at once (so a 27M-row file is read once
for checking, in streaming mode) and finds the *first* bad row per problem; the smallest of those becomes
an :class:`~traces.errors.InputError` naming file, 1-based data row, source column and what was expected.

Problems and what happens to them:

=======================================  ==================================================================
missing / non-numeric / NaN / infinite   ``InputError`` (token counts and arrival times)
negative or fractional token count       ``InputError``
token count above int32                  ``InputError``
unparseable timestamp                    ``InputError``
no data rows                             ``InputError``
``output_tokens == 0``                   documented repair: the row is dropped (a failed request, as in
                                         BurstGPT), counted in ``TraceMeta.dropped_rows`` and noted
arrivals out of order                    documented repair: rows are sorted by arrival (stable), noted
first arrival not at 0                   normalization: arrivals are shifted so the first is 0; the
                                         original start goes to ``TraceMeta.extra`` (``start_timestamp``
                                         for wall-clock traces, ``start_offset_s`` for numeric ones)
``turn`` not an integer >= 0             ``InputError``
``turn`` without a ``session_id``        ``InputError`` (a turn belongs to a session)
``think_s`` not a finite number >= 0     ``InputError``
turns of a session not increasing        ``InputError`` (:func:`check_sessions`: within a session,
with arrival                             a later arrival must have a larger ``turn``; a duplicate turn
                                         is refused too)
=======================================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import polars as pl

from traces.errors import InputError
from traces.readers.base import ROW, TIME, RawScan, TimeSpec
from traces.schema import (
    NUMERIC_OPTIONAL_COLUMNS,
    OPTIONAL_REQUEST_COLUMNS,
    REQUEST_POLARS_SCHEMA,
    REQUIRED_REQUEST_COLUMNS,
    RequestTrace,
    TraceMeta,
)

INT32_MAX = 2**31 - 1
TOKEN_EXPECTED = "an integer >= 0"
TURN_EXPECTED = "an integer >= 0 (0-based turn of its session)"
THINK_EXPECTED = "a finite number of seconds >= 0"
REASONING_EXPECTED = "an integer from 0 to the row's output_tokens"
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_IN, _OUT, _TV = "_in", "_out", "_tv"


@dataclass(frozen=True)
class TraceCheck:
    """What the validation pass learned about a raw trace (it is valid if this exists).

    Attributes:
        rows: data rows read.
        zero_output_rows: rows with ``output_tokens == 0`` (dropped as failed requests).
        inversions: kept rows whose arrival is earlier than the previous kept row's (``None``: not
            counted; the frame is then left in file order).
        t0: first kept arrival: float seconds, or int ns since the epoch for wall clocks (exact).
        t_end: last kept arrival, same units.
        is_wallclock: whether the time column is a wall-clock datetime.
    """

    rows: int
    zero_output_rows: int
    inversions: int | None
    t0: int | float
    t_end: int | float
    is_wallclock: bool


def typed_frame(raw: RawScan) -> pl.LazyFrame:
    """The raw frame plus numeric ``_in``, ``_out`` (Float64) and ``_tv`` (Float64 s or Int64 ns) columns."""
    schema = raw.lf.collect_schema()
    return raw.lf.with_columns(
        _as_float("input_tokens", schema["input_tokens"]).alias(_IN),
        _as_float("output_tokens", schema["output_tokens"]).alias(_OUT),
        _time_value(raw.time, schema[TIME]).alias(_TV),
        *[_as_float(name, schema[name]).alias(_numeric(name))
          for name in NUMERIC_OPTIONAL_COLUMNS if name in schema.names()],
    )


def check_raw(raw: RawScan, *, streaming: bool = False, order: bool = True) -> TraceCheck:
    """Check every row of ``raw`` in one aggregate pass.

    Args:
        raw: a reader's output.
        streaming: run the pass on polars' streaming engine (bounded memory for big files).
        order: also count out-of-order arrivals. In streaming mode this is a second pass (``diff`` is
            not streamable and would pull the whole raw table into memory if mixed with the checks);
            ``False`` leaves ``inversions`` as ``None`` for the caller to settle (``convert`` checks the
            written file instead, which costs one float column).

    Returns:
        The facts needed to normalize the trace.

    Raises:
        InputError: the first bad row (smallest row number over all problems), or an empty trace.
    """
    typed = typed_frame(raw)
    schema = typed.collect_schema()
    problems = _problems(raw, schema)
    kept = pl.col(_OUT) > 0
    # One OR-ed flag keeps the pass cheap; which problem it was is asked of that single row afterwards.
    any_bad = pl.any_horizontal([cond for _, cond, _, _ in problems]).fill_null(False)
    aggs: list[pl.Expr] = [pl.len().alias("rows"), (pl.col(_OUT) == 0).sum().alias("zero")]
    aggs.append(pl.col(ROW).filter(any_bad).min().alias("bad_row"))
    tv = pl.col(_TV).filter(kept)
    aggs += [tv.min().alias("t0"), tv.max().alias("t_end")]
    if order and not streaming:
        aggs.append((tv.diff() < 0).sum().alias("inv"))
    stats = collect_checked(typed.select(aggs), raw, streaming=streaming).row(0, named=True)

    if stats["bad_row"] is not None:
        row = int(stats["bad_row"])
        flags = typed.filter(pl.col(ROW) == row).select(
            [cond.fill_null(False).alias(f"p{i}") for i, (_, cond, _, _) in enumerate(problems)]
        )
        hits = collect_checked(flags, raw, streaming=streaming).row(0)
        column, _, message, expected = problems[next(i for i, hit in enumerate(hits) if hit)]
        raise InputError(message, path=raw.path, row=row, field=raw.source_field(column), expected=expected)
    rows = int(stats["rows"])
    if rows == 0:
        raise InputError("no data rows", path=raw.path, expected="a header and at least one request")
    zero = int(stats["zero"] or 0)
    if zero == rows:
        raise InputError(
            f"all {rows} rows have output_tokens == 0 (failed requests), nothing left",
            path=raw.path,
            field=raw.source_field("output_tokens"),
            expected="at least one request with output tokens >= 1",
        )
    inversions: int | None = None
    if order and not streaming:
        inversions = int(stats["inv"] or 0)
    elif order:
        inv = typed.select((tv.diff() < 0).sum().alias("inv"))
        inversions = int(collect_checked(inv, raw, streaming=True).item() or 0)
    return TraceCheck(
        rows=rows,
        zero_output_rows=zero,
        inversions=inversions,
        t0=stats["t0"],
        t_end=stats["t_end"],
        is_wallclock=schema[_TV] == pl.Int64,
    )


def normalize(raw: RawScan, check: TraceCheck) -> tuple[pl.LazyFrame, TraceMeta]:
    """The canonical lazy frame and metadata for a checked raw trace (see the module table)."""
    typed = typed_frame(raw).filter(pl.col(_OUT) > 0)
    if check.is_wallclock:
        arrival = (pl.col(_TV) - pl.lit(int(check.t0), dtype=pl.Int64)).cast(pl.Float64) / 1e9
    else:
        arrival = pl.col(_TV) - pl.lit(check.t0, dtype=pl.Float64)
    names = typed.collect_schema().names()
    cols = [
        arrival.alias("arrival_s"),
        pl.col(_IN).cast(pl.Int32).alias("input_tokens"),
        pl.col(_OUT).cast(pl.Int32).alias("output_tokens"),
    ]
    cols += [
        (pl.col(_numeric(name)) if name in NUMERIC_OPTIONAL_COLUMNS else _optional(name))
        .cast(REQUEST_POLARS_SCHEMA[name]).alias(name)
        for name in OPTIONAL_REQUEST_COLUMNS
        if name in names
    ]
    lf = typed.select(cols)
    meta = raw.meta
    if check.zero_output_rows:
        meta = replace(meta, dropped_rows=meta.dropped_rows + check.zero_output_rows).with_repair(
            f"dropped {check.zero_output_rows} of {check.rows} requests with output_tokens == 0 "
            "(failed requests)"
        )
    if check.inversions:  # None (not counted) and 0 both leave the order alone
        lf = lf.sort("arrival_s", maintain_order=True)
        meta = meta.with_repair(f"arrivals were out of order at {check.inversions} rows; sorted by arrival")
    extra = dict(meta.extra)
    if check.is_wallclock:
        extra["start_timestamp"] = _iso_from_ns(int(check.t0), raw.time)
    elif check.t0 != 0.0:
        extra["start_offset_s"] = repr(check.t0)
    return lf, replace(meta, extra=tuple(extra.items()))


def collect_checked(lf: pl.LazyFrame, raw: RawScan, *, streaming: bool = False) -> pl.DataFrame:
    """``lf.collect()``, turning a reader's failure into an :class:`InputError` for ``raw.path``."""
    try:
        return lf.collect(engine="streaming" if streaming else "auto")
    except pl.exceptions.PolarsError as exc:
        located = raw.diagnose() if raw.diagnose is not None else None
        raise (located or reader_error(raw.path, exc)) from exc


def reader_error(path: str, exc: BaseException) -> InputError:
    """One line for a failure polars raised while reading ``path`` (its first message line)."""
    text = str(exc).strip().splitlines()
    detail = text[0] if text else type(exc).__name__
    return InputError(f"cannot read file: {detail}", path=path)


def validate_trace(trace: RequestTrace) -> RequestTrace:
    """Check a trace built in memory (synthesized or transformed) against the canonical contract.

    Args:
        trace: the trace to check.

    Returns:
        The same trace, so that calls can be chained.

    Raises:
        InputError: missing or mistyped columns, nulls, negative tokens, zero outputs, unsorted or
            non-finite arrivals, or a first arrival other than 0.

    >>> import polars as pl
    >>> from traces.schema import TraceMeta
    >>> df = pl.DataFrame({"arrival_s": [0.0, 1.5], "input_tokens": [10, 20], "output_tokens": [1, 2]},
    ...                   schema_overrides={"input_tokens": pl.Int32, "output_tokens": pl.Int32})
    >>> validate_trace(RequestTrace(df, TraceMeta(source="mem", format="canonical"))).num_requests
    2
    """
    src = trace.meta.source
    df = trace.df
    for name in REQUIRED_REQUEST_COLUMNS:
        if name not in df.columns:
            raise InputError("missing column", path=src, field=name, expected="the canonical request schema")
    for name in df.columns:
        want = REQUEST_POLARS_SCHEMA.get(name)
        if want is not None and df.schema[name] != want:
            raise InputError(
                f"column has type {df.schema[name]}", path=src, field=name, expected=f"type {want}"
            )
    checks: list[tuple[str, pl.Expr, str, str]] = [
        (
            "arrival_s",
            pl.col("arrival_s").is_null() | ~pl.col("arrival_s").is_finite(),
            "not a finite number",
            "a finite number of seconds",
        ),
        ("arrival_s", pl.col("arrival_s").diff() < 0, "arrivals out of order", "arrival_s sorted ascending"),
        (
            "input_tokens",
            pl.col("input_tokens").is_null() | (pl.col("input_tokens") < 0),
            "bad token count",
            TOKEN_EXPECTED,
        ),
        (
            "output_tokens",
            pl.col("output_tokens").is_null() | (pl.col("output_tokens") < 1),
            "bad token count",
            "an integer >= 1",
        ),
    ]
    sid = pl.col("session_id") if "session_id" in df.columns else pl.lit(None, dtype=pl.String)
    if "turn" in df.columns:
        checks += [
            ("turn", pl.col("turn") < 0, "bad turn", TURN_EXPECTED),
            ("turn", pl.col("turn").is_not_null() & sid.is_null(), "a turn without a session_id",
             "a session_id on every row that has a turn"),
        ]
    if "think_s" in df.columns:
        think = pl.col("think_s")
        checks.append(("think_s", ~think.is_finite() | (think < 0), "bad think time", THINK_EXPECTED))
    if "reasoning_tokens" in df.columns:
        r = pl.col("reasoning_tokens")
        checks.append(("reasoning_tokens", (r < 0) | (r > pl.col("output_tokens")),
                       "bad reasoning token count", REASONING_EXPECTED))
    indexed = df.with_row_index(ROW, offset=1)
    firsts = indexed.select([pl.col(ROW).filter(c).min().alias(n + m) for n, c, m, _ in checks]).row(0)
    for (name, _, message, expected), row in zip(checks, firsts, strict=True):
        if row is not None:
            raise InputError(message, path=src, row=int(row), field=name, expected=expected)
    if df.height and float(df["arrival_s"][0]) != 0.0:
        raise InputError("first arrival is not 0", path=src, row=1, field="arrival_s", expected="0.0")
    check_sessions(df, source=src)
    return trace


def _problems(raw: RawScan, schema: pl.Schema) -> list[tuple[str, pl.Expr, str, str]]:
    """(canonical column, condition, message, expected) for every per-row problem."""
    out: list[tuple[str, pl.Expr, str, str]] = []
    for name, value in (("input_tokens", _IN), ("output_tokens", _OUT)):
        src, v = pl.col(name), pl.col(value)
        out += [
            (name, src.is_null(), "missing value", TOKEN_EXPECTED),
            (name, src.is_not_null() & v.is_null(), "not a number", TOKEN_EXPECTED),
            (name, v.is_nan(), "NaN token count", TOKEN_EXPECTED),
            (name, v.is_infinite(), "infinite token count", TOKEN_EXPECTED),
            (name, v < 0, "negative token count", TOKEN_EXPECTED),
            (name, v.is_finite() & (v != v.floor()), "fractional token count", TOKEN_EXPECTED),
            (name, v.is_finite() & (v > INT32_MAX), "token count too large", f"at most {INT32_MAX}"),
        ]
    t, tv = pl.col(TIME), pl.col(_TV)
    out += [
        (TIME, t.is_null(), "missing arrival time", raw.time.expected),
        (TIME, t.is_not_null() & tv.is_null(), "cannot parse arrival time", raw.time.expected),
    ]
    if schema[_TV] == pl.Float64:
        out.append((TIME, ~tv.is_finite(), "arrival time is not finite", raw.time.expected))
    out += _session_problems(schema)
    if "prefix_hashes" in schema.names():
        hashes = pl.col("prefix_hashes")
        out += [
            ("prefix_hashes", hashes.is_null(), "missing prefix hashes", "a list of integers >= 0"),
            (
                "prefix_hashes",
                hashes.list.eval(pl.element().is_null()).list.any(),
                "prefix hash is not an integer",
                "a list of integers >= 0",
            ),
        ]
        if schema["prefix_hashes"].inner.is_signed_integer():  # type: ignore[attr-defined]
            out.append(
                ("prefix_hashes", hashes.list.min() < 0, "negative prefix hash", "a list of integers >= 0")
            )
        block = raw.meta.block_size
        if raw.check_hash_blocks and block:
            blocks = ((pl.col(_IN) + (block - 1)) / block).floor()
            out.append(
                (
                    "prefix_hashes",
                    pl.col(_IN).is_finite() & (hashes.list.len() != blocks),
                    f"number of hashes does not match input_tokens with block size {block}",
                    f"ceil(input_tokens / {block}) hashes",
                )
            )
    return out


def _numeric(name: str) -> str:
    """The typed (Float64) twin of a numeric optional column in :func:`typed_frame`."""
    return f"_{name}"


def _session_problems(schema: pl.Schema) -> list[tuple[str, pl.Expr, str, str]]:
    """Per-row problems of ``turn``, ``think_s`` and ``reasoning_tokens`` (their typed twins hold the parsed
    numbers)."""
    names = schema.names()
    out: list[tuple[str, pl.Expr, str, str]] = []
    if "turn" in names:
        src, v = pl.col("turn"), pl.col(_numeric("turn"))
        out += [
            ("turn", src.is_not_null() & v.is_null(), "turn is not a number", TURN_EXPECTED),
            ("turn", ~v.is_finite() | (v < 0) | (v != v.floor()) | (v > INT32_MAX), "bad turn",
             TURN_EXPECTED),
        ]
        sid = pl.col("session_id") if "session_id" in names else pl.lit(None, dtype=pl.String)
        out.append(("turn", v.is_not_null() & sid.is_null(), "a turn without a session_id",
                    "a session_id on every row that has a turn"))
    if "think_s" in names:
        src, v = pl.col("think_s"), pl.col(_numeric("think_s"))
        out += [
            ("think_s", src.is_not_null() & v.is_null(), "think_s is not a number", THINK_EXPECTED),
            ("think_s", ~v.is_finite() | (v < 0), "bad think time", THINK_EXPECTED),
        ]
    if "reasoning_tokens" in names:
        src, v = pl.col("reasoning_tokens"), pl.col(_numeric("reasoning_tokens"))
        out += [
            ("reasoning_tokens", src.is_not_null() & v.is_null(), "reasoning_tokens is not a number",
             REASONING_EXPECTED),
            ("reasoning_tokens", ~v.is_finite() | (v < 0) | (v != v.floor()) | (v > pl.col(_OUT)),
             "bad reasoning token count", REASONING_EXPECTED),
        ]
    return out


def check_sessions(df: pl.DataFrame | pl.LazyFrame, *, source: str) -> None:
    """Within each session, ``turn`` must grow with arrival (no duplicate turn).

    Why a check of its own: it compares rows with each other (a group-wise ``diff``), which the per-row
    pass cannot do; it runs on the canonical frame, sorted by arrival, so the row it names counts data
    rows in arrival order (the file's order, unless the loader had to sort it).

    Raises:
        InputError: the first row whose turn is not larger than its session's previous turn.

    >>> import polars as pl
    >>> df = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "session_id": ["a", "b", "a"], "turn": [1, 0, 1]})
    >>> check_sessions(df, source="t.csv")
    Traceback (most recent call last):
    ...
    traces.errors.InputError: t.csv: row 3: field turn: turn 1 does not follow turn 1 of session 'a' ...
    """
    names = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    if "turn" not in names or "session_id" not in names:
        return
    bad = (
        df.lazy().select("session_id", "turn")
        .with_row_index(ROW, offset=1)
        .filter(pl.col("session_id").is_not_null())
        .with_columns(pl.col("turn").shift(1).over("session_id").alias("_prev"))
        .filter(pl.col("turn") <= pl.col("_prev"))
        .head(1)
        .collect()
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(
            f"turn {row['turn']} does not follow turn {row['_prev']} of session {row['session_id']!r}",
            path=source, row=int(row[ROW]), field="turn",
            expected="turns that increase with arrival within a session",
        )


def _as_float(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        return col.str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_numeric() or dtype == pl.Boolean:
        return col.cast(pl.Float64)
    return col.cast(pl.String).cast(pl.Float64, strict=False)


def _time_value(spec: TimeSpec, dtype: pl.DataType) -> pl.Expr:
    """Arrival as Float64 seconds (numeric kinds) or Int64 ns since the epoch (``datetime``)."""
    col = pl.col(TIME)
    if spec.kind == "datetime":
        if isinstance(dtype, pl.Datetime):
            parsed = col
        elif isinstance(dtype, pl.Date):
            parsed = col.cast(pl.Datetime("ns"))
        else:
            parsed = (
                col.cast(pl.String)
                .str.strip_chars()
                .str.to_datetime(spec.format, time_unit="ns", strict=False)
            )
        return parsed.dt.timestamp("ns")
    if isinstance(dtype, pl.Datetime | pl.Date | pl.Duration):
        raise InputError(
            f"arrival column is a {dtype}, but time unit {spec.kind!r} was given",
            expected="time_unit datetime",
        )
    return _as_float(TIME, dtype) * _UNIT_SECONDS[spec.kind]


def _optional(name: str) -> pl.Expr:
    if name == "prefix_hashes":
        return pl.col(name)
    return pl.col(name).cast(pl.String)


def _iso_from_ns(ns: int, spec: TimeSpec) -> str:
    """ISO-8601 text of a wall-clock instant given in ns since the epoch (UTC for tz-aware inputs)."""
    seconds, rem = divmod(ns, 1_000_000_000)
    base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    text = base.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem:09d}"
    aware = spec.format is not None and (
        "%z" in spec.format or "%:z" in spec.format or spec.format.endswith("Z")
    )
    return text + ("+00:00" if aware else "")

"""The seam between format readers and the shared validation: a raw, lazily read table plus facts.

Each reader only knows its format: which source columns hold the arrival time, the token counts and the
optional columns, and how the time is written. It returns a :class:`RawScan` whose frame still holds the
source values (often strings), so that :mod:`traces.validate` can check every row in one pass and name the
first bad one, and so that big files are never materialized before they are known to be good.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from traces.errors import InputError
from traces.schema import TraceMeta

TimeKind = Literal["s", "ms", "us", "ns", "datetime"]
TIME_KINDS: tuple[str, ...] = ("s", "ms", "us", "ns", "datetime")
ROW = "_row"
TIME = "_t"
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class TimeSpec:
    """How the arrival column is written.

    Attributes:
        kind: a number of seconds/ms/us/ns, or ``datetime`` (a string or a temporal column).
        format: chrono format for datetime strings (``None``: let polars infer it from the first value).
        expected: what a valid value looks like, for error messages.
    """

    kind: TimeKind
    format: str | None = None
    expected: str = "a number"


@dataclass(frozen=True)
class RawScan:
    """A reader's output, before validation.

    Attributes:
        lf: lazy frame with ``_row`` (1-based data row of the source), ``_t`` (arrival time as written),
            ``input_tokens``, ``output_tokens`` (any dtype) and any optional canonical columns.
        meta: what the reader knows already (format, block size, variant...).
        time: how ``_t`` is written.
        fields: canonical column -> source column name, so errors name the column the user sees.
        path: the source, for error messages.
        check_hash_blocks: check ``len(prefix_hashes) == ceil(input_tokens / block_size)`` (Mooncake).
        diagnose: called when polars refuses the file, to locate the problem (row, cause) for the error.
    """

    lf: pl.LazyFrame
    meta: TraceMeta
    time: TimeSpec
    fields: Mapping[str, str] = field(default_factory=dict)
    path: str = ""
    check_hash_blocks: bool = False
    diagnose: Callable[[], InputError | None] | None = None

    def source_field(self, name: str) -> str:
        """The source column behind canonical column ``name`` (``_t`` is the arrival column)."""
        return self.fields.get(name, "arrival_s" if name == TIME else name)


def read_head_text(path: Path) -> str:
    """The first bytes of ``path`` decoded as UTF-8 (BOM removed), for format detection and headers.

    Raises:
        InputError: the file is missing, empty, or does not start with UTF-8 text.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot open file: {exc.strerror}", path=str(path)) from exc
    if not head.strip():
        raise InputError("empty file", path=str(path), expected="a header line and at least one data row")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut by the read size
            row = head[: exc.start].count(b"\n")
            raise InputError(
                "not UTF-8 text",
                path=str(path),
                row=row if row > 0 else None,
                expected="a UTF-8 encoded file",
            ) from exc
        return head[: exc.start].decode("utf-8")


def read_csv_header(path: Path) -> list[str]:
    """Column names of a CSV file, as written (surrounding spaces removed).

    Raises:
        InputError: empty file, not UTF-8, or an empty/duplicated column name.
    """
    text = read_head_text(path)
    first = next(csv.reader(io.StringIO(text.splitlines()[0] if text.splitlines() else "")), [])
    names = [n.strip() for n in first]
    if not names or any(not n for n in names):
        raise InputError("header has an empty column name", path=str(path), expected="a CSV header line")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(
            f"duplicate column {dupes[0]!r} in header",
            path=str(path),
            field=dupes[0],
            expected="unique names",
        )
    return names


def first_data_value(path: Path, column: str) -> str | None:
    """The value of ``column`` in the first data row of a CSV (``None`` when there is no data row)."""
    text = read_head_text(path)
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [n.strip() for n in next(rows, [])]
        for row in rows:
            if not row:
                continue
            values = dict(zip(header, row, strict=False))
            return values.get(column)
    except csv.Error as exc:
        raise InputError(f"malformed CSV near the top ({exc})", path=str(path), row=rows.line_num,
                         expected="comma-separated text lines") from None
    return None


def require_columns(path: Path, header: list[str], needed: tuple[str, ...], fmt: str) -> None:
    """Raise :class:`InputError` naming the first column of ``needed`` that ``header`` lacks."""
    for name in needed:
        if name not in header:
            raise InputError(
                f"missing column {name!r} for format {fmt}",
                path=str(path),
                field=name,
                expected="a header with columns " + ", ".join(needed),
            )


def scan_csv_text(path: Path, header: list[str]) -> pl.LazyFrame:
    """Scan a CSV lazily with every column as text, numbered by 1-based data row, blank lines skipped.

    Reading as text keeps a bad value as data instead of an opaque parser error, so validation can name
    its row and column. Fully blank lines carry no data and are skipped (their row numbers still count).
    """
    lf = pl.scan_csv(
        path,
        has_header=True,
        new_columns=header,
        infer_schema=False,
        encoding="utf8",
    ).with_row_index(ROW, offset=1)
    return lf.filter(~pl.all_horizontal(pl.col(header).is_null()))


def first_bad_utf8_line(path: Path, *, chunk_bytes: int = 1 << 20) -> int | None:
    """1-based line of the first byte that is not UTF-8, reading in chunks (``None``: all valid)."""
    line = 1
    carry = b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(chunk_bytes)
            buf = carry + chunk
            if not buf:
                return None
            try:
                buf.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.reason == "unexpected end of data":  # a character cut by the chunk edge
                    line += buf[: exc.start].count(b"\n")
                    carry = buf[exc.start :]
                    continue
                return line + buf[: exc.start].count(b"\n")
            line += buf.count(b"\n")
            carry = b""
            if not chunk:
                return None


def diagnose_csv(path: Path, ncols: int) -> InputError | None:
    """Find the first row a CSV parser would choke on (bad UTF-8, too many fields), streaming the file.

    Only called after polars refused the file, to turn its message into a located :class:`InputError`.
    Rows are counted as lines here (a quoted field with a line break would shift the count).
    """
    bad_line = first_bad_utf8_line(path)
    if bad_line is not None:
        return InputError(
            "not UTF-8 text", path=str(path), row=max(bad_line - 1, 1), expected="a UTF-8 encoded file"
        )
    data_row = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for row in reader:
                data_row += 1
                if len(row) > ncols:
                    return InputError(
                        f"{len(row)} fields in a row, header has {ncols}",
                        path=str(path),
                        row=data_row,
                        expected=f"{ncols} comma-separated fields",
                    )
    except csv.Error as exc:
        return InputError(f"malformed CSV: {exc}", path=str(path), row=data_row + 1, expected="valid CSV")
    return None


def diagnose_jsonl(path: Path, needed: Mapping[str, type | tuple[type, ...]]) -> InputError | None:
    """Find the first JSON line that is not an object with the ``needed`` keys and value types."""
    try:
        with path.open("r", encoding="utf-8") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    return InputError(
                        f"invalid JSON: {exc.msg}", path=str(path), row=i, expected="one JSON object"
                    )
                if not isinstance(obj, dict):
                    return InputError("not a JSON object", path=str(path), row=i, expected="one JSON object")
                for key, types in needed.items():
                    value = obj.get(key)
                    if value is None or isinstance(value, bool) or not isinstance(value, types):
                        kind = "missing" if value is None else f"wrong type {type(value).__name__}"
                        return InputError(
                            f"{kind} value", path=str(path), row=i, field=key, expected=_type_names(types)
                        )
    except UnicodeDecodeError:
        return InputError("not UTF-8 text", path=str(path), expected="a UTF-8 encoded file")
    return None


def _type_names(types: type | tuple[type, ...]) -> str:
    names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
    return " or ".join({"int": "an integer", "float": "a number", "list": "a list"}.get(n, n) for n in names)
